"""End to end with the real protection pipeline: scanner topic → envelope on the cloud topic → opened.

The daemon's machinery alone is covered by test_delivery/test_crash with a stand-in protection step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import BrokerConfig
from gateway.crypto.envelope import peek_header
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, generate_recipient, save_recipient
from gateway.daemon import Gateway, pipeline_protect_fn
from gateway.receiver import Receiver, ReceiverService, key_verifier
from gateway.rng import system_random
from medshield_tools.scanner_sim import (
    ScannerSimulator,
    bad_inputs,
    generated_npy,
    generated_png,
    lung_ct_slices,
)
from tests.broker.conftest import gateway_config
from tests.broker.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def service_key(tmp_path: Path) -> tuple[Path, Path]:
    key, _ = generate_recipient("e2e-service", system_random)
    return save_recipient(tmp_path / "keys", key)


def _wait(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout)


def test_images_arrive_once_as_valid_envelopes_and_bad_ones_are_quarantined(
    tmp_path, scanner_broker, cloud_broker, service_key
) -> None:  # type: ignore[no-untyped-def]
    key_path, card_path = service_key
    config = gateway_config(
        tmp_path,
        scanner_broker.port,
        cloud_broker.port,
        protection={"recipients": [str(card_path)], "sbbe": {"population": 4, "generations": 1}},
    )
    # The receiver pins the gateway's card (the device key is created on first use, as the daemon would).
    pinned = TrustedGateways([GatewayKey.load_or_create(config.ledger_key_path, "gw-test").card])
    receiver = Receiver(tmp_path / "received", pinned, key_verifier(PrivateKey.load(key_path), pinned))
    service = ReceiverService(receiver, BrokerConfig(port=cloud_broker.port), client_id="e2e-receiver").start()
    gw = Gateway(config, pipeline_protect_fn(config))
    gw.start()
    try:
        assert gw.wait_connected(10) and service.link.wait_connected(10)
        # Two real CT DICOMs; CT_small is not one of them: cropped around the spine it has no air around the
        # body, so the default carrier rule leaves it no room (no_capacity).
        good = [lung_ct_slices([20])[0], generated_png(96, 1), generated_npy(96, 2), lung_ct_slices([33])[0]]
        bad = bad_inputs()
        scanner = ScannerSimulator("127.0.0.1", scanner_broker.port)
        for image in good[:2] + bad + good[2:] + [good[0]]:  # good[0] twice: a redelivered image
            scanner.publish(image.data)
        scanner.close()
        assert _wait(lambda: receiver.stats.stored == 4 and gw.metrics.quarantined.total() == 5), receiver.stats
        assert _wait(lambda: gw.spool.depth == 0, 10)
        time.sleep(0.3)
        assert receiver.stats.verified == 4 and receiver.stats.verify_failed == 0
        assert receiver.stats.parts >= 2  # the 512×512 DICOM exceeds 128 KiB and travelled as parts
        assert gw.metrics.duplicates.value() == 1
        formats = sorted(v.format for v in receiver.verifications)
        assert formats == ["dicom", "dicom", "npy", "png"]
        stored = sorted(p.name for p in (tmp_path / "received").glob("*.msh"))
        assert len(stored) == 4
        reasons = {r.reason for r in gw.quarantine.records()}
        assert {"not_an_image", "truncated", "empty"} <= reasons and len(gw.quarantine.records()) == 5
        for path in (tmp_path / "received").glob("*.msh"):
            header = peek_header(path.read_bytes())
            assert header["device_id"] == "gw-test" and "source" not in header  # the topic travels encrypted
    finally:
        gw.shutdown(flush_timeout_s=2)
        service.stop()


def test_medshield_run_killed_and_restarted_loses_nothing(tmp_path, scanner_broker, cloud_broker, service_key) -> None:  # type: ignore[no-untyped-def]
    key_path, card_path = service_key
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
device_id = "gw-e2e"
state_dir = "{tmp_path / "state"}"
[inbound]
port = {scanner_broker.port}
reconnect_min_s = 1
reconnect_max_s = 1
[cloud]
port = {cloud_broker.port}
reconnect_min_s = 1
reconnect_max_s = 1
[protection]
recipients = ["{card_path}"]
[protection.sbbe]
population = 4
generations = 1
[telemetry]
port = 0
""")
    pinned = TrustedGateways([GatewayKey.load_or_create(tmp_path / "state" / "ledger.key", "gw-e2e").card])
    receiver = Receiver(tmp_path / "received", pinned, key_verifier(PrivateKey.load(key_path), pinned))
    service = ReceiverService(receiver, BrokerConfig(port=cloud_broker.port), client_id="e2e-kill-receiver").start()
    log = (tmp_path / "run.log").open("ab")
    cmd = [str(Path(sys.executable).parent / "medshield"), "run", "--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    images = [generated_png(64, seed) for seed in range(30)]
    try:
        # READY is logged once both links are up and the subscription is granted: from then on the scanner
        # broker keeps the gateway's messages even while it is down.
        assert _wait(lambda: '"event": "ready"' in (tmp_path / "run.log").read_text(), 60)
        scanner = ScannerSimulator("127.0.0.1", scanner_broker.port, scanner="ct-kill")
        for image in images[:15]:
            scanner.publish(image.data)
        assert _wait(lambda: receiver.stats.stored >= 3, 90), (tmp_path / "run.log").read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for image in images[15:]:
            scanner.publish(image.data)  # queued by the scanner broker for the gateway's persistent session
        scanner.close()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        assert _wait(lambda: receiver.stats.stored == 30, 120), (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.5)
        assert receiver.stats.stored == 30 and receiver.stats.verified == 30
        assert len(list((tmp_path / "received").glob("*.msh"))) == 30
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        service.stop()
