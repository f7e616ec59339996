"""Property tests: whatever bytes arrive, only OpenError escapes from opening and part parsing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.crypto.envelope import Sealer, open_envelope, peek_header
from gateway.crypto.parts import parse_part, split
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.errors import OpenError
from gateway.receiver import PartStore

from .conftest import GATEWAY, GATEWAYS

Keys = tuple[PrivateKey, RecipientCard]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def sealed(alice: Keys) -> dict[str, bytes]:
    from gateway.crypto.sbbe import SearchParams
    from gateway.rng import SeededRandom

    out = {}
    for suite in ("sbbe-blowfish", "aes-256-siv"):
        sealer = Sealer(alice[1], GATEWAY, suite, rng=SeededRandom(suite.encode()),
                        params=SearchParams(population=2, generations=1, sample_side=4))
        out[suite] = sealer.seal(b"plaintext " * 30, compression="zlib").envelope
    return out


def _only_open_error(fn: Callable[[], object]) -> None:
    try:
        fn()
    except OpenError:
        pass


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(alice: Keys, data: bytes) -> None:
    _only_open_error(lambda: open_envelope(data, alice[0], gateways=GATEWAYS))
    _only_open_error(lambda: open_envelope(b"MSH2" + data, alice[0], gateways=GATEWAYS))
    _only_open_error(lambda: peek_header(b"MSH2" + len(data).to_bytes(4, "big") + data))
    _only_open_error(lambda: parse_part(data))
    _only_open_error(lambda: parse_part(b"MSP2" + data))


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                    max_leaves=20))
def test_random_json_headers(alice: Keys, obj: object) -> None:
    import json

    raw = json.dumps(obj).encode()
    data = b"MSH2" + len(raw).to_bytes(4, "big") + raw + bytes(64)
    with pytest.raises(OpenError):
        open_envelope(data, alice[0], gateways=GATEWAYS)


@SETTINGS
@given(
    suite=st.sampled_from(["sbbe-blowfish", "aes-256-siv"]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=4
    ),
    cut=st.none() | st.integers(min_value=0),
)
def test_mutated_envelopes(alice: Keys, sealed: dict[str, bytes], suite: str, edits: list[tuple[int, int]],
                           cut: int | None) -> None:
    data = bytearray(sealed[suite])
    for pos, mask in edits:
        data[pos % len(data)] ^= mask
    if cut is not None:
        data = data[: cut % len(data)]
    assume(bytes(data) != sealed[suite])  # edits at one position may cancel out
    with pytest.raises(OpenError):
        open_envelope(bytes(data), alice[0], gateways=GATEWAYS, accept_unknown_origin=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_bytes=st.integers(min_value=900, max_value=2000),
    seed=st.integers(),
    drop=st.booleans(),
    flip=st.none()
    | st.tuples(st.integers(min_value=0), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
)
def test_reassembly_never_wrong(sealed: dict[str, bytes], max_bytes: int, seed: int, drop: bool,
                                flip: tuple[int, int, int] | None) -> None:
    import random
    import tempfile
    from pathlib import Path

    envelope = sealed["aes-256-siv"]
    parts = [bytearray(p) for p in split(envelope, max_bytes, GATEWAY)]
    rnd = random.Random(seed)
    if flip is not None:
        part = parts[flip[0] % len(parts)]
        part[flip[1] % len(part)] ^= flip[2]
    feed = [bytes(p) for p in parts] + [bytes(rnd.choice(parts))]
    rnd.shuffle(feed)
    if drop:
        feed.pop(rnd.randrange(len(feed)))
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        store = PartStore(Path(tmp), GATEWAYS)
        for p in feed:
            try:
                done = store.feed(parse_part(p))
            except OpenError:
                continue
            assert done is None or done[0] == envelope
            if done is not None:
                outputs.append(done[0])
    if flip is None and not drop:
        assert outputs, "every part was fed, yet the envelope never came out"
