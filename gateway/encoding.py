"""base64url without padding, strict on input: the one byte-to-text encoding of every file format here
(envelope headers, recipient cards and keys, biometric profiles, ledger entries)."""

from __future__ import annotations

import base64
import re

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """base64url (RFC 4648 §5) without '=' padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; rejects padding, other alphabets and non-canonical trailing bits."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data
