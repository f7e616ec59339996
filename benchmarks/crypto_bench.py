"""Crypto stage timings: SBBE search, encryption, whole seal, and open, for both suites.

    .venv/bin/python benchmarks/crypto_bench.py [--runs 50] [--out benchmarks/results/crypto_bench.json]

Plaintexts, from a real 512×512 CT slice (shared/data/ct/lung1.npz) stored as uint16:
- `raw-512KiB`: the slice's 524,288 bytes as they are;
- `ct-compressed`: what the envelope really carries: zlib(level 6) of the slice plus a restoration-record-like
  tail (packed exclusion mask and 2 KiB of original LSBs), about the size the pipeline produces.
The SBBE fitness sample is the slice itself (the sealer takes its central crop).

Stages (per message, p50/p95 over --runs): keys = ephemeral X25519 + shared secret + HKDF (Sealer()),
search = the evolutionary key search, encrypt = tag + Blowfish-CTR / AES-SIV, seal = search + header +
encrypt, total = keys + seal, open = open_envelope.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.crypto.envelope import Sealer, open_envelope  # noqa: E402
from gateway.crypto.origin import GatewayKey, TrustedGateways  # noqa: E402
from gateway.crypto.recipients import generate_recipient  # noqa: E402
from gateway.crypto.sbbe import SearchParams  # noqa: E402
from gateway.resources import shared_data_dir  # noqa: E402
from gateway.rng import system_random  # noqa: E402
from medshield_tools.bench.machine import describe  # noqa: E402
from medshield_tools.bench.stats import latency_ms  # noqa: E402


def ct_slice() -> np.ndarray:
    path = shared_data_dir() / "ct" / "lung1.npz"
    with np.load(path) as data:
        return np.ascontiguousarray(data["image_hu"][33]).view(np.uint16)


SIGNER = GatewayKey.generate("bench", system_random)
GATEWAYS = TrustedGateways([SIGNER.card])


def payloads(image: np.ndarray) -> dict[str, bytes]:
    mask = np.zeros(image.shape, dtype=bool)
    mask[200:260, 220:290] = True
    record = np.packbits(mask).tobytes() + np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes()
    compressed = zlib.compress(image.tobytes() + record, 6)
    return {"raw-512KiB": image.tobytes(), "ct-compressed": compressed}


def run(card: Any, key: Any, suite: str, params: SearchParams, plaintext: bytes, sample: np.ndarray,
        runs: int) -> dict[str, Any]:
    stages: dict[str, list[float]] = {"keys": [], "search": [], "encrypt": [], "seal": [], "total": [], "open": []}
    evaluations = 0
    for _ in range(runs + 2):
        sealer = Sealer(card, SIGNER, suite, rng=system_random, params=params)
        sealed = sealer.seal(plaintext, compression="zlib", sample=sample)
        data = sealed.envelope
        t0 = time.perf_counter()
        opened = open_envelope(data, key, gateways=GATEWAYS)
        t_open = time.perf_counter() - t0
        assert opened.plaintext == plaintext
        if _ < 2:
            continue  # warm-up
        t = sealed.timings
        stages["keys"].append(t["keys"])
        stages["search"].append(t.get("search", 0.0))
        stages["encrypt"].append(t["encrypt"])
        stages["seal"].append(t["seal"])
        stages["total"].append(t["keys"] + t["seal"])
        stages["open"].append(t_open)
        if sealed.report is not None:
            evaluations = sealed.report.evaluations
    figures = {k: latency_ms(v) for k, v in stages.items()}
    return {
        "p50_ms": {k: f["p50_ms"] for k, f in figures.items()},
        "p95_ms": {k: f["p95_ms"] for k, f in figures.items()},
        "min_ms": {k: f["min_ms"] for k, f in figures.items()},
        "candidates_scored": evaluations,
        "envelope_overhead_bytes": len(data) - len(plaintext),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "crypto_bench.json")
    args = parser.parse_args()
    key, card = generate_recipient("bench", system_random)
    image = ct_slice()
    configs = [
        ("sbbe-blowfish", "N=20 G=3 side=32 (default)", SearchParams()),
        ("sbbe-blowfish", "N=20 G=3 side=64", SearchParams(sample_side=64)),
        ("sbbe-blowfish", "N=10 G=2 (20 candidates)", SearchParams(population=10, generations=2)),
        ("sbbe-blowfish", "N=1 G=0", SearchParams(population=1, generations=0)),
        ("aes-256-siv", "-", SearchParams()),
    ]
    results = []
    for name, plaintext in payloads(image).items():
        for suite, label, params in configs:
            r = run(card, key, suite, params, plaintext, image, args.runs)
            r.update(payload=name, payload_bytes=len(plaintext), suite=suite, search=label)
            results.append(r)
            p = r["p50_ms"]
            print(
                f"{name:14s} {len(plaintext):7d} B  {suite:13s} {label:27s} p50 ms: keys {p['keys']:6.2f}  "
                f"search {p['search']:6.2f}  encrypt {p['encrypt']:6.2f}  seal {p['seal']:6.2f}  "
                f"total {p['total']:6.2f} (min {r['min_ms']['total']:6.2f})  open {p['open']:6.2f}",
                flush=True,
            )
    doc = {"machine": describe(), "runs": args.runs, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
