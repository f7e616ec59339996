"""Which pydicom pixel-data plugin decodes compressed DICOM for the gateway: pylibjpeg family vs GDCM.

For one real file per compressed transfer syntax (pydicom's test files, and the TotalSegmentator CT series in
JPEG 2000 Lossless that tests/dicom fetches), each plugin decodes the pixel data `--repeat` times; the median
time is recorded, with whether the plugin decodes the syntax at all (coverage) and whether every plugin that
does gives the same pixels. Output: benchmarks/results/dicom_decoders.json (and a table on stdout).

    .venv/bin/python benchmarks/dicom_decoders.py [--repeat 5] [-o FILE]

Needs `pip install python-gdcm pyjpegls` for the alternatives (the gateway itself ships only pylibjpeg).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLUGINS = ("pylibjpeg", "gdcm", "pyjpegls")
FILES = [
    "JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm", "MR_small_jp2klossless.dcm",
    "explicit_VR-UN.dcm", "emri_small_jpeg_2k_lossless.dcm", "MR2_J2KI.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm",
    "emri_small_RLE.dcm", "JPGExtended.dcm",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dicom_decoders.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from pydicom import dcmread
    from pydicom.pixels import pixel_array
    from pydicom.uid import UID

    from tests.dicom.reference import pydicom_file, totalsegmentator_ct_series

    paths = [pydicom_file(n) for n in FILES] + totalsegmentator_ct_series()
    rows = []
    for path in paths:
        syntax = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        row: dict[str, object] = {"file": path.name, "syntax": UID(syntax).name, "ms": {}}
        arrays = {}
        for plugin in PLUGINS:
            try:
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    arrays[plugin] = pixel_array(str(path), decoding_plugin=plugin)
                    times.append(time.perf_counter() - t0)
                row["ms"][plugin] = round(1000 * statistics.median(times), 2)  # type: ignore[index]
            except Exception as exc:  # noqa: BLE001 - "does not decode this syntax" is a result here
                row["ms"][plugin] = None  # type: ignore[index]
                row.setdefault("unsupported", {})[plugin] = type(exc).__name__  # type: ignore[union-attr]
        first = next(iter(arrays.values()), None)
        row["same_pixels"] = all(np.array_equal(first, a) for a in arrays.values())
        rows.append(row)
        print(f"{path.name[:34]:34} {row['syntax'][:34]:34} " + "  ".join(
            f"{p}={row['ms'][p]}" for p in PLUGINS), flush=True)  # type: ignore[index]
    # Time is compared on the files both candidates decode; pyjpegls (JPEG-LS only) is listed for coverage.
    common = [r for r in rows if r["ms"]["pylibjpeg"] is not None and r["ms"]["gdcm"] is not None]  # type: ignore[index]
    summary = {
        plugin: {
            "files_decoded": sum(r["ms"][plugin] is not None for r in rows),  # type: ignore[index]
            "files": len(rows),
            "total_ms_on_common_files": round(sum(r["ms"][plugin] for r in common), 1)  # type: ignore[index]
            if plugin != "pyjpegls" else None,
        }
        for plugin in PLUGINS
    }
    summary["common_files"] = len(common)  # type: ignore[assignment]
    summary["all_agree"] = all(r["same_pixels"] for r in rows)  # type: ignore[assignment]
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "repeat": args.repeat,
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
