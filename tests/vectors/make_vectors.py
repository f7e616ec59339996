"""Write the known-answer vectors for the envelope format (tests/vectors/*.json).

    .venv/bin/python tests/vectors/make_vectors.py

Every input is fixed (seeded randomness, fixed clock), so the outputs are a function of the format alone;
tests/crypto/test_vectors.py recomputes them, so any change to the format shows up as a failing test.
Re-run this script only for a deliberate format change, and say so in the commit.
Intermediate values (S, K*, tag, derived keys) are included to help other implementations.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from gateway.crypto import sbbe  # noqa: E402
from gateway.crypto.envelope import PREFIX_BYTES, TAG_BYTES, Sealer, _aes_siv_key  # noqa: E402
from gateway.crypto.parts import split  # noqa: E402
from gateway.crypto.recipients import generate_recipient  # noqa: E402
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
        "sealer_seed": "sealer-1",
        "message_id": "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b",
        "created_ns": 1767225600000000000,
        "device_id": "gw-vectors",
        "params": {"population": 5, "generations": 2, "offspring": 3, "sample_side": 8},
        "plaintext": bytes(range(256)).hex() * 3 + "00ff",
        "content": {"format": "npy", "dtype": "uint16", "shape": [16, 16], "compression": "zlib"},
        "source": {"topic": "medshield/scanners/ct-1/images", "scanner_id": "ct-1"},
        "sample_side": 12,
    },
    {
        "name": "sbbe-blowfish-defaults-empty",
        "suite": "sbbe-blowfish",
        "recipient_seed": "recipient-2",
        "sealer_seed": "sealer-2",
        "message_id": "00000000-0000-4000-8000-000000000001",
        "created_ns": 0,
        "device_id": "gw-vectors",
        "params": {"population": 20, "generations": 3, "offspring": None, "sample_side": 32},
        "plaintext": "",
        "content": {},
        "source": {},
        "sample_side": 40,
    },
    {
        "name": "aes-256-siv-small",
        "suite": "aes-256-siv",
        "recipient_seed": "recipient-1",
        "sealer_seed": "sealer-3",
        "message_id": "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2c",
        "created_ns": 1767225600000000001,
        "device_id": "gw-vectors",
        "params": {"population": 20, "generations": 3, "offspring": None, "sample_side": 32},
        "plaintext": "4d6564536869656c64" * 40,
        "content": {"format": "dicom", "compression": "zlib", "note": "ünïcode"},
        "source": {"topic": "t", "scanner_id": "mr-2"},
        "sample_side": None,
    },
]

PARTS_CASE = {"name": "parts-of-aes-256-siv-small", "envelope_of": "aes-256-siv-small", "max_bytes": 200}


def compute(case: dict[str, Any]) -> dict[str, Any]:
    """The expected outputs for one case."""
    key, card = generate_recipient("vector", SeededRandom(case["recipient_seed"].encode()))
    sealer = Sealer(
        card,
        case["suite"],
        case["message_id"],
        rng=SeededRandom(case["sealer_seed"].encode()),
        clock=fixed_clock(case["created_ns"]),
        device_id=case["device_id"],
        params=sbbe.SearchParams(**case["params"]),
    )
    derived = {label: sealer.derive(label).hex() for label in LABELS}
    sample = None if case["sample_side"] is None else _sample(case["sample_side"])
    envelope = sealer.seal(bytes.fromhex(case["plaintext"]), case["content"], case["source"], sample)
    secret = sealer._secret  # noqa: SLF001 - intermediate value, published for other implementations
    hlen = int.from_bytes(envelope[4:8], "big")
    tag = envelope[PREFIX_BYTES + hlen : PREFIX_BYTES + hlen + TAG_BYTES[case["suite"]]]
    out: dict[str, Any] = {
        "recipient_private_key": key.secret.hex(),
        "recipient_public_key": key.public_key.hex(),
        "recipient_key_id": key.key_id,
        "message_secret": secret.hex(),
        "derived": derived,
        "tag": tag.hex(),
        "envelope": envelope.hex(),
        "envelope_sha256": hashlib.sha256(envelope).hexdigest(),
    }
    if case["suite"] == "sbbe-blowfish":
        assert sealer.search_result is not None
        out["genome"] = sealer.search_result.genome.hex()
        out["k_star"] = sbbe.candidate_key(secret, sealer.search_result.genome).hex()
    else:
        out["aes_siv_key"] = _aes_siv_key(secret).hex()
    return out


def compute_parts(envelope_hex: str, max_bytes: int) -> dict[str, Any]:
    parts = split(bytes.fromhex(envelope_hex), max_bytes)
    return {"parts": [p.hex() for p in parts], "count": len(parts)}


def main() -> None:
    expected = {}
    for case in CASES:
        doc = {"case": case, "expected": compute(case)}
        expected[case["name"]] = doc["expected"]
        (HERE / f"{case['name']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    envelope_hex = expected[PARTS_CASE["envelope_of"]]["envelope"]
    doc = {"case": PARTS_CASE, "expected": compute_parts(envelope_hex, PARTS_CASE["max_bytes"])}
    (HERE / f"{PARTS_CASE['name']}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES) + 1} vector files to {HERE}")


if __name__ == "__main__":
    main()
