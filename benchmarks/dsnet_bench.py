"""Segmentation latency: p50 / p95 per 256x256 slice for DS-Net and the U-Net baseline, per backend.

    .venv/bin/python benchmarks/dsnet_bench.py [--threads 2] [--runs 100] [--out benchmarks/results/dsnet_latency.json]

Times the network alone (runner.run on a preprocessed 1x1x256x256 input) and the whole Segmenter.predict_hu
on a real 512x512 lung1 slice (window, resize, z-score, network, resize back, threshold). CPU runs use ONNX
Runtime with the given thread count; GPU backends are measured when present and skipped (with the reason)
otherwise. Report the machine with the numbers: a shared 2-core CPU gives noisy, pessimistic figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gateway.bench.machine import describe
from gateway.bench.stats import latency_ms, time_calls
from gateway.inference import available_backends
from gateway.resources import MODELS_DIR, shared_data_dir
from gateway.segment import Segmenter

MODELS = {"dsnet": (MODELS_DIR / "dsnet" / "dsnet.onnx", MODELS_DIR / "dsnet" / "manifest.json"),
          "unet": (MODELS_DIR / "dsnet" / "unet.onnx", MODELS_DIR / "dsnet" / "unet.manifest.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dsnet_latency.json"))
    args = parser.parse_args()
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as d:
        slice_hu = d["image_hu"][33]
    backends = available_backends()
    report = {"machine": describe(),
              "threads": args.threads, "unavailable": {k: v for k, v in backends.items() if v}, "results": {}}
    for name, (onnx, manifest) in MODELS.items():
        for backend, reason in backends.items():
            if reason is not None:
                continue
            seg = Segmenter(onnx, manifest, backend=backend, threads=args.threads)
            x = np.zeros(seg.runner.input_shape, np.float32)
            net = latency_ms(time_calls(lambda: seg.runner.run(x), args.runs))
            full = latency_ms(time_calls(lambda: seg.predict_hu(slice_hu), args.runs))
            report["results"][f"{name}/{backend}"] = {"network_256": net, "predict_512_slice": full}
            print(f"{name:6s} {backend:12s} network p50 {net['p50_ms']:7.2f} ms p95 {net['p95_ms']:7.2f} ms | "
                  f"predict(512²) p50 {full['p50_ms']:7.2f} ms p95 {full['p95_ms']:7.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
