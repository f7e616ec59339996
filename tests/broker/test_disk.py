"""A full state disk (issue 19 D1, D7): nothing lost, no dead thread, no crash loop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.daemon import Gateway
from tests.broker.conftest import gateway_config
from tests.broker.helpers import Collector, TaggingProtect, publish_all, untag, wait_until
from tests.faults.disk import fill

TOPIC = "medshield/scanners/ct5/images"
REPO = Path(__file__).resolve().parents[2]


def test_disk_filled_by_another_writer_loses_nothing_and_kills_no_thread(
    tmp_path, small_disk, scanner_broker, cloud_broker
) -> None:  # type: ignore[no-untyped-def]
    disk = small_disk(48 * 1024 * 1024)
    config = gateway_config(
        tmp_path, scanner_broker.port, cloud_broker.port,
        gateway={"state_dir": str(disk / "state")}, limits={"max_bytes": 256 * 1024}, spool={"min_free_bytes": 0},
    )
    collector = Collector(cloud_broker.port, ("medshield/gateways/+/envelopes",), client_id="disk-collector")
    cloud_broker.stop()
    gw = Gateway(config, TaggingProtect())
    gw.start()
    try:
        assert gw.inbound.wait_connected(10)
        first = [(TOPIC, bytes([i]) * 100_000) for i in range(20)]
        publish_all(scanner_broker.port, first)
        assert wait_until(lambda: gw.metrics.protected.value() == 20, 20)
        filler = fill(disk)
        second = [(TOPIC, bytes([100 + i]) * 100_000) for i in range(5)]
        publish_all(scanner_broker.port, second)  # the scanner broker holds what cannot be committed
        cloud_broker.start()  # rows are published, and deleting them needs room on the full disk
        assert wait_until(lambda: gw.metrics.published.value(kind="envelope") >= 20, 30)
        time.sleep(1.0)
        assert gw.dead_parts() == [], gw.dead_parts()
        filler.unlink()
        want = {p for _, p in first + second}
        assert collector.wait_for(lambda: {untag(p)[1] for p in collector.on("/envelopes")} == want, 60)
        assert wait_until(lambda: gw.spool.depth == 0, 20)
        assert gw.dead_parts() == [] and gw.health()[0]
    finally:
        gw.shutdown(flush_timeout_s=1)
        collector.close()


def test_start_on_a_full_disk_waits_with_one_clear_line_then_runs(
    tmp_path, small_disk, scanner_broker, cloud_broker
) -> None:  # type: ignore[no-untyped-def]
    disk = small_disk(2 * 1024 * 1024)
    filler = fill(disk)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
device_id = "gw-full"
state_dir = "{disk / "state"}"
[inbound]
port = {scanner_broker.port}
[cloud]
port = {cloud_broker.port}
[telemetry]
port = 0
"""
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    log = tmp_path / "gateway.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.broker.gateway_proc", str(config)], cwd=REPO, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        assert wait_until(lambda: "state_disk_full" in log.read_text(), 20), log.read_text()
        time.sleep(1.0)
        assert proc.poll() is None  # waiting, not dead and restarted
        lines = log.read_text().splitlines()
        events = [json.loads(line) for line in lines]  # every line is JSON: no traceback
        assert [e["event"] for e in events].count("state_disk_full") == 1
        filler.unlink()
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(d.startswith(b"READY=1") for d in got):
            try:
                got.append(notify.recv(512))
            except TimeoutError:
                pass
        assert any(d.startswith(b"STATUS=waiting for space") for d in got)
        assert any(d.startswith(b"READY=1") for d in got), log.read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        notify.close()
