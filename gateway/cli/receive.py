"""`medshield receive --broker URL --out DIR [--key F]`: collect, reassemble, de-duplicate, store, verify."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from gateway import topics
from gateway.signals import stop_on_signals


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("receive", help="cloud side: collect and verify envelopes", description=__doc__)
    parser.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    parser.add_argument("--out", required=True, type=Path, help="directory for <message_id>.msh files")
    parser.add_argument(
        "--gateways",
        type=Path,
        action="append",
        required=True,
        help="pinned gateway card, or a directory of *.gateway-card files (repeat); envelopes from any other"
        " origin are refused",
    )
    parser.add_argument("--key", type=Path, help="raw-key service recipient (NAME.key) to open and check each envelope")
    parser.add_argument("--topic", default=topics.ALL_ENVELOPES)
    parser.add_argument("--client-id", default="medshield-receiver")
    parser.add_argument("--ca-file", type=Path, help="CA bundle for mqtts://")
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path)
    parser.add_argument("--count", type=int, help="exit after storing this many envelopes")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds")
    parser.add_argument(
        "--pacs", type=Path,
        help="TOML of [[destination]] PACS (C-STORE or STOW-RS) to deliver opened DICOM to (needs --key)"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gateway.config import TLSConfig, read_secret
    from gateway.logging import configure_logging
    from gateway.mqtt_link import broker_from_url
    from gateway.receiver import Receiver, ReceiverService, key_verifier

    configure_logging("info")
    overrides: dict[str, Any] = {}
    if args.username:
        overrides["username"] = args.username
    broker = broker_from_url(args.broker, **overrides)
    if args.ca_file:
        broker = broker.model_copy(update={"tls": TLSConfig(ca_file=args.ca_file)})
    if args.password_file:
        secret = read_secret(args.password_file, "--password-file", os.environ)
        broker = broker.model_copy(update={"password": secret, "password_file": args.password_file})
    from gateway.crypto.origin import TrustedGateways

    gateways = TrustedGateways.load(args.gateways)
    verifier = None
    if args.key:
        from gateway.crypto.recipients import PrivateKey

        verifier = key_verifier(PrivateKey.load(args.key), gateways)
    delivery = None
    if args.pacs:
        delivery = _delivery(args, gateways)
    receiver = Receiver(args.out, gateways, verifier, on_stored=delivery.offer if delivery else None)
    service = ReceiverService(receiver, broker, topic=args.topic, client_id=args.client_id).start()
    stop = stop_on_signals()
    deadline = time.monotonic() + args.timeout if args.timeout else float("inf")
    while not stop.is_set() and time.monotonic() < deadline:
        if args.count is not None and receiver.stats.stored >= args.count:
            break
        stop.wait(0.1)
    while (delivery is not None and not stop.is_set() and time.monotonic() < deadline
           and delivery.queue.depth(held=False)):
        stop.wait(0.1)  # --count reached: let the PACS deliveries drain (they stay queued if not)
    service.stop()
    if delivery is not None:
        delivery.stop()
    print(json.dumps(receiver.stats.as_dict(), sort_keys=True))
    return 0 if receiver.stats.verify_failed == 0 else 1


def _delivery(args: argparse.Namespace, gateways: Any) -> Any:
    """PACS delivery (gateway.dicom.delivery): queue under --out, catch up on stored envelopes, start senders."""
    from gateway.crypto.recipients import PrivateKey
    from gateway.dicom.delivery import Delivery, key_opener, load_destinations
    from gateway.errors import ConfigError

    if not args.key:
        raise ConfigError("--pacs needs --key (the service recipient that opens what is delivered)")
    destinations = load_destinations(args.pacs)
    restore = any(d.what == "original" for d in destinations)
    opener = key_opener(PrivateKey.load(args.key), restore, gateways)
    delivery = Delivery(destinations, args.out / "delivery.sqlite3", opener)
    args.out.mkdir(parents=True, exist_ok=True)
    delivery.catch_up(args.out)
    return delivery.start()
