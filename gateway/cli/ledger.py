"""`medshield ledger export|verify|pubkey`: the gateway's signed envelope ledger."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("ledger", help="export or verify the signed envelope ledger", description=__doc__)
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    export = sub.add_parser("export", help="write the gateway's ledger as JSON lines")
    export.add_argument("--state-dir", type=Path, required=True)
    export.add_argument("-o", "--out", type=Path, help="output file (default stdout)")
    export.set_defaults(func=_export)

    pubkey = sub.add_parser("pubkey", help="print the gateway's ledger public key (PEM)")
    pubkey.add_argument("--state-dir", type=Path, required=True)
    pubkey.set_defaults(func=_pubkey)

    verify = sub.add_parser("verify", help="check chain, signatures and that envelopes are recorded")
    verify.add_argument("ledger", type=Path, help="ledger JSON lines (from export, or collected by receive)")
    verify.add_argument("--public-key", type=Path, required=True, help="the gateway's ledger.pub (PEM)")
    verify.add_argument("--envelope", type=Path, nargs="*", default=[], help=".msh files that must be recorded")
    verify.set_defaults(func=_verify)


def _spool(state_dir: Path):  # type: ignore[no-untyped-def]
    from gateway.errors import ConfigError
    from gateway.spool import Spool

    path = state_dir / "spool.sqlite3"
    if not path.is_file():
        raise ConfigError(f"{path}: no spool here (is --state-dir the gateway's state directory?)")
    return Spool(path, max_bytes=1 << 62)


def _export(args: argparse.Namespace) -> int:
    spool = _spool(args.state_dir)
    text = "".join(line + "\n" for line in spool.ledger_lines())
    spool.close()
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError

    path = args.state_dir / "ledger.pub"
    if not path.is_file():
        raise ConfigError(f"{path}: missing (the gateway creates it on first start)")
    sys.stdout.write(path.read_text())
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gateway.ledger import read_jsonl, verify_chain

    try:
        entries = read_jsonl(args.ledger)
    except (OSError, ValueError, TypeError) as exc:
        print(f"ledger: cannot read {args.ledger}: {type(exc).__name__}", file=sys.stderr)
        return 1
    report = verify_chain(entries, args.public_key.read_text(), [p.read_bytes() for p in args.envelope])
    for problem in report.problems:
        print(f"FAIL {problem}")
    if report.ok:
        print(f"OK: {report.entries} entries, chain and signatures valid, {len(args.envelope)} envelope(s) recorded")
        return 0
    return 1
