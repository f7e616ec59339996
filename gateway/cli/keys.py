"""`medshield keygen NAME --out DIR`: a raw-key recipient (services, tests, the demo's receiver)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.crypto.recipients import generate_recipient, save_recipient
from gateway.rng import system_random


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keygen", help="create a raw-key recipient: NAME.key (private, 0600) and NAME.card")
    parser.add_argument("name", help="recipient name (letters, digits, - and _)")
    parser.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.card")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    private_key, card = generate_recipient(args.name, system_random)
    key_path, card_path = save_recipient(args.out, private_key)
    print(f"recipient {card.name} key id {card.key_id}")
    print(f"  private key: {key_path} (keep it secret; mode 0600)")
    print(f"  card:        {card_path} (public; give it to gateways)")
    return 0
