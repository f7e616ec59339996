"""Peak resident memory of one `protect` by image size, each size in a fresh process, with a plot.

    .venv/bin/python benchmarks/memory_bench.py [--sizes 128,...,4096] [--daemon-result DIR] [--out DIR]

Each child loads the segmenter (DS-Net, ONNX Runtime CPU), protects one image of the size (16-bit DICOM and
8-bit PNG, `medshield_tools.bench.images.ct_image`: real lung1 up to 512², generated at native resolution above) and
reports its peak RSS (`ru_maxrss`); a child that loads the segmenter and protects nothing gives the baseline.
With `--daemon-result`, the plot adds the daemon's resident memory before and at the peak of the
over-capacity burst of `medshield bench --daemon` (its `daemon.json`). Writes `memory.json` and
`memory_vs_size.png` into a fresh directory under benchmarks/results/tmp/ unless `--out` names one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = (128, 256, 512, 1024, 2048, 4096)


def child(size: int, bits: int) -> None:
    from gateway.crypto.origin import GatewayKey
    from gateway.crypto.recipients import generate_recipient
    from gateway.pipeline import protect
    from gateway.rng import system_random
    from gateway.segment import Segmenter
    from medshield_tools.bench import images

    segmenter = Segmenter()
    if size:
        image = images.ct_image(size, bits)
        _, card = generate_recipient("memory", system_random)
        signer = GatewayKey.generate("bench-memory", system_random)
        protect(image.data, card, signer=signer, segmenter=segmenter.predict)
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _run_child(size: int, bits: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", str(size), str(bits)], capture_output=True,
                         text=True, check=True, cwd=REPO)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--daemon-result", type=Path, help="a `medshield bench --daemon` output directory")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from medshield_tools.bench import machine

    out = args.out or REPO / "benchmarks" / "results" / "tmp" / f"memory-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: a result is never overwritten")
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline = _run_child(0, 16)
    peaks = {bits: {size: _run_child(size, bits) for size in sizes} for bits in (16, 8)}
    result = {
        "benchmark": "peak RSS of one protect by image size",
        "when_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline_rss_mb": baseline / 2**20,
        "peak_rss_mb": {f"{bits}-bit": {str(s): v / 2**20 for s, v in by.items()} for bits, by in peaks.items()},
        "above_baseline_mb": {
            f"{bits}-bit": {str(s): (v - baseline) / 2**20 for s, v in by.items()} for bits, by in peaks.items()
        },
        "raw_pixels_mb": {str(s): s * s * 2 / 2**20 for s in sizes},
        "machine": machine.describe(),
    }
    daemon = None
    if args.daemon_result is not None:
        daemon = json.loads((args.daemon_result / "daemon.json").read_text())["overload"]
        result["daemon_overload"] = daemon
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    _plot(result, sizes, daemon, out / "memory_vs_size.png")
    for bits, by in result["peak_rss_mb"].items():
        print(
            bits, " ".join(f"{s}²: {v:.0f} MB" for s, v in by.items()), f"(baseline {result['baseline_rss_mb']:.0f} MB)"
        )
    print(f"wrote {out}")
    return 0


def _plot(result: dict, sizes: list[int], daemon: dict | None, path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if daemon else 1, figsize=(11 if daemon else 6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    for bits, by in result["peak_rss_mb"].items():
        ax.plot(sizes, [by[str(s)] for s in sizes], marker="o", label=f"peak RSS, {bits}")
    ax.plot(sizes, [result["baseline_rss_mb"] + result["raw_pixels_mb"][str(s)] for s in sizes], "k--",
            label="baseline + raw 16-bit pixels")
    ax.axhline(result["baseline_rss_mb"], color="grey", lw=0.8, label="segmenter loaded, nothing protected")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s}²" for s in sizes])
    ax.set_xlabel("image size")
    ax.set_ylabel("MB")
    ax.set_title("one protect, fresh process")
    ax.legend(fontsize=8)
    if daemon:
        ax2 = axes[0][1]
        ax2.bar(["before burst", "burst peak"], [daemon["rss_before_mb"], daemon["rss_peak_mb"]], color=["C2", "C3"])
        ax2.set_ylabel("daemon RSS, MB")
        ax2.set_title(f"{daemon['images']} images at once ({daemon['images_per_s']:.1f} images/s served)")
    m = result["machine"]
    fig.suptitle(f"{m.get('cpu_model')}, {m.get('usable_cores')} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
