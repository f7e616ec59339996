"""The cloud-side receiver with real envelopes: parts in any order, redeliveries, garbage, verification."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gateway import codecs, pipeline
from gateway.crypto.parts import split
from gateway.crypto.recipients import generate_recipient
from gateway.receiver import Receiver, key_verifier
from gateway.rng import SeededRandom
from gateway.scanner_sim import generated_npy, generated_png


@pytest.fixture(scope="module")
def keys():  # type: ignore[no-untyped-def]
    return generate_recipient("svc", SeededRandom(b"receiver-test"))


def _envelope(card, image_bytes: bytes, message_id: str) -> bytes:  # type: ignore[no-untyped-def]
    shape = codecs.decode(image_bytes).pixels.shape
    return pipeline.protect(
        image_bytes,
        card,
        suite="aes-256-siv",
        mask=np.zeros(shape, bool),
        message_id=message_id,
        source={"topic": "medshield/scanners/s/images"},
    ).envelope


def test_parts_out_of_order_with_duplicates_store_one_verified_envelope(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    private, card = keys
    envelope = _envelope(card, generated_npy(128, 1).data, "6f1c6d5e-0000-8000-8000-000000000001")
    parts = split(envelope, 4 * 1024)
    assert len(parts) > 3
    feed = parts + parts[:2]
    random.Random(5).shuffle(feed)
    receiver = Receiver(tmp_path, key_verifier(private))
    stored = [mid for mid in (receiver.handle(p) for p in feed) if mid]
    assert stored == ["6f1c6d5e-0000-8000-8000-000000000001"]
    assert (tmp_path / f"{stored[0]}.msh").read_bytes() == envelope
    assert receiver.stats.verified == 1 and receiver.verifications[0].format == "npy"
    # The whole envelope again (a publisher re-send after a crash) is recognised by its message id.
    assert receiver.handle(envelope) is None and receiver.stats.duplicates == 1


def test_restart_remembers_stored_ids_and_garbage_is_rejected(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _private, card = keys
    envelope = _envelope(card, generated_png(96, 2).data, "6f1c6d5e-0000-8000-8000-000000000002")
    assert Receiver(tmp_path).handle(envelope) is not None
    again = Receiver(tmp_path)
    assert again.handle(envelope) is None and again.stats.duplicates == 1
    assert again.handle(b"MSH1 but not really") is None
    assert again.handle(b"MSHP" + bytes(80)) is None
    assert again.stats.rejected == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_wrong_key_fails_verification(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _private, card = keys
    other, _ = generate_recipient("other", SeededRandom(b"other"))
    envelope = _envelope(card, generated_png(96, 3).data, "6f1c6d5e-0000-8000-8000-000000000003")
    receiver = Receiver(tmp_path, key_verifier(other))
    assert receiver.handle(envelope) is not None  # stored: the cloud keeps what it cannot open
    assert receiver.stats.verify_failed == 1 and receiver.stats.verified == 0


def test_ledger_entries_are_collected_once(tmp_path: Path) -> None:
    from gateway.ledger import LedgerItem, LedgerKey, LedgerWriter

    writer = LedgerWriter(LedgerKey.load_or_create(tmp_path / "k"), "gw-1", "medshield/gateways/gw-1/ledger")
    entries = writer.entries(0, "0" * 64, [LedgerItem("m", "ab" * 32, "t")], 1)
    receiver = Receiver(tmp_path / "out")
    payload = entries[0].to_json().encode()
    assert receiver.handle_ledger("medshield/gateways/gw-1/ledger", payload)
    assert not receiver.handle_ledger("medshield/gateways/gw-1/ledger", payload)
    assert Receiver(tmp_path / "out").ledger_count("gw-1") == 1
    assert not receiver.handle_ledger("medshield/gateways/gw-1/ledger", b"{}")
