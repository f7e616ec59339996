"""`medshield open IN.msh (--key F | --profile F --fingerprint F --iris I --otp CODE) --gateways PATH -o OUT`.

The envelope opens only if its gateway signature verifies against a pinned gateway card (`--gateways`, files
or directories of `*.gateway-card`); `--accept-unknown-origin` opens one whose key is not pinned, and says so
loudly. Every output carries pixels or patient data and is written 0600.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.crypto.origin import TrustedGateways
from gateway.crypto.recipients import PrivateKey
from gateway.errors import ConfigError, OpenError, UsageError
from gateway.files import write_atomic
from gateway.pipeline import open_


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("open", help="open an envelope as its recipient")
    parser.add_argument("input", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="image to write (the input's format)")
    credentials = parser.add_argument_group("credentials (a raw key, or a biometric profile)")
    credentials.add_argument("--key", type=Path, help="raw-key recipient's private key (NAME.key)")
    credentials.add_argument("--profile", type=Path, help="enrolled recipient profile (NAME.profile)")
    credentials.add_argument(
        "--fingerprint", type=Path, action="append", default=[],
        help="fresh fingerprint capture (repeat: 3 captures are recommended, see the MSE-Net model card)")
    credentials.add_argument(
        "--iris", type=Path, action="append", default=[], help="fresh eye image (repeat, one per --fingerprint)")
    credentials.add_argument("--otp", help="current one-time code (the key-release service checks it)")
    credentials.add_argument("--recovery-key", type=Path, help="file with the printed recovery key (instead of --otp)")
    credentials.add_argument(
        "--device-id", help="this device's id (default: $MEDSHIELD_DEVICE_ID, else /etc/machine-id)"
    )
    credentials.add_argument(
        "--profile-pass-file", type=Path,
        help="file whose first line is the profile passphrase (default: $MEDSHIELD_PROFILE_PASS)"
    )
    origin = parser.add_argument_group("origin (who sealed the envelope)")
    origin.add_argument(
        "--gateways",
        type=Path,
        action="append",
        default=[],
        help="pinned gateway card, or a directory of *.gateway-card files (repeat for several)",
    )
    origin.add_argument(
        "--accept-unknown-origin",
        action="store_true",
        help="DANGER: open even if the envelope's gateway key is not pinned; its origin is then unverified",
    )
    parser.add_argument(
        "--restore-original", action="store_true", help="write the bit-exact original instead of the marked image"
    )
    parser.add_argument("--hidden", type=Path, help="write the hidden payload (ids, timestamp, lesion mask) as JSON")
    parser.set_defaults(func=run)


def _private_key(args: argparse.Namespace) -> PrivateKey:
    if args.key and args.profile:
        raise UsageError("give --key or --profile, not both")
    if args.key:
        return PrivateKey.load(args.key)
    if args.profile:
        if not (args.fingerprint and args.iris and (args.otp or args.recovery_key)):
            raise UsageError("--profile needs --fingerprint, --iris and --otp (or --recovery-key)")
        from gateway.biometrics.keyrelease import release_private_key
        from gateway.biometrics.profile import passphrase_from

        recovery = None
        if args.recovery_key:
            try:
                recovery = args.recovery_key.read_text("ascii").strip()
            except (OSError, UnicodeDecodeError):
                raise OpenError() from None
        return release_private_key(
            args.profile,
            args.fingerprint,
            args.iris,
            otp_code=None if recovery else args.otp,
            recovery_key=recovery,
            device_id=args.device_id,
            passphrase=passphrase_from(args.profile_pass_file),
        )
    raise UsageError("give --key, or --profile with --fingerprint, --iris and --otp")


def run(args: argparse.Namespace) -> int:
    if not args.gateways and not args.accept_unknown_origin:
        raise ConfigError("give --gateways (the pinned gateway cards); --accept-unknown-origin skips the check")
    gateways = TrustedGateways.load(args.gateways)
    private_key = _private_key(args)
    try:
        envelope = args.input.read_bytes()
    except OSError:
        raise OpenError() from None
    opened = open_(
        envelope,
        private_key,
        gateways=gateways,
        accept_unknown_origin=args.accept_unknown_origin,
        restore_original=args.restore_original,
    )
    origin = opened.origin
    if not origin.pinned:
        print(
            f"medshield: WARNING: UNVERIFIED ORIGIN: gateway key {origin.key_id} is not pinned; the envelope claims"
            f" device {origin.device_id!r} but nothing proves who sealed it",
            file=sys.stderr,
        )
    # open_ returns the original exactly when asked to restore it.
    image = opened.original if opened.original is not None else opened.marked
    write_atomic(args.output, image, mode=0o600)
    if args.hidden:
        hidden = opened.hidden
        record = {
            "message_id": hidden.message_id,
            "timestamp_ns": hidden.timestamp_ns,
            "stamp_verified": True,
            "source_ref": hidden.source_ref,
            "lesion_pixels": int(hidden.lesion_mask.sum()),
            "lesion_mask_shape": list(hidden.lesion_mask.shape),
            "origin": {
                "device_id": origin.device_id,
                "gateway_key_id": origin.key_id,
                "created_ns": origin.created_ns,
                "pinned": origin.pinned,
            },
            "source": dict(opened.source),
        }
        write_atomic(args.hidden, (json.dumps(record, indent=2) + "\n").encode(), mode=0o600)
    what = "original" if args.restore_original else "marked image"
    verified = "VERIFIED" if origin.pinned else "UNVERIFIED"
    created = datetime.fromtimestamp(origin.created_ns / 1e9, tz=UTC).isoformat(timespec="seconds")
    print(
        f"opened {args.input.name}: {what} -> {args.output}; origin {verified}: gateway {origin.device_id}"
        f" (key {origin.key_id}), sealed {created}; timestamp stamp verified"
    )
    return 0
