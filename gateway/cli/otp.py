"""`medshield otp provision NAME --out DIR`: a TOTP secret, its otpauth:// URI and a QR code (all 0600)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.otp import provision


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("otp", help="one-time-password secrets")
    sub = p.add_subparsers(dest="otp_command", metavar="SUBCOMMAND", required=True)
    prov = sub.add_parser("provision", help="create a TOTP secret + otpauth URI + QR code for an authenticator app")
    prov.add_argument("name", help="account name shown in the authenticator app")
    prov.add_argument("--out", type=Path, required=True, help="directory for NAME.otp.secret/.uri/.png")
    prov.add_argument("--issuer", default="MedShield")
    prov.set_defaults(func=_provision)


def _provision(args: argparse.Namespace) -> int:
    res = provision(args.name, args.out, issuer=args.issuer)
    # Paths only: the secret and URI stay in their 0600 files, never on the terminal or in logs.
    print(f"secret: {res.secret_path}\nuri:    {res.uri_path}\nqr:     {res.qr_path}")
    print("scan the QR code with an authenticator app, then store or delete the .uri/.png files")
    return 0
