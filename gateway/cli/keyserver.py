"""`medshield keyserver {serve,add,unlock,status}`: the cloud-side key-release service (DESIGN §3).

    medshield keyserver add NAME --state DIR --out DIR      account + TOTP secret (QR/URI for the authenticator
                                                            app only) + one-time enrolment token, all 0600
    medshield keyserver serve --state DIR --cert PEM --key PEM [--host 127.0.0.1] [--port 8443]
    medshield keyserver unlock NAME --state DIR             clear a lock-out (audited)
    medshield keyserver status NAME --state DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.errors import UsageError
from gateway.files import write_atomic
from gateway.keyserver.service import KeyService, Policy
from gateway.otp import provisioning_uri, qr_png


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("keyserver", help="the key-release service (holds one share of each K_secret)")
    sub = p.add_subparsers(dest="keyserver_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="create an account: TOTP secret for the authenticator app + enrolment token")
    add.add_argument("name")
    add.add_argument("--state", type=Path, required=True)
    add.add_argument("--out", type=Path, required=True, help="directory for NAME.otp.png/.uri and NAME.enrol-token")
    add.set_defaults(func=_add)
    serve = sub.add_parser("serve", help="serve release requests over HTTPS")
    serve.add_argument("--state", type=Path, required=True)
    serve.add_argument("--cert", type=Path, required=True)
    serve.add_argument("--key", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--max-failures", type=int, default=Policy.max_failures)
    serve.add_argument("--lockout-s", type=int, default=Policy.lockout_s)
    serve.set_defaults(func=_serve)
    for name, func in (("unlock", _unlock), ("status", _status)):
        s = sub.add_parser(name, help=f"{name} an account")
        s.add_argument("name")
        s.add_argument("--state", type=Path, required=True)
        s.set_defaults(func=func)


def _add(args: argparse.Namespace) -> int:
    acct = KeyService(args.state).add_account(args.name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    uri = provisioning_uri(acct.totp_secret, acct.name)
    write_atomic(out / f"{acct.name}.otp.uri", (uri + "\n").encode())
    write_atomic(out / f"{acct.name}.otp.png", qr_png(uri))
    write_atomic(out / f"{acct.name}.enrol-token", (acct.enrol_token + "\n").encode())
    print(f"account {acct.name}: scan {out / (acct.name + '.otp.png')} with the user's authenticator app, then delete"
          f" it and the .uri; give {out / (acct.name + '.enrol-token')} to `medshield enroll` (one use)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.keyserver.http import KeyServer

    for option, path in (("--cert", args.cert), ("--key", args.key)):
        if not path.is_file():  # ssl's own error does not name the file
            raise UsageError(f"{option} {path}: no such file")
    policy = Policy(max_failures=args.max_failures, lockout_s=args.lockout_s)
    server = KeyServer(KeyService(args.state, policy=policy), args.cert, args.key, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _unlock(args: argparse.Namespace) -> int:
    KeyService(args.state).unlock(args.name)
    print(f"account {args.name} unlocked")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(KeyService(args.state).status(args.name), sort_keys=True))
    return 0
