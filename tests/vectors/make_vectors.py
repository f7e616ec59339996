"""Write the known-answer vectors (tests/vectors/*.json) for envelope format 2. No test runs or imports this.

    .venv/bin/python tests/vectors/make_vectors.py

Every input is fixed (seeded randomness, fixed clock), so the outputs are a function of the format alone.
tests/crypto/test_vectors.py reads the files as data: an opener written from docs/ENVELOPE.md alone must
open every positive vector and refuse every negative one, and the reference implementation, sealing each
case's inputs, must reproduce the committed bytes exactly. Re-run this script only for a deliberate format
change, and say so in the commit. Intermediate values (S, K*, tag, derived keys) are computed here from the
published derivations, to help other implementations.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement  # noqa: E402

from gateway import container  # noqa: E402
from gateway.crypto import envelope, sbbe  # noqa: E402
from gateway.crypto.kdf import hkdf  # noqa: E402
from gateway.crypto.origin import GatewayKey  # noqa: E402
from gateway.crypto.parts import split  # noqa: E402
from gateway.crypto.recipients import generate_recipient  # noqa: E402
from gateway.pipeline import protect  # noqa: E402
from gateway.rng import SeededRandom, fixed_clock  # noqa: E402

LABELS = ["stego/order", "stego/stamp"]


def _sample(side: int) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return ((x * 37 + y * 11) % 4096).astype(np.uint16)


CASES: list[dict[str, Any]] = [
    {
        "name": "sbbe-blowfish-small",
        "suite": "sbbe-blowfish",
        "recipient_seed": "recipient-1",
        "gateway_seed": "gateway-1",
        "sealer_seed": "sealer-1",
        "message_id": "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b",
        "created_ns": 1767225600000000000,
        "device_id": "gw-vectors",
        "params": {"population": 5, "generations": 2, "offspring": 3, "sample_side": 8},
        "plaintext": bytes(range(256)).hex() * 3 + "00ff",
        "compression": "zlib",
        "sample_side": 12,
    },
    {
        "name": "sbbe-blowfish-defaults-empty",
        "suite": "sbbe-blowfish",
        "recipient_seed": "recipient-2",
        "gateway_seed": "gateway-1",
        "sealer_seed": "sealer-2",
        "message_id": "00000000-0000-4000-8000-000000000001",
        "created_ns": 0,
        "device_id": "gw-vectors",
        "params": {"population": 20, "generations": 3, "offspring": None, "sample_side": 32},
        "plaintext": "",
        "compression": "none",
        "sample_side": 40,
    },
    {
        "name": "aes-256-siv-small",
        "suite": "aes-256-siv",
        "recipient_seed": "recipient-1",
        "gateway_seed": "gateway-1",
        "sealer_seed": "sealer-3",
        "message_id": "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2c",
        "created_ns": 1767225600000000001,
        "device_id": "gw-vectors",
        "params": {"population": 20, "generations": 3, "offspring": None, "sample_side": 32},
        "plaintext": "4d6564536869656c64" * 40,
        "compression": "zlib",
        "sample_side": None,
    },
]

PARTS_CASE = {"name": "parts-of-aes-256-siv-small", "envelope_of": "aes-256-siv-small", "max_bytes": 400}

PIPELINE_CASE = {
    "name": "pipeline-npy-aes-256-siv",
    "suite": "aes-256-siv",
    "recipient_seed": "recipient-1",
    "gateway_seed": "gateway-1",
    "seed": "pipeline-1",
    "created_ns": 1767225600000000002,
    "device_id": "gw-vectors",
    "rows": 40,
    "cols": 48,
    "lesion": [12, 20, 16, 26],
    "margin_px": 2,
    "carrier_rule": "non-lesion",
    "source": {"topic": "medshield/scanners/ct-1/images", "scanner_id": "ct-1"},
}
# The same image under the gateway's default compression (docs/ENVELOPE.md §10, `shuffle2-zstd`).
PIPELINE_ZSTD_CASE = {
    **PIPELINE_CASE,
    "name": "pipeline-npy-aes-256-siv-shuffle2-zstd",
    "seed": "pipeline-2",
    "created_ns": 1767225600000000003,
    "compression": "shuffle2-zstd",
}


def _gateway(case: dict[str, Any]) -> GatewayKey:
    return GatewayKey.generate(case["device_id"], SeededRandom(case["gateway_seed"].encode()))


def _message_secret(case: dict[str, Any], recipient_public: bytes, rng_seed: str) -> bytes:
    """S from the published derivation (ENVELOPE.md §4), reading the sealer's first 64 random bytes."""
    rng = SeededRandom(rng_seed.encode())
    e = import_x25519_private_key(rng(32))
    salt = rng(32)
    epk = e.public_key().export_key(format="raw")
    z = key_agreement(eph_priv=e, static_pub=import_x25519_public_key(recipient_public), kdf=lambda x: x)
    mid = bytes.fromhex(case["message_id"].replace("-", ""))
    info = envelope.secret_info(case["suite"], epk, recipient_public, mid)
    return hkdf(z, salt=salt, info=info, length=32)


