"""Parts: layout, the signed manifest, and reassembly that authenticates every part (gateway.receiver.PartStore)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.envelope import Sealer, open_envelope
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.parts import HEADER_BYTES, is_part, parse_part, split, verify_manifest
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.errors import OpenError
from gateway.receiver import PartLimits, PartStore
from gateway.rng import SeededRandom

from .conftest import GATEWAY, GATEWAYS

Keys = tuple[PrivateKey, RecipientCard]
MALLORY = GatewayKey.generate("gw-test", SeededRandom(b"mallory-gateway"))


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def envelope(make_sealer: Callable[..., Sealer]) -> bytes:
    return make_sealer("aes-256-siv").seal(bytes(range(256)) * 20).envelope


@pytest.fixture
def other(make_sealer: Callable[..., Sealer]) -> bytes:
    mid = "11111111-2222-4333-8444-555555555555"
    return make_sealer("aes-256-siv", message_id=mid).seal(b"other" * 500).envelope


def _store(tmp_path: Path, **kw: object) -> PartStore:
    return PartStore(tmp_path / "parts", GATEWAYS, PartLimits(**kw))  # type: ignore[arg-type]


def _feed_all(store: PartStore, parts: list[bytes]) -> list[bytes]:
    out = []
    for p in parts:
        try:
            done = store.feed(parse_part(p))
        except OpenError:
            continue
        if done is not None:
            out.append(done[0])
            store.discard(done[1].message_id)
    return out


def test_layout(envelope: bytes) -> None:
    parts = split(envelope, 1000, GATEWAY)
    assert all(len(p) <= 1000 and is_part(p) and p[:4] == b"MSP2" for p in parts)
    parsed = [parse_part(p) for p in parts]
    assert [p.index for p in parsed] == list(range(len(parts))) and {p.count for p in parsed} == {len(parts)}
    assert b"".join(p.chunk for p in parsed) == envelope
    manifest = verify_manifest(parsed[0], GATEWAYS)
    assert manifest.envelope_sha256 == hashlib.sha256(envelope).digest() and manifest.length == len(envelope)
    assert manifest.chunk_sha256 == tuple(p.digest for p in parsed)
    assert manifest.gateway_key_id == GATEWAY.key_id


def test_single_part(tmp_path: Path, envelope: bytes, alice: Keys) -> None:
    parts = split(envelope, len(envelope) + 2000, GATEWAY)
    assert len(parts) == 1
    (out,) = _feed_all(_store(tmp_path), parts)
    assert out == envelope and open_envelope(out, alice[0], gateways=GATEWAYS).plaintext == bytes(range(256)) * 20


def test_any_order_and_duplicates(tmp_path: Path, envelope: bytes) -> None:
    parts = split(envelope, 1200, GATEWAY)
    feed = parts + parts[:3]
    random.Random(1).shuffle(feed)
    store = _store(tmp_path)
    # Duplicates that arrive after completion start a new candidate set here; the receiver drops them earlier,
    # by the stored (authenticated) message id.
    assert _feed_all(store, feed) == [envelope]


def test_interleaved_sets(tmp_path: Path, envelope: bytes, other: bytes) -> None:
    a, b = split(envelope, 1200, GATEWAY), split(other, 1200, GATEWAY)
    feed = [p for pair in zip(a, b, strict=False) for p in pair] + a[len(b):] + b[len(a):]
    assert sorted(_feed_all(_store(tmp_path), feed)) == sorted([envelope, other])


def test_missing_part_never_completes(tmp_path: Path, envelope: bytes) -> None:
    parts = split(envelope, 1200, GATEWAY)
    store = _store(tmp_path)
    assert _feed_all(store, parts[:-1]) == [] and store.pending == 1


def test_manifest_from_an_unpinned_key_is_refused(tmp_path: Path, envelope: bytes) -> None:
    forged = split(envelope, 1200, MALLORY)
    store = _store(tmp_path)
    with pytest.raises(OpenError):
        store.feed(parse_part(forged[0]))
    assert store.pending == 0 and not any((tmp_path / "parts").iterdir())


def test_part_poisoning_after_the_manifest(tmp_path: Path, envelope: bytes, other: bytes) -> None:
    """A forged part for an index not yet received is refused on arrival; the genuine one still completes."""
    parts = split(envelope, 1200, GATEWAY)
    forged = parts[2][:HEADER_BYTES] + bytes(len(parts[2]) - HEADER_BYTES)
    store = _store(tmp_path)
    assert store.feed(parse_part(parts[0])) is None
    with pytest.raises(OpenError):
        store.feed(parse_part(forged))
    assert _feed_all(store, parts[1:]) == [envelope]


def test_part_poisoning_before_the_manifest(tmp_path: Path, envelope: bytes) -> None:
    """Forged candidates that arrive first, for every index, do not displace the genuine parts."""
    parts = split(envelope, 1200, GATEWAY)
    forged = [p[:HEADER_BYTES] + bytes([i % 251 + 1]) * (len(p) - HEADER_BYTES) for i, p in enumerate(parts[1:])]
    store = _store(tmp_path)
    assert _feed_all(store, forged + parts[1:][::-1]) == []
    assert store.candidate_bytes > 0
    assert _feed_all(store, [parts[0]]) == [envelope]


def test_flood_of_forged_parts_is_bounded(tmp_path: Path, envelope: bytes) -> None:
    parts = split(envelope, 1200, GATEWAY)
    store = _store(tmp_path, max_candidate_bytes=20_000, max_candidate_sets=16, max_candidates_per_index=2)
    assert store.feed(parse_part(parts[0])) is None  # the gateway sends part 0 first
    rnd = random.Random(7)
    for i in range(600):
        mid = bytes(rnd.getrandbits(8) for _ in range(16)) if i % 2 else parse_part(parts[0]).message_id
        index, count = 1 + i % 5, len(parts)
        junk = b"MSP2" + mid + index.to_bytes(4, "big") + count.to_bytes(4, "big") + rnd.randbytes(1100)
        try:
            store.feed(parse_part(junk))
        except OpenError:
            pass
        assert store.candidate_bytes <= 20_000 and store.pending <= 17
    assert _feed_all(store, parts[1:]) == [envelope]


def test_restart_keeps_pending_parts(tmp_path: Path, envelope: bytes) -> None:
    parts = split(envelope, 1200, GATEWAY)
    half = len(parts) // 2
    store = _store(tmp_path)
    _feed_all(store, parts[1:half])  # candidates
    _feed_all(store, parts[:1])  # the manifest
    assert _feed_all(store, parts[half:-1]) == []
    again = _store(tmp_path)  # a restart: everything acknowledged so far is on disk
    assert again.pending == 1
    assert _feed_all(again, parts[-1:]) == [envelope]


def test_candidates_expire(tmp_path: Path, envelope: bytes) -> None:
    clock = Clock()
    parts = split(envelope, 1200, GATEWAY)
    store = PartStore(tmp_path / "p", GATEWAYS, PartLimits(candidate_ttl_ns=100), clock)
    _feed_all(store, parts[1:3])
    clock.now = 101
    store.expire()
    assert store.pending == 0 and store.candidate_bytes == 0


def test_wrong_index_is_not_a_wrong_envelope(tmp_path: Path, envelope: bytes) -> None:
    parts = split(envelope, 1200, GATEWAY)
    head1, head2 = parts[1][:HEADER_BYTES], parts[2][:HEADER_BYTES]
    swapped = [parts[0], head1 + parts[2][HEADER_BYTES:], head2 + parts[1][HEADER_BYTES:]] + parts[3:]
    assert _feed_all(_store(tmp_path), swapped) == []


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"MSP2",
        b"MSPX" + bytes(70),
        b"MSP2" + bytes(24),
        b"MSP2" + bytes(16) + (5).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(33),
        b"MSP2" + bytes(16) + (0).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(10),
    ],
)
def test_malformed_parts(bad: bytes) -> None:
    with pytest.raises(OpenError):
        parse_part(bad)


def test_split_arguments(envelope: bytes) -> None:
    with pytest.raises(ValueError):
        split(envelope, HEADER_BYTES, GATEWAY)
    with pytest.raises(ValueError):
        split(envelope, 300, GATEWAY)  # no room for the manifest in part 0
    with pytest.raises(OpenError):
        split(b"not an envelope", 1000, GATEWAY)


def test_manifest_signature_is_checked_against_pinned_cards_only(envelope: bytes) -> None:
    parts = split(envelope, 1200, MALLORY)
    with pytest.raises(OpenError):
        verify_manifest(parse_part(parts[0]), GATEWAYS)
    assert verify_manifest(parse_part(parts[0]), TrustedGateways([MALLORY.card])).gateway_key_id == MALLORY.key_id
