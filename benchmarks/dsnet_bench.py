"""Segmentation latency: p50 / p95 per slice for DS-Net and the U-Net baseline, per backend.

    .venv/bin/python benchmarks/dsnet_bench.py [--threads 2] [--runs 100] [--compare old=DIR]
        [--out benchmarks/results/dsnet_latency.json]

Times the network alone (runner.run on a 1x1x256x256 input) and the whole served Segmenter.predict_hu on
real 512x512 slices with their PixelSpacing: lung1 slice 33 (0.57 mm, a 292 mm field of view) and, when
`--wide` names an .npy HU slice, a wider one (e.g. 0.98 mm: the physical-scale pre-processing then needs more
than one 256x256 tile). `--compare TAG=DIR` times DIR's dsnet.onnx / unet.onnx (e.g. the previously
committed models, kept outside the repository) in the same run, interleaved call by call with the current
ones, in an order that rotates every round (`interleaved_latency_ms`), so that the load of a shared machine and
the cost of following another model fall on all alike. CPU runs use ONNX Runtime with the given
thread count; GPU backends are measured when present and skipped (with the reason) otherwise. Report the
machine with the numbers: a shared 2-core CPU gives noisy, pessimistic figures.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.inference import available_backends
from gateway.resources import MODELS_DIR, shared_data_dir
from gateway.segment import Segmenter
from medshield_tools.bench.machine import describe
from medshield_tools.bench.stats import interleaved_latency_ms

MODELS = {"dsnet": (MODELS_DIR / "dsnet" / "dsnet.onnx", MODELS_DIR / "dsnet" / "manifest.json"),
          "unet": (MODELS_DIR / "dsnet" / "unet.onnx", MODELS_DIR / "dsnet" / "unet.manifest.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--compare", action="append", default=[], help="TAG=DIR with dsnet.onnx / unet.onnx")
    parser.add_argument("--wide", type=Path, default=None, help=".npy HU slice (512x512) at --wide-spacing mm")
    parser.add_argument("--wide-spacing", type=float, default=0.9766)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dsnet_latency.json"))
    args = parser.parse_args()
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as d:
        slices = {"lung1_33_0.57mm": (d["image_hu"][33].astype(np.float32), (0.5703, 0.5703))}
    if args.wide is not None:
        slices[f"wide_{args.wide_spacing:.2f}mm"] = (np.load(args.wide).astype(np.float32),
                                                      (args.wide_spacing, args.wide_spacing))
    models = {name: paths for name, paths in MODELS.items()}
    for spec in args.compare:
        tag, _, folder = spec.partition("=")
        for name, (onnx, manifest) in MODELS.items():
            models[f"{name}@{tag}"] = (Path(folder) / onnx.name, Path(folder) / manifest.name)
    backends = available_backends()
    report = {"machine": describe(), "threads": args.threads, "runs": args.runs,
              "unavailable": {k: v for k, v in backends.items() if v},
              "slices": {k: {"shape": list(v[0].shape), "spacing_mm": list(v[1])} for k, v in slices.items()},
              "models": {k: str(v[0]) for k, v in models.items()}, "results": {}}
    for backend, reason in backends.items():
        if reason is not None:
            continue
        segs = {name: Segmenter(onnx, manifest, backend=backend, threads=args.threads)
                for name, (onnx, manifest) in models.items()}
        x = np.zeros(next(iter(segs.values())).runner.input_shape, np.float32)
        calls: dict[str, Callable[[], object]] = {
            f"{name}/network_256": (lambda s=seg, x=x: s.runner.run(x)) for name, seg in segs.items()
        }
        for sname, (hu, sp) in slices.items():
            calls.update({f"{name}/predict_{sname}": (lambda s=seg, h=hu, p=sp: s.predict_hu(h, p))
                          for name, seg in segs.items()})
        for key, stats in interleaved_latency_ms(calls, args.runs).items():
            report["results"][f"{backend}/{key}"] = stats
            print(f"{backend:8s} {key:40s} p50 {stats['p50_ms']:8.2f} ms  p95 {stats['p95_ms']:8.2f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
