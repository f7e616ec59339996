"""`medshield qr encode IN -o DIR` / `medshield qr decode PNG... -o OUT`: files as numbered QR code sequences.

Encode takes an envelope (.msh), a recipient card or a recovery key; decode takes the PNG files (or photos
and scans, several codes per image allowed) in any order. What is printed names the kind, the message id,
the count, the error-correction level and the version, never content.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway import qr
from gateway.qr.scan import BACKENDS, DEFAULT_BACKEND


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("qr", help="carry an envelope, recipient card or recovery key as QR codes")
    sub = p.add_subparsers(dest="qr_command", metavar="SUBCOMMAND", required=True)

    enc = sub.add_parser("encode", help="write a file as a numbered sequence of QR code PNGs")
    enc.add_argument("input", type=Path, help="envelope (.msh), recipient card or recovery key")
    enc.add_argument("-o", "--out", type=Path, required=True, help="directory for the codes (new or empty)")
    enc.add_argument("--kind", choices=qr.KINDS, help="what the input is (default: detected from its content)")
    enc.add_argument(
        "--level", choices=qr.LEVELS, default=qr.DEFAULT_LEVEL,
        help=f"error-correction level: L 7 %%, M 15 %%, Q 25 %%, H 30 %% of a code recoverable "
             f"(default {qr.DEFAULT_LEVEL})",
    )
    enc.add_argument(
        "--max-version", type=int, default=qr.DEFAULT_MAX_VERSION, metavar="1..40",
        help=f"largest QR version (symbol size) to use (default {qr.DEFAULT_MAX_VERSION})",
    )
    enc.add_argument(
        "--max-codes", type=int, default=qr.DEFAULT_MAX_CODES,
        help=f"refuse inputs that need more codes than this (default {qr.DEFAULT_MAX_CODES})",
    )
    enc.add_argument("--module-px", type=int, default=4, help="pixels per module in the PNGs (default 4)")
    enc.set_defaults(func=_encode)

    dec = sub.add_parser("decode", help="join QR code images (any order, duplicates, photos) back into the file")
    dec.add_argument("images", type=Path, nargs="+", help="PNG/JPEG images holding the codes")
    dec.add_argument("-o", "--out", type=Path, required=True, help="file to write (must not exist)")
    dec.add_argument("--decoder", choices=BACKENDS, default=DEFAULT_BACKEND, help=argparse.SUPPRESS)
    dec.set_defaults(func=_decode)


def _encode(args: argparse.Namespace) -> int:
    if not 1 <= args.max_version <= 40:
        raise SystemExit("medshield: --max-version must be 1..40")
    if args.max_codes < 1:
        raise SystemExit("medshield: --max-codes must be at least 1")
    if not 1 <= args.module_px <= 32:
        raise SystemExit("medshield: --module-px must be 1..32")
    res = qr.encode_file(
        args.input, args.out, kind=args.kind, level=args.level, max_version=args.max_version,
        max_codes=args.max_codes, module_px=args.module_px,
    )
    p = res.plan
    print(
        f"{res.kind} {res.message_id}: {p.size} bytes -> {p.count} QR code{'s' if p.count > 1 else ''} "
        f"in {args.out} (error correction {p.level}, version {p.version}, {res.module_px} px per module)"
    )
    print(f"  manifest: {res.manifest}")
    if res.kind in qr.format.SECRET_KINDS:
        print("  these codes are the key itself: print them, keep the paper safe, then delete the files")
    return 0


def _decode(args: argparse.Namespace) -> int:
    res = qr.decode_files(args.images, args.out, backend=args.decoder)
    print(f"{res.kind} {res.message_id}: {res.count} code{'s' if res.count > 1 else ''} -> {res.path} "
          f"({res.size} bytes, digest checked)")
    return 0
