"""`medshield keygen NAME --out DIR`: a raw-key recipient (services, tests, the demo's receiver)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.crypto.recipients import generate_recipient


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keygen", help="create a raw-key recipient: NAME.key (private, 0600) and NAME.card")
    parser.add_argument("name", help="recipient name (letters, digits, - and _)")
    parser.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.card")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    private_key, card = generate_recipient(args.name)
    key_path = args.out / f"{args.name}.key"
    card_path = args.out / f"{args.name}.card"
    private_key.save(key_path)
    card.save(card_path)
    print(f"recipient {card.name} key id {card.key_id}")
    print(f"  private key: {key_path} (keep it secret; mode 0600)")
    print(f"  card:        {card_path} (public; give it to gateways)")
    return 0
