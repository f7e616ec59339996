"""The `medshield` command line.

Each command lives in its own module under `gateway.cli` (the tooling's `demo` and `report` under
`medshield_tools.cli`) and exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
The list below is explicit and ordered (it is the help's order).
Exit codes, for every command (errors are one line on stderr, `medshield: ...`, never a traceback):

    0    success
    1    the operation failed: could not protect or open (one message, no detail), a check found problems
         (e.g. `ledger verify`), or an unexpected internal error
    2    usage or configuration error: bad arguments, a missing or unreadable input, an unwritable output,
         an invalid configuration (the message names the key), an optional extra that is not installed
    130  interrupted (Ctrl-C)

Set MEDSHIELD_DEBUG=1 to get the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import CodedError, ConfigError, OpenError, UsageError

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
    "medshield_tools.cli.demo",
    "gateway.cli.ledger",
    "medshield_tools.cli.bench",
    "medshield_tools.cli.report",
    "gateway.cli.qr",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Error codes that mean the command was called with something unusable rather than a bad image (and
# any "<what>_unreadable").
USAGE_INPUT_REASONS = frozenset({"unreadable", "no_passphrase"})

# Optional dependencies and the extra that brings each (pyproject's optional-dependencies).
OPTIONAL_MODULES: dict[str, str] = {"matplotlib": "reports", "tqdm": "reports", "tensorrt": "gpu", "torch": "train"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medshield", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"medshield: {message}", file=sys.stderr)
    return code


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, and turn every error into one line and the documented exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # One-shot commands keep stdout for their results: only warnings, as JSON lines on stderr. The long-running
    # commands (run, receive, demo) configure their own logging.
    from gateway.logging import CurrentStderr, configure_logging

    configure_logging("warning", stream=CurrentStderr())  # type: ignore[arg-type]
    try:
        return int(args.func(args))
    except OpenError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except CodedError as exc:
        # An input that could not be read at all, or a missing passphrase, is the caller's to fix (usage);
        # an image that cannot be protected, a refused capture or admin request, is a failure of the operation.
        usage = exc.reason in USAGE_INPUT_REASONS or exc.reason.endswith("_unreadable")
        code = EXIT_USAGE if usage else EXIT_FAILED
        return _fail(f"{exc} ({exc.reason})", code)
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_USAGE)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_MODULES:
            raise
        extra = OPTIONAL_MODULES[top]
        return _fail(
            f"{args.command} needs the optional '{extra}' extra ({top} is not installed): "
            f"pip install 'medshield[{extra}]'",
            EXIT_USAGE,
        )
    except OSError as exc:
        # A missing input, an unwritable output, a directory where a file was expected...
        return _fail(_os_error(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # raise SystemExit("message"): a usage message
            return _fail(exc.code.removeprefix("medshield: "), EXIT_USAGE)
        raise
    except Exception as exc:  # noqa: BLE001 - the one place that turns the unexpected into one line
        if os.environ.get("MEDSHIELD_DEBUG"):
            raise
        # Only the type: an unexpected message could carry data that must not leave the process.
        return _fail(f"internal error ({type(exc).__name__}); MEDSHIELD_DEBUG=1 shows the traceback", EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
