"""Which decoder for the lossy DCT-based JPEG syntaxes (Baseline, Extended): agreement with dcmtk and time.

The JPEG standard leaves the exact rounding of the inverse DCT to the decoder, so decoders can differ by a grey
level. For real files in those syntaxes (pydicom's 12-bit `JPGExtended.dcm`; an 8-bit ultrasound image that
tests/dicom encodes with dcmtk's `dcmcjpeg +eb` / `+ee`), this counts the pixels where pylibjpeg-libjpeg (the
gateway's decoder for the other compressed syntaxes) and libjpeg-turbo through OpenCV (the gateway's decoder
for these, `gateway.codecs.dicom`) differ from dcmtk's `dcmdjpeg` (IJG, what PACS viewers use), and their
median decode time. Output: benchmarks/results/dicom_dct_jpeg.json (and a table on stdout).

    .venv/bin/python benchmarks/dicom_dct_jpeg.py [--repeat 5] [-o FILE]

Needs dcmtk (`make dicom-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(decode: Callable[[], np.ndarray], repeat: int) -> tuple[np.ndarray | None, float | None, str | None]:
    try:
        times, out = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = decode()
            times.append(time.perf_counter() - t0)
        return out, round(1000 * statistics.median(times), 2), None
    except Exception as exc:  # noqa: BLE001 - "does not decode this file" is a result here
        return None, None, f"{type(exc).__name__}: {str(exc)[:120]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dicom_dct_jpeg.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import pydicom
    from pydicom.pixels import pixel_array

    from gateway.codecs import dicom
    from gateway.codecs.types import Limits
    from tests.dicom.reference import dcmtk_encode, pydicom_file

    with tempfile.TemporaryDirectory() as tmp:
        encoded = dcmtk_encode(Path(tmp) / "encoded")
        paths = [pydicom_file("JPGExtended.dcm"), encoded["P14SV1_8b.jpeg-baseline.dcm"],
                 encoded["P14SV1_8b.jpeg-extended.dcm"]]
        rows = []
        for path in paths:
            ds = pydicom.dcmread(path)
            reference = Path(tmp) / f"{path.name}.dcmdjpeg.dcm"
            subprocess.run(["dcmdjpeg", str(path), str(reference)], check=True, capture_output=True, timeout=120)
            expected = pydicom.dcmread(reference).pixel_array
            frames, rows_, cols = int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
            candidates: dict[str, Callable[[], np.ndarray]] = {
                "pylibjpeg": partial(pixel_array, str(path), decoding_plugin="pylibjpeg"),
                "opencv-libjpeg-turbo": partial(dicom.decode_dct_jpeg, ds.PixelData, frames, rows_, cols),
            }
            row: dict[str, object] = {"file": path.name, "syntax": ds.file_meta.TransferSyntaxUID.name,
                                      "bits_stored": int(ds.BitsStored), "pixels": int(expected.size)}
            for name, decode in candidates.items():
                out, ms, error = _timed(decode, args.repeat)
                row[name] = (
                    {"error": error} if out is None
                    else {"ms": ms, "pixels_differing_from_dcmtk": int((out.astype(np.int32) != expected).sum()),
                          "max_difference": int(np.abs(out.astype(np.int32) - expected.astype(np.int32)).max())}
                )
            try:
                dicom.decode(path.read_bytes(), Limits())
                row["gateway"] = "decoded"
            except Exception as exc:  # noqa: BLE001 - a refusal is a result here
                row["gateway"] = f"refused: {getattr(exc, 'reason', type(exc).__name__)}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "repeat": args.repeat,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
