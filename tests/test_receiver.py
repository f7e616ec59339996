"""The cloud-side receiver with real envelopes: it authenticates before it de-duplicates.

Attacks that worked before signed envelopes: a forgery sealed with a genuine recipient card was stored as ok;
a forgery under a genuine message id, stored first, made the genuine envelope a "duplicate" (also after a
restart); one forged part for an index not yet received lost the genuine envelope; one forged ledger entry
broke the collected ledger for good.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest

from gateway import codecs, pipeline
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.parts import HEADER_BYTES, split
from gateway.crypto.recipients import generate_recipient
from gateway.ledger import GENESIS_HASH, LedgerItem, LedgerWriter
from gateway.receiver import PartLimits, Receiver, key_verifier
from gateway.rng import SeededRandom
from medshield_tools.scanner_sim import generated_npy, generated_png

GATEWAY = GatewayKey.generate("gw-1", SeededRandom(b"receiver-gateway"))
PINNED = TrustedGateways([GATEWAY.card])
MALLORY = GatewayKey.generate("gw-1", SeededRandom(b"mallory-gateway"))  # claims the genuine device id
MID = "6f1c6d5e-0000-8000-8000-0000000000{:02d}"


@pytest.fixture(scope="module")
def keys():  # type: ignore[no-untyped-def]
    return generate_recipient("svc", SeededRandom(b"receiver-test"))


def _envelope(card, image_bytes: bytes, message_id: str, signer: GatewayKey = GATEWAY) -> bytes:  # type: ignore[no-untyped-def]
    shape = codecs.decode(image_bytes).pixels.shape
    return pipeline.protect(
        image_bytes,
        card,
        signer=signer,
        suite="aes-256-siv",
        mask=np.zeros(shape, bool),
        message_id=message_id,
        source={"topic": "medshield/scanners/s/images"},
    ).envelope


def test_parts_out_of_order_with_duplicates_store_one_verified_envelope(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    private, card = keys
    envelope = _envelope(card, generated_npy(128, 1).data, MID.format(1))
    parts = split(envelope, 4 * 1024, GATEWAY)
    assert len(parts) > 3
    feed = parts + parts[:2]
    random.Random(5).shuffle(feed)
    receiver = Receiver(tmp_path, PINNED, key_verifier(private, PINNED))
    stored = [mid for mid in (receiver.handle(p) for p in feed) if mid]
    assert stored == [MID.format(1)]
    assert (tmp_path / f"{stored[0]}.msh").read_bytes() == envelope
    assert receiver.stats.verified == 1 and receiver.verifications[0].format == "npy"
    assert receiver.verifications[0].gateway == "gw-1"
    # The whole envelope again (a publisher re-send after a crash) is recognised by its message id.
    assert receiver.handle(envelope) is None and receiver.stats.duplicates >= 1
    assert not any((tmp_path / ".parts").iterdir())  # nothing pending once stored


def test_forgery_with_a_genuine_card_is_not_stored(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    private, card = keys
    forged = _envelope(card, generated_png(96, 2).data, MID.format(2), signer=MALLORY)
    receiver = Receiver(tmp_path, PINNED, key_verifier(private, PINNED))
    assert receiver.handle(forged) is None
    assert receiver.stats.rejected == 1 and receiver.stats.stored == 0 and receiver.verifications == []
    assert not list(tmp_path.glob("*.msh"))
    # As parts too: the forged manifest is refused, nothing is kept for it.
    for part in split(forged, 4096, MALLORY):
        assert receiver.handle(part) is None
    assert receiver.stats.stored == 0 and receiver.parts.pending <= 1


def test_deduplication_poisoning_fails(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    """A forgery under the genuine message id, arriving first, neither gets stored nor blocks the genuine one,
    before or after a restart."""
    private, card = keys
    mid = MID.format(3)
    genuine = _envelope(card, generated_png(96, 3).data, mid)
    forged = _envelope(card, generated_png(96, 4).data, mid, signer=MALLORY)
    receiver = Receiver(tmp_path, PINNED, key_verifier(private, PINNED))
    assert receiver.handle(forged) is None
    for part in split(forged, 4096, MALLORY):
        receiver.handle(part)
    again = Receiver(tmp_path, PINNED, key_verifier(private, PINNED))  # a restart in between
    assert again.handle(genuine) == mid
    assert (tmp_path / f"{mid}.msh").read_bytes() == genuine and again.stats.verified == 1
    assert Receiver(tmp_path, PINNED).handle(genuine) is None  # now it is a duplicate, authenticated


def test_part_poisoning_fails(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    """Forged parts for indices not yet received (before and after part 0) do not lose the genuine envelope."""
    _private, card = keys
    mid = MID.format(5)
    envelope = _envelope(card, generated_npy(128, 5).data, mid)
    parts = split(envelope, 4 * 1024, GATEWAY)
    forge = [p[:HEADER_BYTES] + bytes(len(p) - HEADER_BYTES) for p in parts]
    receiver = Receiver(tmp_path, PINNED)
    assert receiver.handle(forge[2]) is None  # before the manifest: a candidate
    assert receiver.handle(parts[0]) is None
    assert receiver.handle(forge[3]) is None and receiver.stats.rejected == 1  # after it: refused on arrival
    stored = [receiver.handle(p) for p in parts[1:]]
    assert stored[-1] == mid and (tmp_path / f"{mid}.msh").read_bytes() == envelope


def test_restart_mid_transfer_loses_nothing(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _private, card = keys
    mid = MID.format(6)
    envelope = _envelope(card, generated_npy(128, 6).data, mid)
    parts = split(envelope, 4 * 1024, GATEWAY)
    first = Receiver(tmp_path, PINNED)
    for p in parts[:-1]:
        assert first.handle(p) is None  # each acknowledged once handled
    assert Receiver(tmp_path, PINNED).handle(parts[-1]) == mid


def test_flood_of_forged_parts_stays_bounded(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _private, card = keys
    mid = MID.format(7)
    envelope = _envelope(card, generated_npy(96, 7).data, mid)
    parts = split(envelope, 2048, GATEWAY)
    limits = PartLimits(max_candidate_bytes=32 * 1024, max_candidate_sets=16)
    receiver = Receiver(tmp_path, PINNED, part_limits=limits)
    receiver.handle(parts[0])
    rnd = random.Random(1)
    for i in range(150):
        fake_mid = rnd.randbytes(16) if i % 3 else parts[0][4:20]
        index = 1 + i % (len(parts) - 1)
        receiver.handle(
            b"MSP2" + fake_mid + index.to_bytes(4, "big") + len(parts).to_bytes(4, "big") + rnd.randbytes(1500)
        )
        assert receiver.parts.candidate_bytes <= 32 * 1024 and receiver.parts.pending <= 17
    on_disk = sum(f.stat().st_size for f in (tmp_path / ".parts").rglob("*") if f.is_file())
    assert on_disk <= 32 * 1024 + len(parts[0]) + 2048 * len(parts)
    assert [receiver.handle(p) for p in parts[1:]][-1] == mid


def test_wrong_key_fails_verification(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    _private, card = keys
    other, _ = generate_recipient("other", SeededRandom(b"other"))
    envelope = _envelope(card, generated_png(96, 8).data, MID.format(8))
    receiver = Receiver(tmp_path, PINNED, key_verifier(other, PINNED))
    assert receiver.handle(envelope) is not None  # stored: authentic, though this service cannot open it
    assert receiver.stats.verify_failed == 1 and receiver.stats.verified == 0


def test_garbage_is_rejected(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, PINNED)
    assert receiver.handle(b"MSH2 but not really") is None
    assert receiver.handle(b"MSP2" + bytes(80)) is None
    assert receiver.stats.rejected == 2 and not list(tmp_path.glob(".*.tmp"))


LEDGER_TOPIC = "medshield/gateways/gw-1/ledger"


def _ledger(n: int, key: GatewayKey = GATEWAY) -> tuple[LedgerWriter, list]:  # type: ignore[type-arg]
    writer = LedgerWriter(key, LEDGER_TOPIC)
    items = [LedgerItem(f"m{i}", hashlib.sha256(b"%d" % i).hexdigest(), "t") for i in range(n)]
    return writer, writer.entries(0, GENESIS_HASH, items, 1)


def test_ledger_entries_are_checked_before_they_are_stored(tmp_path: Path) -> None:
    writer, entries = _ledger(3)
    _, forged = _ledger(3, MALLORY)
    receiver = Receiver(tmp_path / "out", PINNED)
    # A forged entry for seq 1 arrives first: refused, so the genuine one still gets in (nothing blocks it).
    assert not receiver.handle_ledger(LEDGER_TOPIC, forged[0].to_json().encode())
    for e in entries:
        assert receiver.handle_ledger(LEDGER_TOPIC, e.to_json().encode())
    assert not receiver.handle_ledger(LEDGER_TOPIC, entries[0].to_json().encode())  # a redelivery
    assert not receiver.handle_ledger("medshield/gateways/gw-2/ledger", entries[0].to_json().encode())
    assert not receiver.handle_ledger(LEDGER_TOPIC, b"{}")
    cp = writer.checkpoint(3, entries[-1].entry_hash(), 2)
    assert receiver.handle_ledger(LEDGER_TOPIC + "/checkpoints", cp.to_json().encode())
    restarted = Receiver(tmp_path / "out", PINNED)
    assert restarted.ledger_count("gw-1") == 3 and restarted.ledger_checkpoint("gw-1") == 3
    # The key holder's fork (another signed entry 3) is refused and logged, not stored.
    fork = writer.entries(2, entries[1].entry_hash(), [LedgerItem("x", "cd" * 32, "t")], 3)[0]
    assert not restarted.handle_ledger(LEDGER_TOPIC, fork.to_json().encode())
    from gateway.ledger import read_ledger, verify_ledger

    stored, checkpoints = read_ledger(tmp_path / "out" / "ledger" / "gw-1.jsonl")
    assert verify_ledger(stored, GATEWAY.public_key, checkpoints).ok
    assert restarted.stats.ledger_rejected == 1 and receiver.stats.ledger_rejected == 3
