"""Shared helpers of the biometric tests."""

from __future__ import annotations


class Clock:
    """A settable clock (UTC ns)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns
