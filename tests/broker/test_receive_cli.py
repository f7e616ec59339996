"""`medshield receive` as a user runs it: subscribe, reassemble, store, open with --key, print stats."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from gateway import codecs, pipeline
from gateway.cli import main
from gateway.crypto.origin import GatewayKey
from gateway.crypto.parts import split
from gateway.crypto.recipients import generate_recipient, save_recipient
from gateway.rng import SeededRandom
from medshield_tools.scanner_sim import generated_npy
from tests.broker.helpers import publish_all


def test_receive_command_stores_and_verifies(tmp_path: Path, cloud_broker, capsys) -> None:  # type: ignore[no-untyped-def]
    private, card = generate_recipient("svc", SeededRandom(b"receive-cli"))
    key_path, _ = save_recipient(tmp_path / "keys", private)
    data = generated_npy(128, 9).data
    gateway = GatewayKey.generate("gw-x", SeededRandom(b"receive-cli-gateway"))
    card_path = gateway.card.save(tmp_path / "pinned" / "gw-x.gateway-card")
    envelope = pipeline.protect(
        data, card, signer=gateway, suite="aes-256-siv", mask=np.zeros(codecs.decode(data).pixels.shape, bool),
        message_id="0e5a1a4e-0000-8000-8000-00000000cafe",
    ).envelope
    topic = "medshield/gateways/gw-x/envelopes"
    parts = [(topic, p) for p in split(envelope, 16 * 1024, gateway)]

    def later() -> None:
        time.sleep(1.5)  # after the receiver subscribed
        publish_all(cloud_broker.port, parts + parts[:1], client_id="cli-feed")

    feeder = threading.Thread(target=later)
    feeder.start()
    out = tmp_path / "out"
    rc = main(["receive", "--broker", cloud_broker.url, "--out", str(out), "--key", str(key_path),
               "--gateways", str(card_path.parent),
               "--count", "1", "--timeout", "20", "--client-id", "cli-rx"])
    feeder.join()
    assert rc == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["stored"] == 1 and stats["verified"] == 1 and stats["verify_failed"] == 0
    assert (out / "0e5a1a4e-0000-8000-8000-00000000cafe.msh").read_bytes() == envelope
