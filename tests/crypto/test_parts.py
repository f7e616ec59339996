from __future__ import annotations

import hashlib
import random
from typing import Callable

import pytest

from gateway.crypto.envelope import Sealer, open_envelope
from gateway.crypto.parts import HEADER_BYTES, Reassembler, is_part, parse_part, split
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.errors import OpenError

Keys = tuple[PrivateKey, RecipientCard]


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def envelope(make_sealer: Callable[..., Sealer]) -> bytes:
    return make_sealer("aes-256-siv").seal(bytes(range(256)) * 20, {}, {})


@pytest.fixture
def other(make_sealer: Callable[..., Sealer]) -> bytes:
    mid = "11111111-2222-4333-8444-555555555555"
    return make_sealer("aes-256-siv", message_id=mid).seal(b"other" * 500, {}, {})


def test_layout(envelope: bytes) -> None:
    parts = split(envelope, 1000)
    assert len(parts) == -(-len(envelope) // (1000 - HEADER_BYTES))
    assert all(len(p) <= 1000 and is_part(p) for p in parts)
    p = parse_part(parts[1])
    assert parts[1][:4] == b"MSHP" and p.index == 1 and p.count == len(parts)
    assert p.digest == hashlib.sha256(envelope).digest()
    assert b"".join(parse_part(x).data for x in parts) == envelope


def test_single_part(envelope: bytes, alice: Keys) -> None:
    parts = split(envelope, len(envelope) + HEADER_BYTES)
    assert len(parts) == 1
    out = Reassembler().feed(parts[0])
    assert out == envelope and open_envelope(out, alice[0]).plaintext == bytes(range(256)) * 20


def test_any_order_and_duplicates(envelope: bytes) -> None:
    parts = split(envelope, 300)
    r = Reassembler()
    feed = parts + parts[:3]
    random.Random(1).shuffle(feed)
    outs = [r.feed(p) for p in feed]
    done = [o for o in outs if o is not None]
    assert done and all(o == envelope for o in done)
    assert r.pending <= 1


def test_interleaved_sets(envelope: bytes, other: bytes) -> None:
    a, b = split(envelope, 400), split(other, 400)
    r = Reassembler()
    got = []
    for i in range(max(len(a), len(b))):
        for parts in (a, b):
            if i < len(parts) and (out := r.feed(parts[i])) is not None:
                got.append(out)
    assert sorted(got) == sorted([envelope, other]) and r.pending == 0 and r.buffered_bytes == 0


def test_missing_part_never_completes(envelope: bytes) -> None:
    parts = split(envelope, 300)
    r = Reassembler()
    assert all(r.feed(p) is None for p in parts[:-1])
    assert r.pending == 1


def test_wrong_index_is_not_a_wrong_envelope(envelope: bytes) -> None:
    parts = split(envelope, 300)
    # Swap the data of parts 0 and 1 while keeping their indices: the join differs from the envelope.
    head0, head1 = parts[0][:HEADER_BYTES], parts[1][:HEADER_BYTES]
    swapped = [head0 + parts[1][HEADER_BYTES:], head1 + parts[0][HEADER_BYTES:]] + parts[2:]
    r = Reassembler()
    with pytest.raises(OpenError):
        for p in swapped:
            assert r.feed(p) is None
    assert r.pending == 0


def test_conflicting_duplicate(envelope: bytes) -> None:
    parts = split(envelope, 300)
    r = Reassembler()
    r.feed(parts[0])
    forged = parts[0][:-1] + bytes([parts[0][-1] ^ 1])
    with pytest.raises(OpenError):
        r.feed(forged)


def test_foreign_parts_cannot_join(envelope: bytes, other: bytes) -> None:
    good, foreign = split(envelope, 300), split(other, 300)
    # A foreign part relabelled with this envelope's message id still carries its own digest and count.
    relabelled = foreign[1][:4] + good[1][4:20] + foreign[1][20:]
    r = Reassembler()
    assert r.feed(relabelled) is None
    outs = [r.feed(p) for p in good]
    assert outs[-1] == envelope


def test_forged_digest_with_foreign_message_id(envelope: bytes, other: bytes) -> None:
    # All parts of `other` relabelled with envelope's message id: the digest matches, the header does not.
    parts = [p[:4] + split(envelope, 300)[0][4:20] + p[20:] for p in split(other, 300)]
    r = Reassembler()
    with pytest.raises(OpenError):
        for p in parts:
            r.feed(p)


def test_truncated_part(envelope: bytes) -> None:
    parts = split(envelope, 300)
    r = Reassembler()
    with pytest.raises(OpenError):
        for p in [parts[0][:-5]] + parts[1:]:
            r.feed(p)


@pytest.mark.parametrize("bad", [b"", b"MSHP", b"MSHX" + bytes(70), b"MSHP" + bytes(56), b"MSHP" + bytes(16) + (5).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(33)])
def test_malformed_parts(bad: bytes) -> None:
    with pytest.raises(OpenError):
        parse_part(bad)


def test_expiry(envelope: bytes) -> None:
    clock = Clock()
    parts = split(envelope, 300)
    r = Reassembler(ttl_ns=100, clock=clock)
    r.feed(parts[0])
    clock.now = 101
    assert r.expire() == 1 and r.pending == 0 and r.buffered_bytes == 0 and r.dropped == 1
    assert all(r.feed(p) is None for p in parts[1:])  # part 0 went with the expired set


def test_bounded_memory(envelope: bytes, other: bytes) -> None:
    a, b = split(envelope, 300), split(other, 300)
    r = Reassembler(max_buffered_bytes=2000)
    for p in a[:-1]:
        r.feed(p)
        assert r.buffered_bytes <= 2000
    r2 = Reassembler(max_sets=1)
    r2.feed(a[0])
    r2.feed(b[0])
    assert r2.pending == 1 and r2.dropped == 1
    assert all(r2.feed(p) is None for p in a[1:])  # the oldest set was evicted


def test_split_arguments(envelope: bytes) -> None:
    with pytest.raises(ValueError):
        split(envelope, HEADER_BYTES)
    with pytest.raises(OpenError):
        split(b"not an envelope", 1000)
