from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from gateway.crypto import envelope as env_mod
from gateway.crypto.envelope import Sealer, open_envelope, peek, peek_header
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.crypto.sbbe import SearchParams
from gateway.crypto.suites import names
from gateway.errors import InputError, OpenError
from gateway.rng import SeededRandom

from .conftest import GATEWAYS, MID

SUITES = names()
SAMPLE = np.arange(64, dtype=np.uint16).reshape(8, 8)

Keys = tuple[PrivateKey, RecipientCard]


def _seal(make_sealer: Callable[..., Sealer], suite: str, plaintext: bytes, **kw: object) -> bytes:
    return make_sealer(suite, **kw).seal(plaintext, compression="zlib", sample=SAMPLE).envelope


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000, 70_000])
def test_round_trip(make_sealer: Callable[..., Sealer], alice: Keys, suite: str, size: int) -> None:
    plaintext = bytes((i * 7 + 3) % 256 for i in range(size))
    sealer = make_sealer(suite)
    k_order = sealer.derive("stego/order")
    data = sealer.seal(plaintext, compression="zlib", sample=SAMPLE if size % 2 else None).envelope
    opened = open_envelope(data, alice[0], gateways=GATEWAYS)
    assert opened.plaintext == plaintext
    assert opened.derive("stego/order") == k_order
    h = opened.header
    assert h["suite"] == suite and h["message_id"] == MID and h["compression"] == "zlib"
    assert h["recipient_key_id"] == alice[1].key_id and h["device_id"] == "gw-test"
    assert h["created_ns"] == 1_700_000_000_000_000_000 and h["version"] == 2
    assert opened.origin.device_id == "gw-test" and opened.origin.pinned
    assert opened.origin.created_ns == h["created_ns"]
    assert ("sbbe" in h) == (suite == "sbbe-blowfish")


def test_layout(make_sealer: Callable[..., Sealer]) -> None:
    data = _seal(make_sealer, "sbbe-blowfish", b"abc")
    assert data[:4] == b"MSH2"
    hlen = int.from_bytes(data[4:8], "big")
    header_bytes = data[8 : 8 + hlen]
    header = json.loads(header_bytes)
    assert header_bytes == json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    assert len(data) == 8 + hlen + 32 + 3 + 64
    assert peek(data).body == data[8 + hlen + 32 : -64] and peek(data).signature == data[-64:]
    assert peek_header(data) == header
    assert peek_header(data[: 8 + hlen]) == header  # routing needs only the prefix
    assert header["sbbe"]["population"] == 4 and header["sbbe"]["generations"] == 1


@pytest.mark.parametrize("suite", SUITES)
def test_every_single_byte_change_fails(make_sealer: Callable[..., Sealer], alice: Keys, suite: str) -> None:
    data = _seal(make_sealer, suite, b"tiny plaintext")
    for pos in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[pos] ^= mask
            with pytest.raises(OpenError):
                open_envelope(bytes(bad), alice[0], gateways=GATEWAYS)


@pytest.mark.parametrize("suite", SUITES)
def test_truncation_and_extension_fail(make_sealer: Callable[..., Sealer], alice: Keys, suite: str) -> None:
    data = _seal(make_sealer, suite, b"some plaintext")
    for n in range(len(data)):
        with pytest.raises(OpenError):
            open_envelope(data[:n], alice[0], gateways=GATEWAYS)
    with pytest.raises(OpenError):
        open_envelope(data + b"\x00", alice[0], gateways=GATEWAYS)


@pytest.mark.parametrize("suite", SUITES)
def test_wrong_recipient(make_sealer: Callable[..., Sealer], mallory: Keys, suite: str) -> None:
    data = _seal(make_sealer, suite, b"secret")
    with pytest.raises(OpenError):
        open_envelope(data, mallory[0], gateways=GATEWAYS)
    # Even with the header claiming mallory's key id, the tag does not verify.
    bad = data.replace(peek_header(data)["recipient_key_id"].encode(), mallory[0].key_id.encode())
    with pytest.raises(OpenError):
        open_envelope(bad, mallory[0], gateways=GATEWAYS)


