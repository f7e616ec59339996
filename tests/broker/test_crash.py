"""The gateway killed with SIGKILL mid-stream and restarted: nothing lost, redeliveries de-duplicated."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker.helpers import Collector, untag

TOPIC = "medshield/scanners/ct7/images"
REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, scanner_port: int, cloud_port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
device_id = "gw-crash"
state_dir = "{tmp_path / "state"}"
[inbound]
port = {scanner_port}
reconnect_min_s = 1
reconnect_max_s = 1
[cloud]
port = {cloud_port}
reconnect_min_s = 1
reconnect_max_s = 1
[telemetry]
port = 0
[limits]
# Several workers, whatever the machine's cores: the order asserted below must hold across them.
workers = 3
"""
    )
    return path


def _start(config: Path, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra_env)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.broker.gateway_proc", str(config), "0.02"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_stream_loses_nothing(tmp_path, scanner_broker, cloud_broker) -> None:  # type: ignore[no-untyped-def]
    config = _config(tmp_path, scanner_broker.port, cloud_broker.port)
    log = tmp_path / "gateway.log"
    collector = Collector(
        cloud_broker.port,
        ("medshield/gateways/+/envelopes", "medshield/gateways/+/status"),
        client_id="crash-collector",
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    proc = _start(config, log, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    assert collector.wait_for(lambda: b"online" in collector.on("/status"), 20), log.read_text()
    datagrams = {notify.recv(256) for _ in range(3)}
    assert any(d.startswith(b"READY=1") for d in datagrams), datagrams  # systemd Type=notify
    assert b"WATCHDOG=1" in datagrams or notify.recv(256) == b"WATCHDOG=1"
    notify.close()

    payloads = [f"slice-{i:03d}".encode() * 16 for i in range(60)]
    scanner = paho.Client(CallbackAPIVersion.VERSION2, client_id="crash-scanner", protocol=paho.MQTTv5)
    scanner.connect("127.0.0.1", scanner_broker.port)
    scanner.loop_start()
    done = threading.Event()

    def feed() -> None:
        for p in payloads:
            scanner.publish(TOPIC, p, qos=1).wait_for_publish(10)
            time.sleep(0.01)
        done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert collector.wait_for(lambda: len(collector.on("/envelopes")) >= 10, 20), log.read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = len(set(collector.on("/envelopes")))
    assert killed_at < len(payloads), "the kill came too late to test anything"
    assert collector.wait_for(lambda: collector.on("/status")[-1] == b"offline", 10)  # last will
    feeder.join(30)
    assert done.is_set()

    proc = _start(config, log)
    try:
        assert collector.wait_for(
            lambda: len({untag(p)[1] for p in collector.on("/envelopes")}) == len(payloads), 30
        ), log.read_text()[-3000:]
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    received = [untag(p)[1] for p in collector.on("/envelopes")]
    assert set(received) == set(payloads)
    # At-least-once on the wire: any repeat is a row re-sent after the crash, caught by the receiver's
    # message-id de-duplication; the spool never protected one message twice.
    ids = [untag(p)[0]["message_id"] for p in collector.on("/envelopes")]
    by_id: dict[str, set[bytes]] = {}
    for raw, mid in zip(collector.on("/envelopes"), ids, strict=True):
        by_id.setdefault(mid, set()).add(raw)
    assert all(len(v) == 1 for v in by_id.values())
    # Order per scanner is kept: the first occurrences are in publish order.
    assert list(dict.fromkeys(received)) == payloads
    assert collector.on("/status")[-1] == b"offline"
    scanner.disconnect()
    scanner.loop_stop()
    collector.close()
