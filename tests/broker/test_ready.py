"""READY, health and the watchdog (DESIGN §8): a cloud outage never withholds READY or fails health; a dead
part shows in /healthz and stops the watchdog."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.broker.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, brokers: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
device_id = "gw-ready"
state_dir = "{tmp_path / "state"}"
{brokers}
[telemetry]
port = 0
"""
    )
    return path


def _start(
    config: Path, tmp_path: Path, watchdog_usec: str = "400000"
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.5)
    env = dict(
        os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC=watchdog_usec
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.broker.gateway_proc", str(config)],
        cwd=REPO,
        env=env,
        stdout=(tmp_path / "gateway.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    return proc, notify


def _datagrams(notify: socket.socket, seconds: float, until_ready: bool = False) -> list[bytes]:
    """What systemd would have received within `seconds` (or until READY and a watchdog ping)."""
    out: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until_ready and b"WATCHDOG=1" in out and any(d.startswith(b"READY=1") for d in out):
            break
        try:
            out.append(notify.recv(512))
        except TimeoutError:
            continue
    return out


def _telemetry_port(log: Path) -> int:
    for line in log.read_text().splitlines():
        if '"telemetry_listening"' in line:
            return int(json.loads(line)["port"])
    raise AssertionError(log.read_text()[-2000:])


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_ready_and_healthy_while_the_cloud_is_down(tmp_path, scanner_broker, cloud_broker) -> None:  # type: ignore[no-untyped-def]
    cloud_broker.stop()
    brokers = f"""
[inbound]
port = {scanner_broker.port}
[cloud]
port = {cloud_broker.port}
reconnect_min_s = 1
reconnect_max_s = 1
"""
    proc, notify = _start(_config(tmp_path, brokers), tmp_path)
    try:
        got = _datagrams(notify, 10, until_ready=True)
        assert any(d.startswith(b"READY=1") for d in got), got  # READY although the cloud never answered
        assert b"WATCHDOG=1" in got
        status, health = _healthz(_telemetry_port(tmp_path / "gateway.log"))
        assert status == 200 and health["ok"] is True, health
        assert health["cloud_connected"] is False and health["dead_parts"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        notify.close()


def test_a_dead_embedded_broker_fails_health_and_stops_the_watchdog(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The gateway restarts a broker that died (tests/deploy/test_embedded_broker.py); here its port is taken
    # before it can, so the broker stays dead.
    from gateway.broker import free_port

    port = free_port()
    proc, notify = _start(_config(tmp_path, f"[embedded_broker]\nport = {port}\n"), tmp_path)
    thief = socket.socket()
    thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the dead broker's connections linger
    try:
        got = _datagrams(notify, 10, until_ready=True)
        assert any(d.startswith(b"READY=1") for d in got) and b"WATCHDOG=1" in got, got
        telemetry = _telemetry_port(tmp_path / "gateway.log")
        assert _healthz(telemetry)[0] == 200
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1, children  # the embedded mosquitto
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:
            try:
                thief.bind(("127.0.0.1", port))
                thief.listen()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        assert wait_until(lambda: _healthz(telemetry)[0] == 503, 10)
        status, health = _healthz(telemetry)
        assert "embedded_broker" in health["dead_parts"] and health["threads_alive"] is False, health
        _datagrams(notify, 1.5)  # pings already on their way
        assert b"WATCHDOG=1" not in _datagrams(notify, 2.0)
    finally:
        thief.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        notify.close()
