from __future__ import annotations

import pytest
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from gateway.crypto.kdf import hkdf


def test_rfc5869_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf(ikm, salt=salt, info=info, length=42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_rfc5869_case_3_empty_salt_and_info() -> None:
    okm = hkdf(bytes.fromhex("0b" * 22), salt=b"", info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@pytest.mark.parametrize("length", [1, 32, 33, 56, 64, 200])
def test_matches_pycryptodome(length: int) -> None:
    for salt in (b"", b"salt" * 9):
        assert hkdf(b"k" * 32, salt=salt, info=b"sbbe/mac", length=length) == HKDF(
            b"k" * 32, length, salt or None, SHA256, context=b"sbbe/mac"
        )


def test_info_separates() -> None:
    assert hkdf(b"k", salt=b"", info=b"a") != hkdf(b"k", salt=b"", info=b"b")


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_bad_length(length: int) -> None:
    with pytest.raises(ValueError):
        hkdf(b"k", salt=b"", info=b"", length=length)


def test_extract_then_expand_is_hkdf() -> None:
    from gateway.crypto.kdf import hkdf_expand, hkdf_extract

    prk = hkdf_extract(b"salt", b"k" * 32)
    for info, length in ((b"sbbe/mac", 32), (b"sbbe/enc" + bytes(32), 56), (b"", 200)):
        assert hkdf_expand(prk, info, length) == hkdf(b"k" * 32, salt=b"salt", info=info, length=length)
    with pytest.raises(ValueError):
        hkdf_expand(prk, b"", 0)
