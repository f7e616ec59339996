"""`medshield check-config F`: validate a configuration file; prints OK or the offending key (exit 2)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("check-config", help="validate a configuration file", description=__doc__)
    parser.add_argument("config", help="TOML configuration file")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    # ConfigError propagates to gateway.cli.main, which prints it (naming the key) and exits 2.
    config = load_config(args.config)
    inbound = f"{config.inbound.host}:{config.inbound.port}" if config.inbound else "embedded broker"
    cloud = f"{config.cloud.host}:{config.cloud.port}" if config.cloud else "embedded broker"
    print(
        f"OK: device {config.gateway.device_id}, inbound {inbound}, cloud {cloud}, "
        f"{len(config.protection.recipients)} recipient(s), suite {config.protection.suite}"
    )
    sys.stdout.flush()
    return 0
