"""The daemon with the real codecs + hiding + crypto (lesion mask given, so no model is needed): DICOM, PNG
and NPY in; real envelopes out, >128 KiB ones as parts; bad inputs quarantined with the decoder's reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gateway import codecs, pipeline
from gateway.config import BrokerConfig
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import generate_recipient
from gateway.daemon import Gateway
from gateway.receiver import Receiver, ReceiverService, key_verifier
from gateway.rng import SeededRandom
from medshield_tools.scanner_sim import ScannerSimulator, bad_inputs, generated_npy, generated_png, lung_ct_slices
from tests.broker.conftest import gateway_config
from tests.broker.helpers import Collector, wait_until


def _wait(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout)


def test_real_envelopes_parts_and_quarantine(tmp_path: Path, scanner_broker, cloud_broker) -> None:  # type: ignore[no-untyped-def]
    private, card = generate_recipient("svc", SeededRandom(b"broker-real"))
    signer = GatewayKey.generate("gw-test", SeededRandom(b"broker-real-gateway"))
    pinned = TrustedGateways([signer.card])

    def protect(data: bytes, *, message_id: str, source):  # type: ignore[no-untyped-def]
        shape = codecs.decode(data).pixels.shape  # InputError here → quarantine, as in production
        return [
            pipeline.protect(
                data,
                card,
                signer=signer,
                suite="aes-256-siv",
                mask=np.zeros(shape, bool),
                message_id=message_id,
                source=source,
            )
        ]

    config = gateway_config(tmp_path, scanner_broker.port, cloud_broker.port)
    # The daemon's ledger and parts are signed with its device key: the same key as the envelopes here.
    config.ledger_key_path.parent.mkdir(parents=True, exist_ok=True)
    signer.save(config.ledger_key_path)
    receiver = Receiver(tmp_path / "received", pinned, key_verifier(private, pinned))
    service = ReceiverService(receiver, BrokerConfig(port=cloud_broker.port), client_id="real-rx").start()
    errors = Collector(cloud_broker.port, ("medshield/gateways/+/errors",), client_id="real-errors")
    gw = Gateway(config, protect)
    gw.start()
    try:
        assert gw.wait_connected(10) and service.link.wait_connected(10)
        # CT_small (cropped around the spine, no air around the body) has no room under the default carrier rule.
        good = [lung_ct_slices([33])[0], lung_ct_slices([20])[0], generated_png(96, 1), generated_npy(96, 2)]
        bad = bad_inputs()
        scanner = ScannerSimulator("127.0.0.1", scanner_broker.port)
        for image in [good[0], bad[0], good[1], *bad[1:], good[2], good[3]]:
            scanner.publish(image.data)
        scanner.close()
        assert _wait(lambda: receiver.stats.stored == 4 and len(errors.on("/errors")) == 5), receiver.stats
        assert _wait(lambda: receiver.ledger_count("gw-test") == 4)
        assert receiver.stats.verified == 4 and receiver.stats.verify_failed == 0
        assert receiver.stats.parts >= 3  # the 512×512 CT envelope (>128 KiB) came as parts
        assert sorted(v.format for v in receiver.verifications) == ["dicom", "dicom", "npy", "png"]
        reasons = sorted(json.loads(e)["reason"] for e in errors.on("/errors"))
        assert reasons == sorted(["not_an_image", "truncated", "too_many_pixels", "empty", "unsupported_dtype"])
        assert sorted(r.reason for r in gw.quarantine.records()) == reasons
    finally:
        gw.shutdown(flush_timeout_s=2)
        service.stop()
        errors.close()