def test_error_is_opaque(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    with pytest.raises(OpenError) as err:
        open_envelope(b"MSH2\x00\x00\x00\x02{}", alice[0], gateways=GATEWAYS)
    assert str(err.value) == OpenError.MESSAGE
    assert err.value.__cause__ is None and err.value.__suppress_context__ is False and err.value.__context__ is None


@pytest.mark.parametrize("suite", SUITES)
def test_one_byte_change_changes_whole_body(make_sealer: Callable[..., Sealer], suite: str) -> None:
    plain = bytes(2048)
    changed = plain[:1000] + b"\x01" + plain[1001:]
    a = make_sealer(suite, seed=b"same")
    b = make_sealer(suite, seed=b"same")
    da, db = a.seal(plain, sample=SAMPLE).envelope, b.seal(changed, sample=SAMPLE).envelope
    assert a.derive("k") == b.derive("k")  # same keys
    ba, bb = np.frombuffer(peek(da).body, np.uint8), np.frombuffer(peek(db).body, np.uint8)
    assert np.mean(ba != bb) > 0.98


@pytest.mark.parametrize("suite", SUITES)
def test_seeded_sealing_is_deterministic(make_sealer: Callable[..., Sealer], suite: str) -> None:
    one = _seal(make_sealer, suite, b"x" * 100, seed=b"s1")
    assert one == _seal(make_sealer, suite, b"x" * 100, seed=b"s1")
    assert one != _seal(make_sealer, suite, b"x" * 100, seed=b"s2")


def test_sealer_refuses_second_seal(make_sealer: Callable[..., Sealer]) -> None:
    sealer = make_sealer()
    sealer.seal(b"a")
    with pytest.raises(RuntimeError, match="already sealed"):
        sealer.seal(b"a")


def test_derive_labels_independent(make_sealer: Callable[..., Sealer]) -> None:
    sealer = make_sealer()
    keys = {sealer.derive(label) for label in ("stego/order", "stego/stamp", "stego/orde", "a", "é")}
    assert len(keys) == 5 and all(len(k) == 32 for k in keys)
    assert len(sealer.derive("x", 64)) == 64
    with pytest.raises(ValueError):
        sealer.derive("")
    assert make_sealer(seed=b"other").derive("stego/order") != sealer.derive("stego/order")


def test_search_result_and_timings(make_sealer: Callable[..., Sealer]) -> None:
    sealer = make_sealer(params=SearchParams(population=3, generations=2, sample_side=8))
    sealed = sealer.seal(b"abc", sample=SAMPLE)
    assert sealed.report is not None and len(sealed.report.trace) == 3
    assert set(sealed.timings) >= {"keys", "search", "encrypt", "sign", "seal"}
    assert peek_header(sealed.envelope)["sbbe"]["sample_shape"] == [8, 16]


def test_choose_key_early_gives_the_same_envelope(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    late = make_sealer().seal(b"abc", sample=SAMPLE)
    sealer = make_sealer()
    sealer.choose_key(SAMPLE)
    early = sealer.seal(b"abc")
    assert early.envelope == late.envelope
    assert open_envelope(early.envelope, alice[0], gateways=GATEWAYS).plaintext == b"abc"
    # The early search's CPU time counts in the seal: it is sealing work, done before the plaintext existed.
    assert early.timings["seal"] >= early.timings["search_cpu"] > 0 and "search_cpu" not in late.timings


def test_choose_key_at_most_once_and_before_seal(make_sealer: Callable[..., Sealer]) -> None:
    sealer = make_sealer()
    sealer.choose_key(SAMPLE)
    with pytest.raises(RuntimeError, match="already chosen"):
        sealer.choose_key(SAMPLE)
    with pytest.raises(ValueError, match="takes no sample"):
        sealer.seal(b"abc", sample=SAMPLE)
    sealed = make_sealer()
    sealed.seal(b"abc")
    with pytest.raises(RuntimeError, match="already chosen"):
        sealed.choose_key(SAMPLE)


def test_minimal_search_params(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = make_sealer(params=SearchParams(population=1, generations=0)).seal(b"abc", sample=SAMPLE).envelope
    assert open_envelope(data, alice[0], gateways=GATEWAYS).plaintext == b"abc"


@pytest.mark.parametrize("compression", ["", "ZLIB", "x" * 17, "a b"])
def test_bad_compression_token(make_sealer: Callable[..., Sealer], compression: str) -> None:
    with pytest.raises(ValueError):
        make_sealer().seal(b"abc", compression=compression)


def test_sealer_arguments(alice: Keys) -> None:
    from .conftest import GATEWAY

    with pytest.raises(ValueError):
        Sealer(alice[1], GATEWAY, "rot13", MID, rng=SeededRandom(b"s"))
    with pytest.raises(ValueError):
        Sealer(alice[1], GATEWAY, "aes-256-siv", "not-a-uuid", rng=SeededRandom(b"s"))
    with pytest.raises(TypeError):
        Sealer(alice[1], "not a key", "aes-256-siv")  # type: ignore[arg-type]
    s = Sealer(alice[1], GATEWAY, "aes-256-siv")  # defaults: OS randomness and clock, a random message id
    assert len(s.message_id) == 36


def test_plaintext_limit(make_sealer: Callable[..., Sealer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_mod, "MAX_PLAINTEXT_BYTES", 10)
    with pytest.raises(InputError):
        make_sealer("aes-256-siv").seal(b"x" * 11)


def test_open_size_cap(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = _seal(make_sealer, "aes-256-siv", b"x" * 1000)
    assert open_envelope(data, alice[0], gateways=GATEWAYS, max_bytes=len(data)).plaintext == b"x" * 1000
    with pytest.raises(OpenError):
        open_envelope(data, alice[0], gateways=GATEWAYS, max_bytes=len(data) - 1)


def _reframe(data: bytes, mutate: Callable[[dict], None]) -> bytes:  # type: ignore[type-arg]
    hlen = int.from_bytes(data[4:8], "big")
    header = json.loads(data[8 : 8 + hlen])
    mutate(header)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return b"MSH2" + len(raw).to_bytes(4, "big") + raw + data[8 + hlen :]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.update(version=1),
        lambda h: h.update(suite="aes-256-siv"),
        lambda h: h.update(extra=1),
        lambda h: h.pop("gateway_public_key"),
        lambda h: h.update(source={"topic": "t"}),
        lambda h: h.update(device_id="has space"),
        lambda h: h.update(created_ns=-1),
        lambda h: h.update(salt=h["salt"] + "="),
        lambda h: h["sbbe"].update(genome="AAAA"),
        lambda h: h.update(message_id=h["message_id"].upper()),
    ],
)
def test_malformed_headers_rejected(make_sealer: Callable[..., Sealer], alice: Keys, mutate: Callable) -> None:  # type: ignore[type-arg]
    data = _reframe(_seal(make_sealer, "sbbe-blowfish", b"abc"), mutate)
    with pytest.raises(OpenError):
        open_envelope(data, alice[0], gateways=GATEWAYS)
    with pytest.raises(OpenError):
        peek_header(data)


def test_duplicate_json_keys_rejected(make_sealer: Callable[..., Sealer]) -> None:
    data = _seal(make_sealer, "aes-256-siv", b"abc")
    hlen = int.from_bytes(data[4:8], "big")
    raw = data[8 : 8 + hlen]
    dup = raw[:-1] + b',"device_id":"evil"}'
    with pytest.raises(OpenError):
        peek_header(b"MSH2" + len(dup).to_bytes(4, "big") + dup)


def test_aes_siv_matches_rfc5297_a1() -> None:
    """The AES-SIV call the suite uses (key, one AD component via update, no nonce) is RFC 5297 SIV."""
    from Crypto.Cipher import AES

    key = bytes.fromhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    ad = bytes.fromhex("101112131415161718191a1b1c1d1e1f2021222324252627")
    cipher = AES.new(key, AES.MODE_SIV)
    cipher.update(ad)
    body, tag = cipher.encrypt_and_digest(bytes.fromhex("112233445566778899aabbccddee"))
    assert tag.hex() == "85632d07c6e8f37f950acd320a2ecc93"
    assert body.hex() == "40c02b9690c4dc04daef7f6afe5c"


def test_low_order_ephemeral_key_rejected(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = _seal(make_sealer, "aes-256-siv", b"abc")
    from gateway.encoding import b64url_encode

    epk = peek_header(data)["ephemeral_public_key"]
    for low in (bytes(32), (1).to_bytes(32, "little")):
        bad = data.replace(epk.encode(), b64url_encode(low).encode())
        with pytest.raises(OpenError):
            open_envelope(bad, alice[0], gateways=GATEWAYS)


def test_suite_registry_loads_once_under_concurrent_first_use() -> None:
    """Found by the fault suite: a receiver thread and an MQTT callback reading the first header at once."""
    import threading

    from gateway.crypto import suites

    suites._REGISTRY.clear()
    barrier, results = threading.Barrier(8), []

    def first_use() -> None:
        barrier.wait()
        try:
            results.append(suites.names())
        except Exception as exc:  # noqa: BLE001 - any exception is the failure under test
            results.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [("aes-256-siv", "sbbe-blowfish")] * 8
