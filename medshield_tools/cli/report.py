"""`medshield report`: security metrics of protected output, for one image or for the reference image set.

medshield report IMAGE [--suite S] [--seed HEX] [--mask M] [--changes N] [--out DIR]
medshield report --set [--suite S] [--seed HEX] [--changes N] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.cli import EXIT_USAGE
from gateway.codecs.types import DecodedImage

SUITES = ("sbbe-blowfish", "aes-256-siv")
DEFAULT_OUT = Path("report")
SEED_BYTES = 16


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="security metrics (NPCR/UACI vs Wu critical values, entropy, χ², correlation, PSNR/SSIM, BER/NC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", nargs="?", type=Path, help="one image (DICOM, PNG or NPY)")
    parser.add_argument(
        "--set", action="store_true", help="the reference set: real CT slices, CT_small.dcm, generated slices"
    )
    parser.add_argument("--suite", choices=SUITES, default=SUITES[0])
    parser.add_argument(
        "--seed",
        help="hex seed (at least 16 bytes) for the recipient and every random choice; default: fresh, printed. "
        "Reports only: never protect real data with a seed",
    )
    parser.add_argument("--mask", type=Path, help="lesion mask (PNG or NPY, nonzero = lesion) instead of DS-Net")
    parser.add_argument(
        "--changes", type=int, help="one-pixel changes per image for NPCR/UACI (default 1 for an image, 20 for the set)"
    )
    parser.add_argument("--quick", action="store_true", help="with --set: one image of each kind, small sizes")
    parser.add_argument("--no-plots", action="store_true", help="JSON and Markdown only")
    parser.add_argument(
        "-o", "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default ./{DEFAULT_OUT})"
    )
    parser.set_defaults(func=run)


def _seed(text: str | None) -> bytes:
    if text is None:
        return os.urandom(SEED_BYTES)
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"--seed must be hex, got {text!r}") from None
    if len(seed) < SEED_BYTES:
        raise ValueError(f"--seed needs at least {SEED_BYTES} bytes ({2 * SEED_BYTES} hex digits)")
    return seed


def _segmenter() -> Callable[[DecodedImage], np.ndarray] | None:
    """DS-Net's predict, or None when the model or its runtime is not available here."""
    try:
        from gateway.segment import Segmenter

        return Segmenter().predict
    except (ImportError, OSError, RuntimeError, ValueError):
        return None


def run(args: argparse.Namespace) -> int:
    from medshield_tools.security_report import analysis, image_set, write_report

    if (args.image is None) == (not args.set):
        print("medshield report: give one IMAGE or --set", file=sys.stderr)
        return EXIT_USAGE
    if args.changes is not None and args.changes < 1:
        print("medshield report: --changes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        seed = _seed(args.seed)
    except ValueError as exc:
        print(f"medshield report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.set:
        inputs = image_set.default_image_set(quick=args.quick)
        changes = args.changes or (3 if args.quick else 20)
        reports = analysis.analyse_set(
            inputs,
            suite=args.suite,
            seed=seed,
            changes=changes,
            segmenter=_segmenter(),
            progress=lambda name: print(f"  {name}", file=sys.stderr),
        )
        notes = [f"{item.name}: {item.origin}" for item in inputs]
        title = f"MedShield security metrics — image set, {args.suite}"
    else:
        from gateway.cli.protect import load_mask

        if not args.image.is_file():
            print(f"medshield report: no such file: {args.image}", file=sys.stderr)
            return EXIT_USAGE
        mask = load_mask(args.mask) if args.mask else None
        segmenter = None if mask is not None else _segmenter()
        if mask is None and segmenter is None:
            print("medshield report: no --mask given and no segmentation model available", file=sys.stderr)
            return EXIT_USAGE
        reports = [
            analysis.analyse_image(
                args.image.read_bytes(),
                name=args.image.name,
                suite=args.suite,
                seed=seed,
                mask=mask,
                segmenter=segmenter,
                changes=args.changes or 1,
            )
        ]
        notes = []
        title = f"MedShield security metrics — {args.image.name}, {args.suite}"
    written = write_report(reports, args.out, title=title, notes=notes, plots=not args.no_plots)
    for r in reports:
        d = r.differentials[0]
        print(
            f"{r.name}: NPCR {d.npcr:.4f} % (≥ {d.npcr_critical:.4f}: {'pass' if d.npcr_pass else 'FAIL'}), "
            f"UACI {d.uaci:.4f} % ({d.uaci_low:.4f}–{d.uaci_high:.4f}: {'pass' if d.uaci_pass else 'FAIL'}) "
            f"over {d.compared_bytes} bytes; "
            f"entropy {r.entropy_body:.4f}; χ² p {r.chi2_body['p_value']:.3f}; PSNR {r.psnr_marked:.2f} dB; "
            f"BER {r.ber_payload:g}; restore {'bit-exact' if r.restored_pixels_equal else 'FAILED'}"
        )
        if len(r.differentials) > 1:
            print(
                f"  over {len(r.differentials)} changes: NPCR pass {100 * r.npcr_pass_rate:.0f} %, "
                f"UACI pass {100 * r.uaci_pass_rate:.0f} %"
            )
    print(f"seed {seed.hex()}; wrote {', '.join(str(p) for p in written)}")
    return 0 if all(r.restored_pixels_equal and r.ber_payload == 0 for r in reports) else 1
