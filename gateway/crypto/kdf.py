"""HKDF-SHA256 (RFC 5869): the project's one key-separation helper.

Every key in MedShield that is derived from another key goes through `hkdf`, with an `info` label that says
what the key is for, so that keys for different purposes are independent.

Implemented on the standard library's C HMAC rather than `Crypto.Protocol.KDF.HKDF`: the output is identical
(the tests compare both), but this is about ten times faster, which matters because the SBBE search derives
several keys per candidate.
"""

from __future__ import annotations

import hmac

HASH_NAME = "sha256"
HASH_LEN = 32
MAX_LENGTH = 255 * HASH_LEN


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """Derive `length` bytes from input keying material `ikm` with HKDF-SHA256.

    `salt` may be empty (RFC 5869: an absent salt is HashLen zero bytes, which HMAC treats the same as an
    empty key). `info` binds the output to its purpose. Raises ValueError for a length outside 1..8160.
    """
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2): the pseudorandom key. Callers that derive several keys from one `ikm`
    and `salt` (the SBBE search, per candidate) extract once and expand per label."""
    return hmac.digest(bytes(salt), bytes(ikm), HASH_NAME)


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) of a pseudorandom key from `hkdf_extract`; ValueError for a length
    outside 1..8160."""
    if not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"HKDF output length must be 1..{MAX_LENGTH}, got {length}")
    info = bytes(info)
    # T(1) and T(2) written out: every key MedShield derives is at most two blocks, and the SBBE search
    # derives four per candidate, where the general loop's bookkeeping cost as much as the HMACs.
    first = hmac.digest(prk, info + b"\x01", HASH_NAME)
    if length <= HASH_LEN:
        return first[:length]
    out = first + hmac.digest(prk, first + info + b"\x02", HASH_NAME)
    block, counter = out[HASH_LEN:], 3
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), HASH_NAME)
        out += block
        counter += 1
    return out[:length]
