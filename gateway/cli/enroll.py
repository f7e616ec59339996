"""`medshield enroll NAME --fingerprint F... --iris I... --keyserver URL --keyserver-ca PEM --enrol-token FILE
--device-id ID --out DIR`.

Registers the service's share with the key-release service, then writes NAME.profile (sealed with the profile
passphrase, 0600), NAME.card (public, for gateways) and NAME.recovery.txt (0600: print it, then delete it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.biometrics.keyrelease import MIN_ENROL_CAPTURES, enrol
from gateway.biometrics.profile import PASS_ENV, KeyServerRef, passphrase_from
from gateway.errors import BiometricError


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BiometricError("unreadable", f"cannot read {path}: {exc.strerror}") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("enroll", help="enrol a recipient from fingerprint + iris captures")
    p.add_argument("name")
    p.add_argument("--fingerprint", type=Path, nargs="+", required=True,
                   help=f"fingerprint images (at least {MIN_ENROL_CAPTURES}, paired with --iris in order)")
    p.add_argument("--iris", type=Path, nargs="+", required=True, help="eye images (NIR), as many as fingerprints")
    p.add_argument("--keyserver", required=True, help="https:// URL of the key-release service")
    p.add_argument("--keyserver-ca", type=Path, required=True, help="the service's certificate (PEM), pinned")
    p.add_argument("--account", default=None, help="account at the service (default: NAME)")
    p.add_argument("--enrol-token", type=Path, required=True,
                   help="file with the one-time token from `medshield keyserver add`")
    p.add_argument("--device-id", required=True, help="the workstation's device id (bound into the key)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--profile-pass-file", type=Path, default=None,
                   help=f"file whose first line is the profile passphrase (default: ${PASS_ENV})")
    p.set_defaults(func=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    passphrase = passphrase_from(args.profile_pass_file)
    fps = [_read(f) for f in args.fingerprint]
    irs = [_read(f) for f in args.iris]
    ref = KeyServerRef(url=args.keyserver, account=args.account or args.name,
                       ca_pem=_read(args.keyserver_ca).decode("ascii", "replace"))
    token = _read(args.enrol_token).decode("ascii", "replace").strip()
    profile, card, recovery = enrol(args.name, fps, irs, args.device_id, args.out, passphrase, ref, token)
    print(f"profile:  {profile}\ncard:     {card}\nrecovery: {recovery}  (print it, keep it offline, delete the file)")
    return 0
