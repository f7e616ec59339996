"""The project's exception types.

`OpenError` is deliberately uninformative: every failure to open an envelope (bad magic, truncated, tampered,
wrong key, wrong biometric, wrong OTP, reordered parts...) raises exactly this, with the same message, so that
an attacker learns nothing from which check failed.
"""

from __future__ import annotations


class MedShieldError(Exception):
    """Base class of every error the gateway raises on purpose."""


class OpenError(MedShieldError):
    """The one opaque failure to open an envelope. Never carries a cause or detail."""

    MESSAGE = "could not open envelope"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class InputError(MedShieldError):
    """Input that cannot be protected (not an image, truncated, too large, unsupported...).

    `reason` is a short machine-friendly code for quarantine records and error events; the message is for
    people. Neither may contain patient data or pixel values.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CapacityError(InputError):
    """The hidden payload does not fit in the image's usable (non-lesion) pixels."""

    def __init__(self, message: str) -> None:
        super().__init__("no_capacity", message)


class ConfigError(MedShieldError):
    """Invalid configuration; the message names the offending key."""


class UsageError(MedShieldError):
    """A command called wrongly (missing or conflicting options, unusable arguments): exit status 2."""
