"""`medshield keygen NAME --out DIR` (a raw-key recipient) and `medshield gateway-key --device-id ID --key F`
(a gateway's Ed25519 device key and its public gateway card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.crypto.origin import CARD_SUFFIX, GatewayKey
from gateway.crypto.recipients import generate_recipient, save_recipient
from gateway.rng import system_random


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("keygen", help="create a raw-key recipient: NAME.key (private, 0600) and NAME.card")
    parser.add_argument("name", help="recipient name (letters, digits, - and _)")
    parser.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.card")
    parser.set_defaults(func=run)

    gw = subparsers.add_parser(
        "gateway-key",
        help="a gateway's device key (created if missing) and its public gateway card for receivers to pin",
        description="Loads the Ed25519 device key at --key, creating it (0600) if it does not exist, and writes "
        f"the gateway card DEVICE_ID{CARD_SUFFIX} (public) into --card-dir. The daemon's device key is its ledger "
        "key file (ledger.key_file, default <state_dir>/ledger.key); the daemon writes its card on start.",
    )
    gw.add_argument("--device-id", required=True, help="the gateway's device id (as in its configuration)")
    gw.add_argument("--key", type=Path, required=True, help="device key file (PEM, 0600)")
    gw.add_argument("--card-dir", type=Path, help="where to write the card (default: beside the key)")
    gw.set_defaults(func=run_gateway_key)


def run(args: argparse.Namespace) -> int:
    private_key, card = generate_recipient(args.name, system_random)
    key_path, card_path = save_recipient(args.out, private_key)
    print(f"recipient {card.name} key id {card.key_id}")
    print(f"  private key: {key_path} (keep it secret; mode 0600)")
    print(f"  card:        {card_path} (public; give it to gateways)")
    return 0


def run_gateway_key(args: argparse.Namespace) -> int:
    key = GatewayKey.load_or_create(args.key, args.device_id)
    card_path = key.card.save((args.card_dir or args.key.parent) / f"{key.device_id}{CARD_SUFFIX}")
    print(f"gateway {key.device_id} key id {key.key_id}")
    print(f"  device key:   {args.key} (keep it secret; mode 0600)")
    print(f"  gateway card: {card_path} (public; pin it at receivers and recipients)")
    return 0
