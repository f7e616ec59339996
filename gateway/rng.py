"""Injectable randomness and time.

Production code takes `rng: RandomSource` and `clock: Clock` parameters that default to the operating
system's CSPRNG and wall clock. `SeededRandom` is a deterministic stream for tests and for differential
analysis (`medshield protect --seed`): it must never be used to protect real data for real recipients,
since anyone who knows the seed can recompute every secret it produced.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], int]
"""Returns the current UTC time in integer nanoseconds since the epoch."""


class RandomSource(Protocol):
    def __call__(self, n: int) -> bytes:
        """Return n random bytes."""
        ...


def system_random(n: int) -> bytes:
    """The operating system's CSPRNG."""
    return os.urandom(n)


def system_clock() -> int:
    """Wall-clock UTC time in nanoseconds."""
    return time.time_ns()


class SeededRandom:
    """A deterministic byte stream: SHAKE-256(domain ‖ seed ‖ counter) blocks, read sequentially."""

    def __init__(self, seed: bytes, domain: bytes = b"medshield/seeded-random/v1") -> None:
        if not seed:
            raise ValueError("seed must not be empty")
        self._prefix = domain + len(seed).to_bytes(4, "big") + seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.shake_256(self._prefix + self._counter.to_bytes(8, "big")).digest(4096)
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def fixed_clock(ns: int) -> Clock:
    """A clock that always returns `ns` (tests, --seed runs)."""
    return lambda: ns
