"""Compression on real CT: every real slice through `protect` under each container compression, next to paper
001's "up to 70 %" (Singh et al., JISA 2023).

    .venv/bin/python benchmarks/compression_bench.py [--out DIR]

Inputs: the real slices `medshield bench --daemon` uses (lung1, and TotalSegmentator's example series where
`make fetch-ct` cached it), as 512×512 DICOM with 16-bit unsigned words (stored = HU + 1024, 0..4095), and as
8-bit PNG renderings (window −1000..400 HU). For each: the envelope's size against the input file's (what
travels), and the pixels alone packed in a container (what the codec does to the image itself). Reduction =
1 − compressed / original; the paper's 70 % is a reduction (ratio 3.3:1). The lesion mask is empty (every
slice gets the same payload; the carriers are the air around the body). Writes `compression.json` into a
fresh directory under benchmarks/results/tmp/ unless `--out` names one (refused if not empty).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway import container  # noqa: E402
from gateway.crypto.origin import GatewayKey  # noqa: E402
from gateway.crypto.recipients import generate_recipient  # noqa: E402
from gateway.pipeline import protect  # noqa: E402
from gateway.rng import system_random  # noqa: E402
from medshield_tools.bench import images, machine  # noqa: E402
from medshield_tools.bench.daemon import real_slices  # noqa: E402

PAPER_001_REDUCTION = 0.70


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or REPO / "benchmarks" / "results" / "tmp" / f"compression-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: a result is never overwritten")
    slices, notes = real_slices()
    _, card = generate_recipient("compression", system_random)
    signer = GatewayKey.generate("bench-compression", system_random)
    rows: dict[str, dict[str, list[float]]] = {}
    for i, (_, hu) in enumerate(slices):
        for bits in (16, 8):
            pixels = images.hu_to_stored(hu.astype(np.float32), bits)
            data = (
                images.wrap_dicom(pixels, hu_intercept=-images.HU_OFFSET, uid_seed=i)
                if bits == 16
                else images.encode_png(pixels)
            )
            empty = np.zeros(pixels.shape, bool)
            for compression in container.COMPRESSIONS:
                envelope = protect(data, card, signer=signer, mask=empty, compression=compression).envelope
                box = container.Container(marked=pixels.astype(pixels.dtype.newbyteorder("<")).tobytes(), record=b"")
                t0 = time.perf_counter()
                packed = container.pack(box, compression)
                pack_s = time.perf_counter() - t0
                key = f"{bits}-bit {'DICOM' if bits == 16 else 'PNG'} / {compression}"
                row = rows.setdefault(key, {"file_reduction": [], "pixel_reduction": [], "pixel_pack_ms": []})
                row["file_reduction"].append(1 - len(envelope) / len(data))
                row["pixel_reduction"].append(1 - len(packed) / pixels.nbytes)
                row["pixel_pack_ms"].append(1000 * pack_s)
    summary = {
        key: {
            name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in row.items()
        }
        for key, row in rows.items()
    }
    result = {
        "benchmark": "compression on real CT",
        "when_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "slices": len(slices),
        "sources": notes,
        "paper_001_reduction": PAPER_001_REDUCTION,
        "reduction_is": "1 - compressed bytes / original bytes",
        "results": summary,
        "machine": machine.describe(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "compression.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for key, s in summary.items():
        print(
            f"{key:34s} file→envelope {100 * s['file_reduction']['median']:5.1f} % "
            f"(max {100 * s['file_reduction']['max']:5.1f} %)"
            f"  pixels {100 * s['pixel_reduction']['median']:5.1f} % (max {100 * s['pixel_reduction']['max']:5.1f} %)"
            f"  pack {s['pixel_pack_ms']['median']:6.2f} ms"
        )
    print(f"paper 001: up to {100 * PAPER_001_REDUCTION:.0f} %; wrote {out / 'compression.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
