"""`medshield recipients add CARD --admin-otp CODE [--state-dir DIR]` and `medshield recipients list`."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.errors import UsageError
from gateway.recipients_store import add_card, list_cards
from gateway.state_layout import DEFAULT_STATE_DIR


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("recipients", help="the gateway's recipient cards")
    sub = p.add_subparsers(dest="recipients_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="install a recipient card (needs the gateway admin's OTP code)")
    add.add_argument("card", type=Path)
    add.add_argument("--admin-otp", required=True, help="current code of the gateway's admin TOTP secret")
    add.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    add.set_defaults(func=_add)
    ls = sub.add_parser("list", help="list installed recipient cards")
    ls.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    ls.set_defaults(func=_list)


def _add(args: argparse.Namespace) -> int:
    dest = add_card(args.state_dir, args.card, args.admin_otp)
    print(f"installed {dest}")
    return 0


def _list(args: argparse.Namespace) -> int:
    if not args.state_dir.is_dir():
        raise UsageError(f"--state-dir {args.state_dir}: no such directory")
    for name, key_id in list_cards(args.state_dir):
        print(f"{name}\t{key_id}")
    return 0
