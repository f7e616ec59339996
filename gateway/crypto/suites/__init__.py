"""Cipher suites of the envelope, one module each; adding a suite means adding a module here.

A suite module defines `SUITE`, an object with the `Suite` interface below. Every module in this package is
imported and registered on first use, so nothing else names the suites: the CLI's `--suite` choices and the
envelope's header validation read `names()`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.rng import RandomSource


@dataclass(frozen=True)
class Prepared:
    """What a suite chose for one message: its key, its own header object (None: no suite field) and
    anything worth reporting (the SBBE search result)."""

    key: bytes
    header: dict[str, Any] | None
    report: Any = None


class Suite(Protocol):
    """One cipher suite: a deterministic AEAD under a key derived from the message secret S."""

    name: str
    tag_bytes: int
    header_field: str | None
    """Name of the suite's own object in the envelope header, or None."""

    def prepare(
        self, secret: bytes, message_id: bytes, sample: np.ndarray | bytes, params: Any, rng: RandomSource
    ) -> Prepared:
        """Choose the message's key (and the suite's header object) from S."""
        ...

    def check_header(self, fields: Any) -> None:
        """Raise ValueError unless `fields` is a well-formed header object of this suite."""
        ...

    def key_for(self, secret: bytes, fields: Any) -> bytes:
        """The message's key, as the opener recomputes it from S and the suite's header object."""
        ...

    def encrypt(self, key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """(tag, body)."""
        ...

    def decrypt(self, key: bytes, aad: bytes, tag: bytes, body: bytes) -> bytes:
        """The plaintext; raises on any failure to authenticate."""
        ...


_REGISTRY: dict[str, Suite] = {}
_LOCK = threading.Lock()


def _load() -> dict[str, Suite]:
    # Threads (a receiver and an MQTT callback, say) may ask at once: the registry is filled once, under a
    # lock, and published only when complete.
    if _REGISTRY:
        return _REGISTRY
    with _LOCK:
        if not _REGISTRY:
            found: dict[str, Suite] = {}
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                suite: Suite = importlib.import_module(f"{__name__}.{info.name}").SUITE
                if suite.name in found:
                    raise RuntimeError(f"two suite modules named {suite.name!r}")
                found[suite.name] = suite
            _REGISTRY.update(found)
    return _REGISTRY


def names() -> tuple[str, ...]:
    """Every registered suite name, sorted."""
    return tuple(sorted(_load()))


def get(name: str) -> Suite:
    """The suite called `name`; KeyError if there is none."""
    return _load()[name]
