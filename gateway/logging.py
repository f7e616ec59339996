"""Structured logging: structlog JSON lines on stdout, with secret-looking fields masked.

Call `configure_logging()` once from a command's entry point (never at import). Every event goes through
`redact_secrets`, which replaces the value of any field whose name looks like a secret (password, token,
key, otp, secret, credential, biometric...) and drops raw binary payloads, so a careless `log.info(...,
password=...)` cannot leak. Pixel data and patient data must still never be passed to a logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private|priv[_-]?key|^key$|_key$|otp|totp|credential|"
    r"biometric|fingerprint|iris|embedding|seed|salt|nonce|pixels?|payload|patient)",
    re.IGNORECASE,
)
# Fields that merely name or identify keys are safe and useful to operators.
_ALLOWED = frozenset({"key_id", "message_id", "event", "level", "timestamp", "logger", "payload_bytes"})


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask values of secret-named fields and any raw bytes."""
    for name in list(event_dict):
        if name in _ALLOWED:
            continue
        value = event_dict[name]
        if _SECRET_NAME.search(name):
            event_dict[name] = REDACTED
        elif isinstance(value, (bytes, bytearray, memoryview)):
            event_dict[name] = f"<{len(value)} bytes>"
    return event_dict


class CurrentStderr:
    """A file-like object that writes to whatever `sys.stderr` is at the time of each write, so a logger
    configured once never writes to a stream that was later replaced and closed (test capture, daemons)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever `sys.stdout` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        return


def _shared_processors() -> list[Any]:
    # Applied to structlog's own events and to records from the standard library (paho, pydicom, ...) alike.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def stdlib_formatter() -> logging.Formatter:
    """A formatter that renders standard-library records as the same JSON lines as structlog's events
    (structlog's `ProcessorFormatter`): the message is escaped like any value, `extra=` fields become keys,
    and secret-named fields are masked."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *_shared_processors(),
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog (and stdlib logging, e.g. paho's) to JSON lines on `stream`, by default the current
    stdout (looked up when each logger is created, so a replaced sys.stdout is honoured)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _CurrentStdoutHandler()
    handler.setFormatter(stdlib_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are chatty below WARNING; the gateway's own events follow `level`.
    root.setLevel(max(numeric, logging.WARNING))


def library_logger(name: str, **context: object) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """A stdlib logger for a library that takes one (paho's `enable_logger`), whose every record carries
    `context` as fields, e.g. which broker link and host a paho error is about."""
    return logging.LoggerAdapter(logging.getLogger(name), context)


def get_logger(name: str) -> Any:
    """A structlog logger bound with the component name."""
    return structlog.get_logger(component=name)


NATIVE_LINE_CHARS = 1000


@contextlib.contextmanager
def native_stderr_as_log() -> Iterator[None]:
    """While active, whatever C or Rust libraries write straight to file descriptor 2 (libpng warnings, a
    pixel decoder's panic message) becomes a `native_stderr` JSON event, so every line a running daemon prints
    is JSON. On exit the original descriptor 2 is put back and what is still in the pipe is logged first.

    Only for a long-running command whose log goes to stdout: the events themselves must not go to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    log = get_logger("native")

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.warning("native_stderr", line=line[:NATIVE_LINE_CHARS])

    thread = threading.Thread(target=pump, name="native-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end, so the pump reads to its end (unless a child holds it)
        os.close(saved)
        thread.join(timeout=2.0)
