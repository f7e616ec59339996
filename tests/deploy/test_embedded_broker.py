"""The embedded broker (no broker configured): a fixed documented port, supervised, never orphaned, nothing
left in /tmp. The gateway runs as a real process (`tests.broker.gateway_proc`, the test protection step)."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from gateway.broker import EMBEDDED_BROKER_PORT, EmbeddedBroker, free_port
from gateway.config import parse_config
from tests.broker.helpers import wait_until
from tests.broker.test_ready import _config, _datagrams, _healthz, _start, _telemetry_port

pytestmark = pytest.mark.broker


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _mosquitto(pid: int) -> int:
    """The gateway's mosquitto child (its parent-death wrapper execs into it: one process)."""
    (child,) = _children(pid)
    assert "mosquitto" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    return child


def _tmp_broker_dirs(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("medshield-broker-*")}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own (for the gateway process and this one): other tests' brokers stay out."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_the_default_port_is_fixed_and_documented() -> None:
    config = parse_config({"gateway": {"device_id": "gw"}}, environ={})
    assert config.embedded_broker.port == EMBEDDED_BROKER_PORT == 11883
    readme = (Path(__file__).resolve().parents[2] / "deploy" / "README.md").read_text()
    assert "11883" in readme


def test_listens_on_the_configured_port_restarts_after_dying_and_leaves_nothing(tmp_path: Path,
                                                                              private_tmp: Path) -> None:
    port = free_port()
    proc, notify = _start(_config(tmp_path, f"[embedded_broker]\nport = {port}\n"), tmp_path, "2000000")
    try:
        got = _datagrams(notify, 15, until_ready=True)
        assert any(d.startswith(b"READY=1") for d in got), got
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # a scanner finds it there
            pass
        telemetry = _telemetry_port(tmp_path / "gateway.log")
        first = _mosquitto(proc.pid)
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: _healthz(telemetry)[0] == 200 and _children(proc.pid) != [first], 15)
        second = _mosquitto(proc.pid)
        assert second != first
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert b"WATCHDOG=1" in _datagrams(notify, 3.0)
        assert '"embedded_broker_restarted"' in (tmp_path / "gateway.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        notify.close()
    assert not _alive(second)
    assert not _tmp_broker_dirs(private_tmp)  # config and log live in the state directory
    assert (tmp_path / "state" / "broker" / "mosquitto.conf").is_file()


def test_mosquitto_dies_with_a_killed_gateway(tmp_path: Path) -> None:
    proc, notify = _start(_config(tmp_path, "[embedded_broker]\nport = 0\n"), tmp_path)
    try:
        assert any(d.startswith(b"READY=1") for d in _datagrams(notify, 15, until_ready=True))
        child = _mosquitto(proc.pid)
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: not _alive(child), 10), "mosquitto was orphaned"
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_a_run_that_fails_on_a_bad_ca_file_leaves_no_mosquitto(tmp_path: Path) -> None:
    """The cloud link has a CA file that does not exist; the inbound side would be the embedded broker."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n[embedded_broker]\nport = 0\n'
        f'[cloud]\nhost = "iot.example.org"\nport = 8883\n[cloud.tls]\nca_file = "{tmp_path / "missing-ca.pem"}"\n'
    )
    proc, notify = _start(config, tmp_path)
    try:
        assert proc.wait(60) != 0
        mine = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_mosquitto_of(p, tmp_path)]
        assert not mine, "a mosquitto of the failed gateway is still running"
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def _is_mosquitto_of(proc_dir: Path, tmp_path: Path) -> bool:
    try:
        cmdline = (proc_dir / "cmdline").read_bytes()
    except OSError:
        return False
    return b"mosquitto" in cmdline and str(tmp_path).encode() in cmdline and _alive(int(proc_dir.name))


def test_without_persistence_the_temporary_directory_goes_with_stop(private_tmp: Path) -> None:
    broker = EmbeddedBroker().start()
    assert broker.running and _tmp_broker_dirs(private_tmp)
    broker.stop()
    assert not _tmp_broker_dirs(private_tmp)
