"""The project's exception types.

`OpenError` is deliberately uninformative: every failure to open an envelope (bad magic, truncated, tampered,
wrong key, wrong biometric, wrong OTP, reordered parts...) raises exactly this, with the same message, so that
an attacker learns nothing from which check failed.
"""

from __future__ import annotations

from gateway.reasons import Reason


class MedShieldError(Exception):
    """Base class of every error the gateway raises on purpose."""


class OpenError(MedShieldError):
    """The one opaque failure to open an envelope. Never carries a cause or detail."""

    MESSAGE = "could not open envelope"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class CodedError(MedShieldError):
    """An error with a short machine-friendly `reason` code beside its message for people.

    Neither the code nor the message may contain patient data, pixel values, biometric values or secrets.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InputError(CodedError):
    """An image that cannot be protected (not an image, truncated, too large, unsupported...), or an opened
    envelope whose content cannot be restored.

    `reason` is one of `gateway.reasons.Reason`: the code of quarantine records and error events.
    """

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(reason, message)


class CapacityError(InputError):
    """The hidden payload does not fit in the image's usable (non-lesion) pixels."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.NO_CAPACITY, message)


class BiometricError(CodedError):
    """A capture, a biometric profile, a passphrase or a key-release exchange that cannot be used (enrolment
    and `medshield open`; opening itself fails with `OpenError` only)."""


class AdminError(CodedError):
    """An administrative request refused: recipient cards, the admin OTP, key-release service accounts."""


class ContainerError(MedShieldError, ValueError):
    """A decrypted container is malformed or over the limit (only raised after the envelope authenticated)."""


class ConfigError(MedShieldError):
    """Invalid configuration; the message names the offending key."""


class UsageError(MedShieldError):
    """A command called wrongly (missing or conflicting options, unusable arguments): exit status 2."""