def compute(case: dict[str, Any]) -> dict[str, Any]:
    """The expected outputs for one envelope case."""
    key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    gateway = _gateway(case)
    sealer = envelope.Sealer(
        card,
        gateway,
        case["suite"],
        case["message_id"],
        rng=SeededRandom(case["sealer_seed"].encode()),
        clock=fixed_clock(case["created_ns"]),
        params=sbbe.SearchParams(**case["params"]),
    )
    derived = {label: sealer.derive(label).hex() for label in LABELS}
    sample = None if case["sample_side"] is None else _sample(case["sample_side"])
    sealed = sealer.seal(bytes.fromhex(case["plaintext"]), compression=case["compression"], sample=sample)
    data = sealed.envelope
    secret = _message_secret(case, card.public_key, case["sealer_seed"])
    assert {label: envelope.derive_key(secret, label).hex() for label in LABELS} == derived
    peeked = envelope.peek(data)
    out: dict[str, Any] = {
        "recipient_private_key": key.secret.hex(),
        "recipient_public_key": key.public_key.hex(),
        "recipient_key_id": key.key_id,
        "gateway_card": json.loads(gateway.card.to_json()),
        "message_secret": secret.hex(),
        "derived": derived,
        "tag": peeked.tag.hex(),
        "signed_message": envelope.signed_message(data[:-64]).hex(),
        "signature": peeked.signature.hex(),
        "envelope": data.hex(),
        "envelope_sha256": hashlib.sha256(data).hexdigest(),
    }
    if case["suite"] == "sbbe-blowfish":
        genome = sealed.report.genome
        out["genome"] = genome.hex()
        out["k_star"] = sbbe.candidate_key(secret, genome).hex()
    else:
        out["aes_siv_key"] = hkdf(secret, salt=b"", info=b"medshield/v1/aes-256-siv/key", length=64).hex()
    return out


