"""`medshield run [--config F]`: the gateway daemon (systemd Type=notify; SIGTERM stops it cleanly)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/medshield/gateway.toml")


def config_path(arg: str | None) -> Path:
    """--config, else $MEDSHIELD_CONFIG, else /etc/medshield/gateway.toml."""
    return Path(arg or os.environ.get("MEDSHIELD_CONFIG") or DEFAULT_CONFIG)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("run", help="run the gateway daemon", description=__doc__)
    parser.add_argument("--config", "-c", help=f"TOML configuration (default $MEDSHIELD_CONFIG or {DEFAULT_CONFIG})")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.daemon import pipeline_protect_fn, serve
    from gateway.logging import configure_logging

    configure_logging(args.log_level)
    config = load_config(config_path(args.config))
    # The metrics are handed to the protection step so that it exports the inference backend it got.
    return serve(config, lambda metrics: pipeline_protect_fn(config, metrics))
