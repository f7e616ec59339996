"""`medshield protect IN -r CARD -o OUT.msh`: one image through the same pipeline the daemon runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gateway import codecs
from gateway.crypto import suites
from gateway.crypto.origin import GatewayKey
from gateway.crypto.recipients import RecipientCard
from gateway.errors import ConfigError, UsageError
from gateway.files import write_atomic
from gateway.pipeline import DEFAULT_MARGIN_PX, DEFAULT_SUITE, protect
from gateway.rng import SeededRandom, system_random
from gateway.stego.carriers import CARRIER_RULES, DEFAULT_CARRIER_RULE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("protect", help="protect one image (DICOM, PNG, NPY) into an envelope")
    parser.add_argument("input", type=Path)
    parser.add_argument("-r", "--recipient", type=Path, required=True, help="recipient card (NAME.card)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="envelope to write (.msh)")
    parser.add_argument(
        "--device-key",
        type=Path,
        required=True,
        help="the gateway's Ed25519 device key that signs the envelope (PEM, 0600; see `medshield gateway-key`)",
    )
    parser.add_argument(
        "--device-id", required=True, help="the device id of that key (recipients check it against the pinned card)"
    )
    parser.add_argument("--suite", choices=suites.names(), default=DEFAULT_SUITE)
    parser.add_argument("--mask", type=Path, help="lesion mask (PNG or NPY, nonzero = lesion) instead of DS-Net")
    parser.add_argument("--margin", type=int, default=DEFAULT_MARGIN_PX, help="safety margin around lesions, pixels")
    parser.add_argument("--carriers", choices=CARRIER_RULES, default=DEFAULT_CARRIER_RULE,
                        help="which pixels may carry hidden bits: only the air outside the body (default; a "
                             "lesion the segmenter misses is never written to) or every non-lesion pixel "
                             "(the paper's rule)")
    testing = parser.add_argument_group("testing only (never for real patient data)")
    testing.add_argument(
        "--seed",
        metavar="HEX",
        help="derive every random choice (message id, ephemeral key, salt, genomes) from HEX, for known-answer"
        " tests and differential (NPCR/UACI) analysis; anyone who knows HEX can open the envelope."
        " Needs --testing-deterministic",
    )
    testing.add_argument(
        "--testing-deterministic",
        action="store_true",
        help="allow --seed: say that this envelope is for testing and must never carry real patient data",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def load_mask(path: Path) -> np.ndarray:
    """A lesion mask from a PNG (any nonzero pixel is lesion) or an NPY array."""
    data = path.read_bytes()
    if path.suffix.lower() == ".npy":
        mask: np.ndarray = np.load(path, allow_pickle=False)
    else:
        mask = codecs.decode(data).pixels
    if mask.ndim != 2:
        raise UsageError(f"--mask {path}: must be a 2-D image")
    lesion: np.ndarray = mask != 0
    return lesion


def run(args: argparse.Namespace) -> int:
    if args.seed and not args.testing_deterministic:
        raise ConfigError("--seed makes every key follow from the seed, for tests only; add --testing-deterministic")
    card = RecipientCard.load(args.recipient)
    signer = GatewayKey.load(args.device_key, args.device_id)
    rng = system_random
    if args.seed:
        print(
            "medshield: WARNING: deterministic test envelope: its keys follow from --seed, so anyone who knows the"
            " seed can open it. Never use it for real data.",
            file=sys.stderr,
        )
        rng = SeededRandom(bytes.fromhex(args.seed))
    mask = load_mask(args.mask) if args.mask else None
    segmenter = None
    if mask is None:
        from gateway.segment import Segmenter

        segmenter = Segmenter().predict
    result = protect(
        args.input.read_bytes(),
        card,
        signer=signer,
        suite=args.suite,
        mask=mask,
        segmenter=segmenter,
        margin_px=args.margin,
        carrier_rule=args.carriers,
        source={"file": args.input.name},  # inside the ciphertext: file names often name patients
        rng=rng,
    )
    write_atomic(args.output, result.envelope, mode=0o644)
    timings_ms = {stage: round(seconds * 1000, 3) for stage, seconds in result.timings.items()}
    summary = {
        "message_id": result.message_id,
        "envelope": str(args.output),
        "envelope_bytes": len(result.envelope),
        "lesion_pixels": result.lesion_pixels,
        "timings_ms": timings_ms,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        print(f"protected {args.input.name} -> {args.output} ({len(result.envelope)} bytes), "
              f"message {result.message_id}")
        print("  lesion pixels kept untouched:", result.lesion_pixels)
        print("  stages (ms):", ", ".join(f"{k} {v}" for k, v in timings_ms.items()))
    return 0
