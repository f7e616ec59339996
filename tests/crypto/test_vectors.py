"""Known-answer vectors, read as data (tests/vectors/*.json; nothing here regenerates them).

Two independent checks. An opener written from docs/ENVELOPE.md alone (below, on primitives only: HMAC,
SHA-2, X25519, Ed25519, Blowfish, AES-SIV, zlib, zstd) opens every positive vector, refuses every negative one and
unpacks the container, the restoration record and the hidden payload. The reference implementation, given
each case's inputs, reproduces the committed bytes exactly (same seed, same envelope), and opens and refuses
the same vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from Crypto.Cipher import AES, Blowfish
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Signature import eddsa

from gateway.crypto import envelope as ref
from gateway.crypto.origin import GatewayCard, GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, generate_recipient
from gateway.crypto.sbbe import SearchParams
from gateway.errors import OpenError
from gateway.rng import SeededRandom, fixed_clock

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ENVELOPE_CASES = ["sbbe-blowfish-small", "sbbe-blowfish-defaults-empty", "aes-256-siv-small"]
# One pipeline vector per compression value; each is read only if its file exists.
PIPELINE_CASES = [
    name
    for name in ("pipeline-npy-aes-256-siv", "pipeline-npy-aes-256-siv-shuffle2-zstd")
    if (VECTORS / f"{name}.json").exists()
]


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text())  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------------------
# An opener from docs/ENVELOPE.md alone


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, "sha256").digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), "sha256").digest()
        out, i = out + block, i + 1
    return out[:length]


def _b64(text: str) -> bytes:
    import base64

    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


class Refused(Exception):
    pass


def _no_dup(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Refused("duplicate key")
    return dict(pairs)


def doc_open(
    data: bytes, r: bytes, cards: list[dict[str, Any]], accept_unknown: bool = False
) -> tuple[dict[str, Any], bytes, bytes]:
    """(header, plaintext, S), or Refused."""
    try:
        if data[:4] != b"MSH2":
            raise Refused("magic")
        h_len = int.from_bytes(data[4:8], "big")
        if not 2 <= h_len <= 65536 or len(data) < 8 + h_len:
            raise Refused("length")
        header = json.loads(data[8 : 8 + h_len].decode("utf-8"), object_pairs_hook=_no_dup)
        if header["version"] != 2:
            raise Refused("version")
        t = {"sbbe-blowfish": 32, "aes-256-siv": 16}[header["suite"]]
        prefix, tag = data[: 8 + h_len], data[8 + h_len : 8 + h_len + t]
        body, sig = data[8 + h_len + t : -64], data[-64:]
        if len(data) < 8 + h_len + t + 64:
            raise Refused("truncated")
        gpk = _b64(header["gateway_public_key"])
        message = b"medshield/v2/envelope-origin" + hashlib.sha256(data[:-64]).digest()
        eddsa.new(eddsa.import_public_key(gpk), "rfc8032").verify(message, sig)
        key_id = hashlib.sha256(gpk).digest()[:16].hex()
        card = next((c for c in cards if c["key_id"] == key_id), None)
        if card is None and not accept_unknown:
            raise Refused("not pinned")
        if card is not None and (card["device_id"] != header["device_id"] or _b64(card["public_key"]) != gpk):
            raise Refused("device id")
        priv = import_x25519_private_key(r)
        pub = priv.public_key().export_key(format="raw")
        if header["recipient_key_id"] != hashlib.sha256(pub).digest()[:16].hex():
            raise Refused("recipient")
        e_pub = _b64(header["ephemeral_public_key"])
        z = key_agreement(static_priv=priv, eph_pub=import_x25519_public_key(e_pub), kdf=lambda x: x)
        mid = bytes.fromhex(header["message_id"].replace("-", ""))
        info = b"medshield/v1/message-secret" + _lp(header["suite"].encode()) + _lp(e_pub) + _lp(pub) + _lp(mid)
        s = _hkdf(z, _b64(header["salt"]), info, 32)
        if header["suite"] == "aes-256-siv":
            cipher = AES.new(_hkdf(s, b"", b"medshield/v1/aes-256-siv/key", 64), AES.MODE_SIV)
            cipher.update(prefix)
            plaintext = cipher.decrypt_and_verify(body, tag)
        else:
            k_star = _hkdf(s, b"", b"sbbe/candidate" + _b64(header["sbbe"]["genome"]), 56)
            k_img = _hkdf(k_star, b"", b"sbbe/enc" + tag, 56)
            ecb = Blowfish.new(k_img, Blowfish.MODE_ECB)
            stream = b"".join(ecb.encrypt(i.to_bytes(8, "big")) for i in range(-(-len(body) // 8)))
            plaintext = bytes(a ^ b for a, b in zip(body, stream, strict=False))
            mac = hmac.new(_hkdf(k_star, b"", b"sbbe/mac", 32), prefix + plaintext, "sha256").digest()
            if not hmac.compare_digest(mac, tag):
                raise Refused("tag")
        return header, plaintext, s
    except Refused:
        raise
    except Exception as exc:  # any malformed field
        raise Refused(type(exc).__name__) from None


def _doc_order(key: bytes, n: int) -> list[int]:
    """The keyed Feistel order of ENVELOPE.md §10 (every index of [0, n), in order)."""
    b = max(2, (n - 1).bit_length())
    b += b % 2
    h = b // 2
    stream = hashlib.shake_256(b"medshield/stego/order/v1" + bytes([h]) + key).digest(4 * (1 << h) * 8)
    words = struct.unpack(f"<{len(stream) // 4}I", stream)
    tables = [[w & ((1 << h) - 1) for w in words[i << h : (i + 1) << h]] for i in range(8)]
    out = []
    for j in range(1 << b):
        left, right = j >> h, j & ((1 << h) - 1)
        for t in tables:
            left, right = right, left ^ t[right]
        v = (left << h) | right
        if v < n:
            out.append(v)
    return out


# ---------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", ENVELOPE_CASES)
def test_doc_opener_opens_positive_vectors(name: str) -> None:
    doc = _load(name)
    case, exp = doc["case"], doc["expected"]
    header, plaintext, s = doc_open(
        bytes.fromhex(exp["envelope"]), bytes.fromhex(exp["recipient_private_key"]), [exp["gateway_card"]]
    )
    assert plaintext.hex() == case["plaintext"] and s.hex() == exp["message_secret"]
    assert header["device_id"] == case["device_id"] and header["created_ns"] == case["created_ns"]
    for label, value in exp["derived"].items():
        assert _hkdf(s, b"", b"medshield/v1/derive/" + label.encode(), 32).hex() == value
    assert set(header) >= {"version", "suite", "message_id", "gateway_public_key", "compression"}
    assert not {"content", "source"} & set(header)  # nothing about the image in clear


@pytest.mark.parametrize("name", ENVELOPE_CASES)
def test_reference_reproduces_and_opens_vectors(name: str) -> None:
    doc = _load(name)
    case, exp = doc["case"], doc["expected"]
    key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    gateway = GatewayKey.generate(case["device_id"], SeededRandom(case["gateway_seed"].encode()))
    assert json.loads(gateway.card.to_json()) == exp["gateway_card"]
    sample = None
    if case["sample_side"] is not None:
        y, x = np.mgrid[: case["sample_side"], : case["sample_side"]]
        sample = ((x * 37 + y * 11) % 4096).astype(np.uint16)
    sealed = ref.Sealer(
        card, gateway, case["suite"], case["message_id"], rng=SeededRandom(case["sealer_seed"].encode()),
        clock=fixed_clock(case["created_ns"]), params=SearchParams(**case["params"]),
    ).seal(bytes.fromhex(case["plaintext"]), compression=case["compression"], sample=sample)
    assert sealed.envelope.hex() == exp["envelope"]  # byte-identical under the same seed
    pinned = TrustedGateways([GatewayCard.from_json(json.dumps(exp["gateway_card"]))])
    opened = ref.open_envelope(
        bytes.fromhex(exp["envelope"]),
        PrivateKey("vector", bytes.fromhex(exp["recipient_private_key"])),
        gateways=pinned,
    )
    assert opened.plaintext.hex() == case["plaintext"] and opened.origin.pinned
    assert {label: opened.derive(label).hex() for label in exp["derived"]} == exp["derived"]


def test_negative_vectors_are_refused_by_both_openers() -> None:
    neg = _load("negative")
    exp = _load(neg["case"]["envelope_of"])["expected"]
    r = bytes.fromhex(exp["recipient_private_key"])
    card = exp["gateway_card"]
    pinned = TrustedGateways([GatewayCard.from_json(json.dumps(card))])
    items = neg["expected"]["envelopes"]
    assert len(items) >= 10
    for item in items:
        data = bytes.fromhex(item["envelope"])
        with pytest.raises(Refused):
            doc_open(data, r, [card])
        with pytest.raises(OpenError):
            ref.open_envelope(data, PrivateKey("vector", r), gateways=pinned)
    # The unpinned-key vector is well formed: it opens when unknown origins are accepted, in both.
    (unpinned,) = [bytes.fromhex(i["envelope"]) for i in items if "not pinned" in i["why"]]
    doc_open(unpinned, r, [card], accept_unknown=True)
    opened = ref.open_envelope(unpinned, PrivateKey("vector", r), gateways=pinned, accept_unknown_origin=True)
    assert opened.origin.key_id == neg["case"]["unpinned_key_id"] and not opened.origin.pinned


def test_parts_vectors() -> None:
    doc = _load("parts-of-aes-256-siv-small")
    exp_env = _load(doc["case"]["envelope_of"])["expected"]
    envelope = bytes.fromhex(exp_env["envelope"])
    card = exp_env["gateway_card"]
    parts = [bytes.fromhex(p) for p in doc["expected"]["parts"]]
    assert len(parts) == doc["expected"]["count"] > 1
    # From the document: part 0 carries the signed manifest; every chunk's digest is in it.
    p0 = parts[0]
    assert p0[:4] == b"MSP2" and int.from_bytes(p0[20:24], "big") == 0
    count = int.from_bytes(p0[24:28], "big")
    m = int.from_bytes(p0[28:32], "big")
    manifest, sig, chunk0 = p0[32 : 32 + m], p0[32 + m : 96 + m], p0[96 + m :]
    eddsa.new(eddsa.import_public_key(_b64(card["public_key"])), "rfc8032").verify(
        b"medshield/v2/parts-manifest" + manifest, sig
    )
    assert manifest[:4] == b"MSPM" and manifest[4:20] == p0[4:20] and manifest[32:48].hex() == card["key_id"]
    assert int.from_bytes(manifest[24:32], "big") == len(envelope)
    chunks = [chunk0] + [p[28:] for p in parts[1:]]
    digests = [manifest[80 + 32 * i : 112 + 32 * i] for i in range(count)]
    assert digests == [hashlib.sha256(c).digest() for c in chunks]
    assert b"".join(chunks) == envelope and manifest[48:80] == hashlib.sha256(envelope).digest()
    # And the reference: the same bytes from `split`, reassembled from any order.
    gateway = GatewayKey.generate(card["device_id"], SeededRandom(b"gateway-1"))
    from gateway.crypto.parts import split

    assert split(envelope, doc["case"]["max_bytes"], gateway) == parts


def _doc_decompress(compression: str, data: bytes) -> bytes:
    """The container from the plaintext, as docs/ENVELOPE.md §10 describes each `compression` value."""
    if compression == "zlib":
        return zlib.decompress(data)
    assert compression == "shuffle2-zstd"
    import zstandard

    shuffled = zstandard.ZstdDecompressor().decompress(data)
    half = len(shuffled) // 2
    out = bytearray(len(shuffled))
    out[0 : 2 * half : 2] = shuffled[:half]  # even-offset bytes first,
    out[1 : 2 * half : 2] = shuffled[half : 2 * half]  # then odd-offset ones,
    out[2 * half :] = shuffled[2 * half :]  # then the last byte of an odd length
    return bytes(out)


@pytest.mark.parametrize("name", PIPELINE_CASES)
def test_pipeline_vector_layers(name: str) -> None:
    """Container, restoration record and hidden payload, read from the document and checked bit for bit."""
    doc = _load(name)
    case, exp = doc["case"], doc["expected"]
    header, plaintext, s = doc_open(
        bytes.fromhex(exp["envelope"]), bytes.fromhex(exp["recipient_private_key"]), [exp["gateway_card"]]
    )
    assert header["compression"] == case.get("compression", "zlib")
    raw = _doc_decompress(header["compression"], plaintext)
    assert raw.hex() == exp["container"]
    # Container: "MSC2" | u32 len | marked | u32 len | record | u32 len | meta JSON | u32 len | recipe
    assert raw[:4] == b"MSC2"
    fields, at = [], 4
    for _ in range(4):
        n = int.from_bytes(raw[at : at + 4], "big")
        fields.append(raw[at + 4 : at + 4 + n])
        at += 4 + n
    assert at == len(raw)
    marked_file, record, meta = fields[0], fields[1], json.loads(fields[2])
    assert fields[3] == b""  # NPY has no rebuild recipe
    assert meta == exp["meta"] and meta["source"] == case["source"]
    assert meta["content"] == {
        "format": "npy",
        "dtype": "uint16",
        "signed": False,
        "shape": [case["rows"], case["cols"]],
    }
    marked = np.load(io.BytesIO(marked_file), allow_pickle=False)
    # Restoration record: "MSRR" | u8 1 | u8 bpp | u32 rows | u32 cols | u32 bits | u32 mask len | mask | bits
    assert record[:4] == b"MSRR" and record[4] == 1 and record[5] == 2
    rows, cols, n_bits, mask_len = struct.unpack(">IIII", record[6:22])
    assert (rows, cols, n_bits) == (case["rows"], case["cols"], exp["restoration_bits"])
    exclusion = np.unpackbits(np.frombuffer(zlib.decompress(record[22 : 22 + mask_len]), np.uint8))[: rows * cols]
    original_bits = np.unpackbits(np.frombuffer(record[22 + mask_len :], np.uint8))[:n_bits]
    # Hidden payload: frame bits in the keyed order over usable (non-excluded) pixels.
    order_key = _hkdf(s, b"", b"medshield/v1/derive/stego/order", 32)
    assert order_key.hex() == exp["order_key"]
    usable = [i for i in _doc_order(order_key, rows * cols) if not exclusion[i]][:n_bits]
    flat = marked.reshape(-1)
    frame = np.packbits([int(flat[i]) & 1 for i in usable]).tobytes()
    assert frame[:4] == b"MSST"
    length = int.from_bytes(frame[4:8], "big")
    payload = frame[8 : 8 + length]
    assert zlib.crc32(frame[: 8 + length]) == int.from_bytes(frame[8 + length : 12 + length], "big")
    assert payload.hex() == exp["hidden_payload"]
    assert payload[0] == 1 and payload[1:17] == bytes.fromhex(exp["message_id"].replace("-", ""))
    # Restore: put the original bits back; the original image, bit for bit.
    restored = flat.copy()
    restored[usable] = (restored[usable] & 0xFFFE) | original_bits
    original = np.load(io.BytesIO(bytes.fromhex(exp["image_npy"])), allow_pickle=False)
    assert np.array_equal(restored.reshape(rows, cols), original)
    # The stamp: HMAC(k_stamp, u64 t | pixel_sha256(original) | message id).
    t = int.from_bytes(payload[17:25], "big")
    pix = struct.pack(">IIB", rows, cols, 2) + original.astype("<u2").tobytes()
    k_stamp = _hkdf(s, b"", b"medshield/v1/derive/stego/stamp", 32)
    stamp = hmac.new(k_stamp, t.to_bytes(8, "big") + hashlib.sha256(pix).digest() + payload[1:17], "sha256").digest()
    assert payload[25:57] == stamp


@pytest.mark.parametrize("name", PIPELINE_CASES)
def test_pipeline_vector_reproduced_by_the_reference(name: str) -> None:
    from gateway.pipeline import protect

    doc = _load(name)
    case, exp = doc["case"], doc["expected"]
    _key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    lesion = np.unpackbits(np.frombuffer(bytes.fromhex(exp["lesion_mask_packed"]), np.uint8))
    lesion = lesion[: case["rows"] * case["cols"]].reshape(case["rows"], case["cols"]).astype(bool)
    result = protect(
        bytes.fromhex(exp["image_npy"]), card,
        signer=GatewayKey.generate(case["device_id"], SeededRandom(case["gateway_seed"].encode())),
        suite=case["suite"], mask=lesion, margin_px=case["margin_px"], carrier_rule=case["carrier_rule"],
        source=case["source"], compression=case.get("compression", "zlib"),
        rng=SeededRandom(case["seed"].encode()), clock=fixed_clock(case["created_ns"]),
    )
    if case.get("compression", "zlib") == "zlib":
        assert result.envelope.hex() == exp["envelope"]
        return
    # zstd promises the format, not the compressed bytes, across library versions: the same container.
    header, plaintext, _s = doc_open(
        result.envelope, bytes.fromhex(exp["recipient_private_key"]), [exp["gateway_card"]]
    )
    assert _doc_decompress(header["compression"], plaintext).hex() == exp["container"]
