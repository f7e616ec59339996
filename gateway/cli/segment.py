"""`medshield segment IN -o MASK.png`: write the lesion mask of one CT slice as a PNG (0 / 255).

The input is decoded with gateway.codecs (DICOM, PNG, NPY), within its default limits. The mask has the
input's height and width.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway import codecs
from gateway.codecs.types import DecodedImage
from gateway.errors import ConfigError


def read_input(path: Path) -> DecodedImage:
    """The decoded slice (DICOM, PNG or NPY); an unreadable file is an OSError (exit status 2)."""
    return codecs.decode(path.read_bytes())


def write_mask_png(mask: np.ndarray, out: Path) -> None:
    """Bool mask -> 8-bit PNG with 0 (background) and 255 (lesion), mode 0600 (a lesion mask is patient data)."""
    from gateway.files import write_atomic

    ok, png = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:
        raise ConfigError(f"cannot encode the mask for {out}")
    try:
        write_atomic(out, png.tobytes(), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from gateway.segment import DEFAULT_MODEL, Segmenter

    image = read_input(Path(args.input))
    segmenter = Segmenter(args.model or DEFAULT_MODEL, args.manifest, backend=args.backend, threads=args.threads)
    mask = segmenter.predict(image)
    write_mask_png(mask, Path(args.output))
    print(f"{args.output}: {mask.shape[1]}x{mask.shape[0]}, {int(mask.sum())} lesion pixels "
          f"(backend {segmenter.backend})")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("segment", help="write the lesion mask of a CT slice as a PNG")
    p.add_argument("input", help="DICOM / PNG / NPY slice (NPY: Hounsfield units)")
    p.add_argument("-o", "--output", required=True, help="mask PNG to write (0 / 255, input size)")
    p.add_argument("--backend", default="auto", help="auto, cpu, cuda, tensorrt-ep or tensorrt")
    p.add_argument("--model", default=None, help="ONNX model (default: the committed DS-Net)")
    p.add_argument("--manifest", default=None, help="its manifest (default: beside the model)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for ONNX Runtime")
    p.set_defaults(func=run)
