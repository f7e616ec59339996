"""Suite `aes-256-siv`: AES-SIV (RFC 5297) under a key from the message secret, the fast choice (ENVELOPE.md §6)."""

from __future__ import annotations

from typing import Any

import numpy as np
from Crypto.Cipher import AES

from gateway.crypto.kdf import hkdf
from gateway.crypto.suites import Prepared
from gateway.rng import RandomSource

INFO_KEY = b"medshield/v1/aes-256-siv/key"


def key_from_secret(secret: bytes) -> bytes:
    """K = HKDF(S, "", "medshield/v1/aes-256-siv/key", 64)."""
    return hkdf(secret, salt=b"", info=INFO_KEY, length=64)


class _AesSiv:
    name = "aes-256-siv"
    tag_bytes = 16
    header_field: str | None = None

    def prepare(
        self, secret: bytes, message_id: bytes, sample: np.ndarray | bytes, params: Any, rng: RandomSource
    ) -> Prepared:
        return Prepared(key=key_from_secret(secret), header=None)

    def check_header(self, fields: Any) -> None:
        if fields is not None:
            raise ValueError("aes-256-siv has no header object")

    def key_for(self, secret: bytes, fields: Any) -> bytes:
        return key_from_secret(secret)

    def encrypt(self, key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        cipher = AES.new(key, AES.MODE_SIV)
        cipher.update(aad)
        body, tag = cipher.encrypt_and_digest(plaintext)
        return tag, body

    def decrypt(self, key: bytes, aad: bytes, tag: bytes, body: bytes) -> bytes:
        cipher = AES.new(key, AES.MODE_SIV)
        cipher.update(aad)
        return bytes(cipher.decrypt_and_verify(body, tag))


SUITE = _AesSiv()
