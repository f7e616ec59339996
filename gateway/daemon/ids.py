"""Message ids: deterministic per inbound message, keyed so that the clear header gives nothing away.

id = UUIDv8 of HMAC-SHA256(gateway secret, domain ‖ topic ‖ 0 ‖ SHA-256(payload)). A redelivered message maps
to the same id (the spool's de-duplication needs that), while someone holding a candidate image cannot confirm
that it is inside an envelope without the secret. The 32-byte secret is created 0600 in the state directory on
first start and never leaves the gateway; several gateways on one shared subscription need not share it (each
message reaches one of them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from pathlib import Path

from gateway.errors import ConfigError
from gateway.files import write_new

KEY_BYTES = 32
_DOMAIN = b"medshield/message-id/v2\0"


def _uuid8(digest: bytes) -> str:
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (RFC 9562 custom)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return str(uuid.UUID(bytes=bytes(raw)))


class MessageIds:
    """Computes message ids under one gateway secret."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"message-id key must be {KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> MessageIds:
        """Read the secret at `path`, or create it (0600, exclusively, so two starts never race to two keys)."""
        key = secrets.token_bytes(KEY_BYTES)
        try:
            write_new(path, key)
        except FileExistsError:
            key = path.read_bytes()
            if len(key) != KEY_BYTES:
                raise ConfigError(f"message-id key {path}: expected {KEY_BYTES} bytes") from None
        return cls(key)

    def for_message(self, topic: str, payload: bytes) -> str:
        """The id of the message `payload` received on `topic`."""
        data = _DOMAIN + topic.encode("utf-8") + b"\0" + hashlib.sha256(payload).digest()
        return _uuid8(hmac.new(self._key, data, hashlib.sha256).digest())


def derived_id(message_id: str, label: str) -> str:
    """A second id derived from a (keyed) message id, e.g. one per extra recipient: unique per envelope,
    stable across redeliveries, and as opaque as the id it comes from."""
    return _uuid8(hashlib.sha256(b"medshield/derived-id/v1\0" + message_id.encode() + b"\0" + label.encode()).digest())
