"""Floors and the alternative: real ciphers that round-trip and detect tampering."""

from __future__ import annotations

import os

import pytest
from Crypto.Cipher import Blowfish

from medshield_tools.bench import floors


def test_blowfish_ctr_is_its_own_inverse_and_keyed() -> None:
    key = os.urandom(floors.BLOWFISH_KEY_BYTES)
    data = os.urandom(10_000)
    body = floors.blowfish_ctr(key, data)
    assert body != data and len(body) == len(data)
    assert floors.blowfish_ctr(key, body) == data
    assert floors.blowfish_ctr(os.urandom(floors.BLOWFISH_KEY_BYTES), body) != data


def test_blowfish_ctr_counter_starts_at_zero() -> None:
    key = os.urandom(floors.BLOWFISH_KEY_BYTES)
    first_block = Blowfish.new(key, Blowfish.MODE_ECB).encrypt(bytes(8))
    assert floors.blowfish_ctr(key, bytes(8)) == first_block


def test_ecies_gcm_round_trip_fresh_each_time_and_tamper_evident() -> None:
    recipient = floors.EciesRecipient.generate()
    data = os.urandom(5000)
    a = floors.ecies_gcm_encrypt(data, recipient.public)
    b = floors.ecies_gcm_encrypt(data, recipient.public)
    assert a != b and a[:32] != b[:32]  # fresh ephemeral key per message
    assert floors.ecies_gcm_decrypt(a, recipient.private) == data
    tampered = bytearray(a)
    tampered[100] ^= 1
    with pytest.raises(ValueError):
        floors.ecies_gcm_decrypt(bytes(tampered), recipient.private)
    with pytest.raises(ValueError):
        floors.ecies_gcm_decrypt(a, floors.EciesRecipient.generate().private)


def test_aes_siv_tag_depends_on_every_byte() -> None:
    key = os.urandom(64)
    data = bytearray(os.urandom(1000))
    body, tag = floors.aes_siv(key, bytes(data))
    data[999] ^= 1
    body2, tag2 = floors.aes_siv(key, bytes(data))
    assert tag != tag2 and body[:16] != body2[:16]
