"""The `medshield` command line.

Each command lives in its own module under `gateway.cli` and exposes `register(subparsers)`, which adds its
parser and sets `func(args) -> int`. The list below is explicit and ordered (it is the help's order).
Exit codes: 0 success, 1 could not protect/open (one message, no detail), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from gateway import __version__
from gateway.errors import ConfigError, InputError, OpenError

COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.keys",
    "gateway.cli.protect",
    "gateway.cli.open",
    "gateway.cli.segment",
    "gateway.cli.models",
    "gateway.cli.otp",
    "gateway.cli.enroll",
    "gateway.cli.keyserver",
    "gateway.cli.recipients",
    "gateway.cli.run",
    "gateway.cli.quarantine",
    "gateway.cli.check_config",
    "gateway.cli.receive",
    "gateway.cli.demo",
    "gateway.cli.ledger",
    "gateway.cli.bench",
    "gateway.cli.report",
    "gateway.cli.qr",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medshield", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # One-shot commands keep stdout for their results: only warnings, as JSON lines on stderr. The long-running
    # commands (run, receive, demo) configure their own logging.
    from gateway.logging import CurrentStderr, configure_logging

    configure_logging("warning", stream=CurrentStderr())  # type: ignore[arg-type]
    try:
        return int(args.func(args))
    except OpenError as exc:
        print(f"medshield: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except InputError as exc:
        print(f"medshield: {exc} ({exc.reason})", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"medshield: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
