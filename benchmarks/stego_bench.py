"""Time the image side of protection: hiding, extraction, restoration, and DICOM decode/encode.

    .venv/bin/python benchmarks/stego_bench.py [--repeats 200] [--sizes 512 2048] [--json OUT.json]

Inputs are real where possible: the lung CT slice 33 with its nodule mask (shared/data/ct/lung1.npz) wrapped
as a 512x512 16-bit CT DICOM file, and pydicom's bundled CT_small.dcm; larger sizes tile the same slice.
Reports the median and 95th percentile in milliseconds per operation, with a description of the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from gateway.codecs import decode, encode
from gateway.resources import shared_data_dir
from gateway.stego import RestorationRecord, embed, exclusion_mask, extract, restore
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256
from medshield_tools.bench.machine import describe
from medshield_tools.bench.stats import latency_ms, time_calls

MARGIN_PX = 5


def ct_dicom(hu: np.ndarray) -> bytes:
    """A CT Image Storage file of `hu`: unsigned 12-bit stored values with rescale intercept -1024."""
    from medshield_tools.scanner_sim import dicom_from_hu

    return dicom_from_hu(hu, instance=1, spacing_mm=(0.5703, 0.5703), thickness_mm=5.0, signed=False)


def bench_hiding(pixels: np.ndarray, lesion: np.ndarray, repeats: int) -> dict[str, object]:
    order_key = hashlib.sha256(b"bench order key").digest()
    k_stamp = hashlib.sha256(b"bench stamp key").digest()
    message_id = str(uuid.uuid4())
    stamp = make_stamp(k_stamp, time.time_ns(), pixel_sha256(pixels), message_id)
    hidden = HiddenPayload(message_id, time.time_ns(), stamp, lesion, "1.2.3.4.5")
    payload = hidden.to_bytes()
    exclusion = exclusion_mask(lesion, MARGIN_PX)
    marked, record = embed(pixels, exclusion, payload, order_key)
    record_bytes = record.to_bytes()
    result: dict[str, object] = {
        "shape": list(pixels.shape),
        "dtype": str(pixels.dtype),
        "payload_bytes": len(payload),
        "record_bytes": len(record_bytes),
        "changed_pixels": int(np.count_nonzero(marked != pixels)),
    }
    result["exclusion_mask"] = latency_ms(time_calls(lambda: exclusion_mask(lesion, MARGIN_PX), repeats))
    result["payload_to_bytes"] = latency_ms(time_calls(hidden.to_bytes, repeats))
    result["pixel_sha256"] = latency_ms(time_calls(lambda: pixel_sha256(pixels), repeats))
    result["embed"] = latency_ms(time_calls(lambda: embed(pixels, exclusion, payload, order_key), repeats))
    result["record_to_bytes"] = latency_ms(time_calls(record.to_bytes, repeats))
    result["extract"] = latency_ms(time_calls(lambda: extract(marked, exclusion, order_key), repeats))
    result["record_from_bytes"] = latency_ms(time_calls(lambda: RestorationRecord.from_bytes(record_bytes), repeats))
    result["restore"] = latency_ms(time_calls(lambda: restore(marked, record, order_key), repeats))
    return result


def bench_dicom(name: str, raw: bytes, repeats: int) -> dict[str, object]:
    image = decode(raw)
    flipped = image.pixels ^ image.pixels.dtype.type(1)
    return {
        "file": name,
        "bytes": len(raw),
        "shape": list(image.pixels.shape),
        "decode": latency_ms(time_calls(lambda: decode(raw), repeats)),
        "encode": latency_ms(time_calls(lambda: encode(image, flipped), repeats)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 2048, 4096])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        hu = data["image_hu"][33]
        lesion = data["lesion_mask"][33].astype(bool)
    stored = (hu.astype(np.int32) + 1024).astype(np.uint16)

    results: dict[str, object] = {"machine": describe(), "repeats": args.repeats, "hiding": [], "dicom": []}
    for size in args.sizes:
        reps = (size + 511) // 512
        pixels = np.tile(stored, (reps, reps))[:size, :size]
        mask = np.tile(lesion, (reps, reps))[:size, :size]
        repeats = max(5, args.repeats * 512 * 512 // (size * size))
        results["hiding"].append(bench_hiding(np.ascontiguousarray(pixels), np.ascontiguousarray(mask), repeats))
    from pydicom.data import get_testdata_file

    results["dicom"].append(bench_dicom("lung1 slice 33 (512x512 CT)", ct_dicom(hu), args.repeats))
    results["dicom"].append(
        bench_dicom("CT_small.dcm", Path(get_testdata_file("CT_small.dcm")).read_bytes(), args.repeats)
    )
    results["dicom"].append(
        bench_dicom("MR_small_RLE.dcm", Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes(), args.repeats)
    )

    print(f"machine: {results['machine']}")
    for row in results["hiding"]:
        print(
            f"\nhiding {row['shape'][0]}x{row['shape'][1]} {row['dtype']}: payload {row['payload_bytes']} B, "
            f"record {row['record_bytes']} B, {row['changed_pixels']} pixels changed"
        )
        for key in (
            "exclusion_mask",
            "payload_to_bytes",
            "pixel_sha256",
            "embed",
            "record_to_bytes",
            "extract",
            "record_from_bytes",
            "restore",
        ):
            t = row[key]
            print(f"  {key:18s} p50 {t['p50_ms']:8.3f} ms   p95 {t['p95_ms']:8.3f} ms")
    for row in results["dicom"]:
        print(f"\nDICOM {row['file']}: {row['bytes']} B")
        for key in ("decode", "encode"):
            t = row[key]
            print(f"  {key:18s} p50 {t['p50_ms']:8.3f} ms   p95 {t['p95_ms']:8.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
