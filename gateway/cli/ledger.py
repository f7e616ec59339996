"""`medshield ledger export|verify|pubkey`: the gateway's signed envelope ledger and its checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.state_layout import StateLayout


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("ledger", help="export or verify the signed envelope ledger", description=__doc__)
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    export = sub.add_parser(
        "export", help="write the gateway's ledger as JSON lines, ending with a fresh signed checkpoint"
    )
    export.add_argument("--state-dir", type=Path, required=True)
    export.add_argument("--device-id", help="the gateway's device id (default: from its gateway card in --state-dir)")
    export.add_argument("--key", type=Path, help="the device key (default: <state-dir>/ledger.key)")
    export.add_argument("-o", "--out", type=Path, help="output file (default stdout)")
    export.set_defaults(func=_export)

    pubkey = sub.add_parser("pubkey", help="print the gateway's device public key (PEM)")
    pubkey.add_argument("--state-dir", type=Path, required=True)
    pubkey.set_defaults(func=_pubkey)

    verify = sub.add_parser(
        "verify",
        help="check chain, signatures, checkpoints (completeness) and that envelopes are recorded",
        description="Exit 0 only if every entry is signed and chained in order, the entries match the latest "
        "signed checkpoint (nothing deleted, reordered, dropped from the tail or forked) and each --envelope is "
        "recorded. Every problem is printed with the entry it concerns.",
    )
    verify.add_argument("ledger", type=Path, help="ledger JSON lines (from export, or collected by receive)")
    key = verify.add_mutually_exclusive_group(required=True)
    key.add_argument("--gateway-card", type=Path, help="the gateway's pinned card (DEVICE_ID.gateway-card)")
    key.add_argument("--public-key", type=Path, help="the gateway's device public key (ledger.pub, PEM)")
    verify.add_argument("--checkpoints", type=Path, nargs="*", default=[], help="more files of signed checkpoints")
    verify.add_argument("--envelope", type=Path, nargs="*", default=[], help=".msh files that must be recorded")
    verify.set_defaults(func=_verify)


def _spool(state_dir: Path) -> Any:
    from gateway.errors import ConfigError
    from gateway.spool import Spool

    path = StateLayout(state_dir).spool
    if not path.is_file():
        raise ConfigError(f"{path}: no spool here (is --state-dir the gateway's state directory?)")
    return Spool(path, max_bytes=1 << 62)


def _device_id(args: argparse.Namespace) -> str:
    from gateway.crypto.origin import CARD_SUFFIX, GatewayCard
    from gateway.errors import ConfigError

    if args.device_id:
        return str(args.device_id)
    cards = sorted(args.state_dir.glob(f"*{CARD_SUFFIX}"))
    if len(cards) != 1:
        raise ConfigError(f"{args.state_dir}: give --device-id (found {len(cards)} gateway cards)")
    return GatewayCard.load(cards[0]).device_id


def _export(args: argparse.Namespace) -> int:
    from gateway.crypto.origin import GatewayKey
    from gateway.ledger import LedgerWriter

    key = GatewayKey.load(args.key or StateLayout(args.state_dir).ledger_key, _device_id(args))
    spool = _spool(args.state_dir)
    try:
        lines = spool.ledger_lines()
        count, head = spool.ledger_head()
    finally:
        spool.close()
    import time

    checkpoint = LedgerWriter(key, "").checkpoint(count, head, time.time_ns())
    text = "".join(line + "\n" for line in lines) + checkpoint.to_json() + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError

    path = StateLayout(args.state_dir).ledger_public_key
    if not path.is_file():
        raise ConfigError(f"{path}: missing (the gateway creates it on first start)")
    sys.stdout.write(path.read_text())
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gateway.crypto.origin import GatewayCard, public_key_from_pem
    from gateway.ledger import read_ledger, verify_ledger

    # A missing file (OSError) is a usage error, reported by gateway.cli.main; a file that is not a ledger fails.
    try:
        entries, checkpoints = read_ledger(args.ledger)
        for extra in args.checkpoints:
            checkpoints += read_ledger(extra)[1]
    except (ValueError, TypeError) as exc:
        print(f"medshield: {args.ledger}: not a ledger ({type(exc).__name__})", file=sys.stderr)
        return 1
    if args.gateway_card:
        public_key = GatewayCard.load(args.gateway_card).public_key
    else:
        public_key = public_key_from_pem(args.public_key.read_text())
    report = verify_ledger(entries, public_key, checkpoints, [p.read_bytes() for p in args.envelope])
    for problem in report.problems:
        print(f"FAIL {problem}")
    if report.ok:
        print(
            f"OK: {report.entries} entries, chain and signatures valid, complete against {report.checkpoints}"
            f" signed checkpoint(s), {len(args.envelope)} envelope(s) recorded"
        )
        return 0
    return 1
