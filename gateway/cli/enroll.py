"""`medshield enroll NAME --fingerprint F... --iris I... --otp-secret FILE --device-id ID --out DIR`.

Writes NAME.profile (encrypted with the profile passphrase, 0600) and NAME.card (public, for gateways).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.biometrics.keyrelease import MIN_ENROL_CAPTURES, enrol
from gateway.biometrics.profile import PASS_ENV, passphrase_from
from gateway.errors import InputError
from gateway.otp import read_secret_file


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError("unreadable", f"cannot read {path}: {exc.strerror}") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("enroll", help="enrol a recipient from fingerprint + iris captures")
    p.add_argument("name")
    p.add_argument("--fingerprint", type=Path, nargs="+", required=True,
                   help=f"fingerprint images (at least {MIN_ENROL_CAPTURES}, paired with --iris in order)")
    p.add_argument("--iris", type=Path, nargs="+", required=True, help="eye images (NIR), as many as fingerprints")
    p.add_argument("--otp-secret", type=Path, required=True, help="NAME.otp.secret from `medshield otp provision`")
    p.add_argument("--device-id", required=True, help="the workstation's device id (bound into the key)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--profile-pass-file", type=Path, default=None,
                   help=f"file whose first line is the profile passphrase (default: ${PASS_ENV})")
    p.set_defaults(func=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    passphrase = passphrase_from(args.profile_pass_file)
    fps = [_read(f) for f in args.fingerprint]
    irs = [_read(f) for f in args.iris]
    profile, card = enrol(args.name, fps, irs, read_secret_file(args.otp_secret), args.device_id, args.out,
                          passphrase)
    print(f"profile: {profile}\ncard:    {card}")
    return 0
