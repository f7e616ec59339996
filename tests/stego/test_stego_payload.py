"""The hidden payload's binary form and its keyed stamp."""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InputError
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256, verify_stamp

K_STAMP = hashlib.sha256(b"k_stamp").digest()
MID = "0b7e6a52-3c1f-4f1e-9d2c-7a1b2c3d4e5f"


def sample(source_ref: str | None = "1.2.826.0.1.3680043.8.498.1") -> HiddenPayload:
    mask = np.zeros((512, 512), bool)
    mask[200:230, 300:321] = True
    mask[40, 7] = True
    pixels = np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)
    stamp = make_stamp(K_STAMP, 1_700_000_000_123_456_789, pixel_sha256(pixels), MID)
    return HiddenPayload(MID, 1_700_000_000_123_456_789, stamp, mask, source_ref)


@pytest.mark.parametrize("ref", [None, "", "1.2.3", "Ünïcødé ref"])
def test_round_trip(ref: str | None) -> None:
    payload = sample(ref)
    data = payload.to_bytes()
    assert HiddenPayload.from_bytes(data) == payload
    assert len(data) < 300  # a 512x512 mask with one blob packs into a few hundred bytes


def test_message_id_is_canonical_and_checked() -> None:
    upper = HiddenPayload(MID.upper(), 1, bytes(32), np.zeros((2, 2), bool))
    assert upper.message_id == MID
    with pytest.raises(ValueError):
        HiddenPayload("not-a-uuid", 1, bytes(32), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        HiddenPayload(MID, 1, bytes(31), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        HiddenPayload(MID, -1, bytes(32), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        HiddenPayload(MID, 1, bytes(32), np.zeros((2, 2), np.uint8))


def test_stamp_is_hmac_of_the_documented_message() -> None:
    digest = hashlib.sha256(b"pixels").digest()
    expected = hmac.new(K_STAMP, struct.pack(">Q", 42) + digest + uuid.UUID(MID).bytes, hashlib.sha256).digest()
    assert make_stamp(K_STAMP, 42, digest, MID) == expected
    assert verify_stamp(K_STAMP, 42, digest, MID, expected)
    assert not verify_stamp(K_STAMP, 43, digest, MID, expected)
    assert not verify_stamp(K_STAMP, 42, hashlib.sha256(b"other").digest(), MID, expected)
    assert not verify_stamp(K_STAMP, 42, digest, str(uuid.UUID(int=1)), expected)
    assert not verify_stamp(hashlib.sha256(b"other key").digest(), 42, digest, MID, expected)
    assert not verify_stamp(K_STAMP, 42, digest, MID, expected[:-1])


def test_pixel_digest_covers_values_shape_and_depth() -> None:
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert pixel_sha256(a) == pixel_sha256(a.copy())
    assert pixel_sha256(a) != pixel_sha256(a.reshape(2, 8))
    assert pixel_sha256(a) != pixel_sha256(a.astype(np.uint16))
    b = a.copy()
    b[3, 3] ^= 1
    assert pixel_sha256(a) != pixel_sha256(b)
    assert pixel_sha256(a.astype(">u2")) == pixel_sha256(a.astype("<u2"))


def test_parsing_is_strict() -> None:
    data = sample().to_bytes()
    for bad in (b"", data[:-1], data + b"\x00", b"\x02" + data[1:], data[:60] + b"\x00\x00\x00\x00" + data[64:]):
        with pytest.raises(InputError) as info:
            HiddenPayload.from_bytes(bad)
        assert info.value.reason == "bad_hidden_payload"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_input_error(data: bytes) -> None:
    for candidate in (data, b"\x01" + data):
        try:
            HiddenPayload.from_bytes(candidate)
        except InputError:
            pass
