"""`medshield quarantine list|show|release`: inspect what the gateway could not protect, and put it back.

`release` re-injects a message through the spool: its outcome and attempt counts are forgotten and it is
queued in the spool's inbox, which the running daemon (or the next start) processes like a new arrival; if it
fails again it is quarantined again. Records never print the payload.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from gateway.cli.run import DEFAULT_CONFIG, config_path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("quarantine", help="list, show or release quarantined inputs", description=__doc__)
    parser.add_argument("--config", "-c", help=f"TOML configuration (default $MEDSHIELD_CONFIG or {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="one line per quarantined input, oldest first").set_defaults(func=_list)
    show = sub.add_parser("show", help="the full record of one input (JSON)")
    show.add_argument("message_id")
    show.set_defaults(func=_show)
    release = sub.add_parser("release", help="re-inject inputs through the spool")
    release.add_argument("message_id", nargs="+")
    release.set_defaults(func=_release)


def _quarantine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from gateway.config import load_config
    from gateway.errors import ConfigError
    from gateway.quarantine import Quarantine

    config = load_config(config_path(args.config))
    if not config.quarantine_dir.is_dir():
        raise ConfigError(f"{config.quarantine_dir}: no quarantine here (has the gateway run with this config?)")
    return config, Quarantine(config.quarantine_dir, config.gateway.device_id)


def _list(args: argparse.Namespace) -> int:
    _, quarantine = _quarantine(args)
    for r in quarantine.records():
        when = datetime.fromtimestamp(r.received_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{r.message_id}  {when}  {r.reason:<24} {r.size:>10} B  {r.topic}")
    return 0


def _record(quarantine, message_id: str):  # type: ignore[no-untyped-def]
    from gateway.errors import ConfigError

    try:
        return quarantine.get(message_id)
    except KeyError:
        raise ConfigError(f"no quarantined input {message_id!r} (see `medshield quarantine list`)") from None


def _show(args: argparse.Namespace) -> int:
    _, quarantine = _quarantine(args)
    print(json.dumps(asdict(_record(quarantine, args.message_id)), indent=2, sort_keys=True))
    return 0


def _release(args: argparse.Namespace) -> int:
    from gateway.spool import Spool

    config, quarantine = _quarantine(args)
    records = [_record(quarantine, mid) for mid in args.message_id]
    spool = Spool(config.spool_path, config.spool.max_bytes)
    try:
        for record in records:
            spool.inject(record.message_id, record.topic, quarantine.payload(record.message_id), record.received_ns)
            quarantine.remove(record.message_id)
            print(f"released {record.message_id} ({record.reason})", file=sys.stderr)
    finally:
        spool.close()
    return 0