def compute_parts(envelope_hex: str, case: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    parts = split(bytes.fromhex(envelope_hex), max_bytes, _gateway(case))
    return {"parts": [p.hex() for p in parts], "count": len(parts)}


def _pipeline_image(case: dict[str, Any]) -> tuple[bytes, np.ndarray]:
    import io

    y, x = np.mgrid[: case["rows"], : case["cols"]]
    pixels = ((x * 97 + y * 31 + (x * y) % 13) % 4000).astype(np.uint16)
    buf = io.BytesIO()
    np.save(buf, pixels, allow_pickle=False)
    lesion = np.zeros(pixels.shape, bool)
    r0, c0, r1, c1 = case["lesion"]
    lesion[r0:r1, c0:c1] = True
    return buf.getvalue(), lesion


def compute_pipeline(case: dict[str, Any]) -> dict[str, Any]:
    """An image through `protect`: the envelope and every layer inside it (container, record, payload)."""
    from gateway import stego
    from gateway.stego.payload import HiddenPayload

    key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    gateway = _gateway(case)
    image, lesion = _pipeline_image(case)
    result = protect(
        image,
        card,
        signer=gateway,
        suite=case["suite"],
        mask=lesion,
        margin_px=case["margin_px"],
        carrier_rule=case["carrier_rule"],
        source=case["source"],
        compression=case.get("compression", "zlib"),
        rng=SeededRandom(case["seed"].encode()),
        clock=fixed_clock(case["created_ns"]),
    )
    from gateway.crypto.origin import TrustedGateways
    from gateway.pipeline import open_

    opened = open_(result.envelope, key, gateways=TrustedGateways([gateway.card]), restore_original=True)
    assert opened.original == image
    plaintext = envelope.open_envelope(
        result.envelope, key, gateways=TrustedGateways([gateway.card])
    ).plaintext
    compression = case.get("compression", "zlib")
    raw = container.unshuffle2(container.unzstd(plaintext, 1 << 24)) if compression == "shuffle2-zstd" else (
        zlib.decompress(plaintext)
    )
    box = container.unpack(plaintext, compression, max_bytes=1 << 24)
    record = stego.RestorationRecord.from_bytes(box.record)
    hidden = opened.hidden.to_bytes()
    assert HiddenPayload.from_bytes(hidden) == opened.hidden
    return {
        "image_npy": image.hex(),
        "lesion_mask_packed": np.packbits(lesion).tobytes().hex(),
        "recipient_private_key": key.secret.hex(),
        "gateway_card": json.loads(gateway.card.to_json()),
        "message_id": result.message_id,
        "envelope": result.envelope.hex(),
        "container": raw.hex(),
        "marked_npy": box.marked.hex(),
        "restoration_record": box.record.hex(),
        "restoration_bits": record.n_bits,
        "meta": box.meta,
        "hidden_payload": hidden.hex(),
        "order_key": opened.derive("stego/order").hex(),
        "stamp_key": opened.derive("stego/stamp").hex(),
    }


def negatives(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Envelopes that must not open with the case's recipient key and pinned card, each with the reason."""
    case = CASES[2]
    good = bytes.fromhex(docs[case["name"]]["envelope"])
    hlen = int.from_bytes(good[4:8], "big")
    tag_at = 8 + hlen
    mallory = GatewayKey.generate(case["device_id"], SeededRandom(b"mallory-gateway"))
    key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    forged = envelope.Sealer(
        card, mallory, case["suite"], case["message_id"], rng=SeededRandom(b"mallory"), clock=fixed_clock(0)
    ).seal(bytes.fromhex(case["plaintext"]), compression="zlib").envelope
    other_device = GatewayKey.generate("gw-elsewhere", SeededRandom(case["gateway_seed"].encode()))
    renamed = envelope.Sealer(
        card, other_device, case["suite"], case["message_id"], rng=SeededRandom(b"renamed"), clock=fixed_clock(0)
    ).seal(b"x", compression="zlib").envelope
    unpinned_ok = mallory  # also a positive vector when unknown origins are accepted

    def flip(data: bytes, at: int) -> str:
        b = bytearray(data)
        b[at] ^= 0x01
        return bytes(b).hex()

    items = [
        ("header byte changed", flip(good, 20)),
        ("tag byte changed", flip(good, tag_at)),
        ("body byte changed", flip(good, tag_at + 16 + 3)),
        ("signature byte changed", flip(good, len(good) - 1)),
        ("signature removed", good[:-64].hex()),
        ("signature zeroed", (good[:-64] + bytes(64)).hex()),
        ("truncated by one byte", good[:-1].hex()),
        ("one byte appended", (good + b"\x00").hex()),
        ("version 1 magic", (b"MSH1" + good[4:]).hex()),
        ("sealed by a device key that is not pinned, under the pinned device id", forged.hex()),
        ("signed by the pinned key under another device id", renamed.hex()),
        ("header length points past the end", (good[:4] + (len(good)).to_bytes(4, "big") + good[8:]).hex()),
    ]
    return {
        "case": {"name": "negative", "envelope_of": case["name"], "unpinned_key_id": unpinned_ok.key_id},
        "expected": {"envelopes": [{"why": why, "envelope": hexed} for why, hexed in items]},
    }


def main(out: Path = HERE) -> None:
    expected = {}
    for case in CASES:
        doc = {"case": case, "expected": compute(case)}
        expected[case["name"]] = doc["expected"]
        (out / f"{case['name']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    envelope_hex = expected[PARTS_CASE["envelope_of"]]["envelope"]
    doc = {"case": PARTS_CASE, "expected": compute_parts(envelope_hex, CASES[2], PARTS_CASE["max_bytes"])}
    (out / f"{PARTS_CASE['name']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    for pipeline_case in (PIPELINE_CASE, PIPELINE_ZSTD_CASE):
        doc = {"case": pipeline_case, "expected": compute_pipeline(pipeline_case)}
        (out / f"{pipeline_case['name']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (out / "negative.json").write_text(json.dumps(negatives(expected), indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES) + 4} vector files to {out}")


if __name__ == "__main__":
    # An optional directory to write to instead (to check that a change leaves the committed files alone).
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
