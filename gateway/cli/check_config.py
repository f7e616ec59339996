"""`medshield check-config F`: validate a configuration file and the files it names; prints OK or every problem
with the key it concerns (exit 2).

Beyond the schema (unknown keys, types, ranges), the files the gateway opens at start are checked here, so
that `ExecStartPre=` fails with a clear line instead of `run` failing later: TLS CA / certificate / key
files, each recipient card (it must parse), and the segmentation model with its manifest (sha256).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("check-config", help="validate a configuration file", description=__doc__)
    parser.add_argument("config", help="TOML configuration file")
    parser.set_defaults(func=main)


def _readable(path: Path) -> str | None:
    """Why `path` cannot be read as a file, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def file_problems(config: GatewayConfig) -> list[str]:
    """Every configured file the gateway would fail to open at start, as `key: path: why` lines."""
    from gateway.crypto.recipients import RecipientCard
    from gateway.segment import DEFAULT_MODEL, Manifest, verify_model

    problems: list[str] = []
    for section in ("inbound", "cloud"):
        broker = getattr(config, section)
        if broker is None or broker.tls is None:
            continue
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(broker.tls, name)
            if path is not None and (why := _readable(path)):
                problems.append(f"{section}.tls.{name}: {path}: {why}")
    for i, card in enumerate(config.protection.recipients):
        key = f"protection.recipients[{i}]"
        if why := _readable(card):
            problems.append(f"{key}: {card}: {why}")
            continue
        try:
            RecipientCard.load(card)
        except (ConfigError, ValueError) as exc:
            problems.append(f"{key}: {card}: not a recipient card ({exc})")
    model = config.segmentation.model or DEFAULT_MODEL
    manifest = model.with_name("manifest.json")
    key = "segmentation.model" if config.segmentation.model else "segmentation.model (default)"
    if why := _readable(model):
        problems.append(f"{key}: {model}: {why}")
    elif why := _readable(manifest):
        problems.append(f"{key}: manifest {manifest}: {why}")
    else:
        try:
            verify_model(model, Manifest.load(manifest))
        except ConfigError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def main(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    # A schema error raises ConfigError, which gateway.cli.main prints (naming the key) with exit 2.
    config = load_config(args.config)
    problems = file_problems(config)
    if problems:
        for line in problems:
            print(f"medshield: configuration error: {line}", file=sys.stderr)
        return 2
    inbound = f"{config.inbound.host}:{config.inbound.port}" if config.inbound else "embedded broker"
    cloud = f"{config.cloud.host}:{config.cloud.port}" if config.cloud else "embedded broker"
    print(
        f"OK: device {config.gateway.device_id}, inbound {inbound}, cloud {cloud}, "
        f"{len(config.protection.recipients)} recipient(s), suite {config.protection.suite}"
    )
    sys.stdout.flush()
    return 0
