"""Protect and open of one 512×512 16-bit CT slice, split by stage, for both suites (the Foundation figures).

    .venv/bin/python benchmarks/pipeline_bench.py [--runs 100] [--out benchmarks/results/pipeline_bench.json]

Input: the real lung1 slice 33 as a CT DICOM file (unsigned 12-bit stored values in 16-bit words) with its
reference lesion mask, so segmentation is excluded (DS-Net has its own benchmark). Warm-up runs are discarded.
Stages of `protect`: decode, keys (ephemeral X25519 + HKDF), hide (stamp + payload + exclusion + embed), pack
(DICOM encode + zlib container), seal (SBBE search + header + encrypt), with seal.search and seal.encrypt as its
parts; protect = the sum of the top-level stages.
Stages of `open`: open_envelope (authenticate + decrypt), and the rest of `open_` (unpack, decode, extract,
restore, verify stamp, encode the original).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.crypto.envelope import open_envelope  # noqa: E402
from gateway.crypto.origin import GatewayKey, TrustedGateways  # noqa: E402
from gateway.crypto.recipients import generate_recipient  # noqa: E402
from gateway.pipeline import open_, protect  # noqa: E402
from gateway.resources import shared_data_dir  # noqa: E402
from gateway.rng import system_random  # noqa: E402
from medshield_tools.bench.machine import describe  # noqa: E402
from medshield_tools.bench.stats import summarize  # noqa: E402
from medshield_tools.scanner_sim import dicom_from_hu  # noqa: E402

SUITES = ("sbbe-blowfish", "aes-256-siv")
WARMUP = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline_bench.json"))
    args = parser.parse_args()

    with np.load(shared_data_dir() / "ct" / "lung1.npz") as npz:
        hu, lesion = npz["image_hu"][33], npz["lesion_mask"][33].astype(bool)
    data = dicom_from_hu(hu, instance=1, spacing_mm=(0.5703, 0.5703), thickness_mm=5.0, signed=False)
    private_key, card = generate_recipient("bench", system_random)
    signer = GatewayKey.generate("bench", system_random)
    gateways = TrustedGateways([signer.card])

    results: dict[str, dict[str, dict[str, float]]] = {}  # suite -> stage -> summary (seconds)
    for suite in SUITES:
        stages: dict[str, list[float]] = {}
        for run in range(WARMUP + args.runs):
            result = protect(data, card, signer=signer, suite=suite, mask=lesion)
            t0 = time.perf_counter()
            open_envelope(result.envelope, private_key, gateways=gateways)
            t1 = time.perf_counter()
            opened = open_(result.envelope, private_key, gateways=gateways, restore_original=True)
            t2 = time.perf_counter()
            assert opened.original == data
            if run < WARMUP:
                continue
            timings = dict(result.timings)
            timings["protect"] = sum(v for k, v in result.timings.items() if not k.startswith("seal."))
            timings["open.decrypt"] = t1 - t0
            timings["open"] = t2 - t1
            timings["open.unhide+restore"] = (t2 - t1) - (t1 - t0)
            for stage, seconds in timings.items():
                stages.setdefault(stage, []).append(seconds)
        summaries = {stage: summarize(samples, WARMUP) for stage, samples in stages.items()}
        results[suite] = {stage: summary.as_dict() for stage, summary in summaries.items()}
        print(f"{suite}:")
        for stage, summary in summaries.items():
            if stage != "segment":
                print(f"  {stage:22s} p50 {summary.p50 * 1e3:8.2f} ms   p95 {summary.p95 * 1e3:8.2f} ms")

    doc = {
        "machine": describe(),
        "runs": args.runs,
        "warmup_discarded": WARMUP,
        "input": "lung1 z=33 as CT DICOM, 512x512 uint16, reference lesion mask",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
