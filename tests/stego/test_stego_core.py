"""LSB hiding: bit-exact round trips, capacity, keyed order, wrong keys and tampering never yield garbage."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import stego
from gateway.errors import CapacityError, InputError
from gateway.image_metrics import ber
from gateway.stego import RestorationRecord, capacity_bytes, embed, exclusion_mask, extract, restore

KEY = bytes(range(32))


def image(size: int, dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, (size, size), dtype=dtype)


def blob_lesion(size: int) -> np.ndarray:
    lesion = np.zeros((size, size), bool)
    c, r = size // 2, max(2, size // 10)
    yy, xx = np.ogrid[:size, :size]
    lesion[(yy - c) ** 2 + (xx - c // 2) ** 2 <= r * r] = True
    return lesion


def check_round_trip(pixels: np.ndarray, payload_size: int, margin: int = 3) -> None:
    exclusion = exclusion_mask(blob_lesion(pixels.shape[0]), margin)
    payload = os.urandom(payload_size)
    marked, record = embed(pixels, exclusion, payload, KEY)
    assert marked.dtype == pixels.dtype and marked.shape == pixels.shape
    # only least significant bits change, never inside the exclusion, at most one pixel per frame bit
    assert not ((marked ^ pixels) & ~np.array(1, pixels.dtype)).any()
    np.testing.assert_array_equal(marked[exclusion], pixels[exclusion])
    assert np.count_nonzero(marked != pixels) <= 8 * (payload_size + stego.FRAME_OVERHEAD_BYTES)
    extracted = extract(marked, exclusion, KEY)
    assert ber(payload, extracted) == 0.0 if payload else extracted == b""
    assert extracted == payload
    parsed = RestorationRecord.from_bytes(record.to_bytes())
    assert parsed == record
    np.testing.assert_array_equal(restore(marked, parsed, KEY), pixels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("size", [64, 256, 1024])
def test_round_trip_is_bit_exact(dtype: type, size: int) -> None:
    check_round_trip(image(size, dtype, seed=size), payload_size=min(300, size * size // 16))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_4096(dtype: type) -> None:
    check_round_trip(image(4096, dtype, seed=4096), payload_size=20_000, margin=9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_empty_payload_and_extreme_values(dtype: type) -> None:
    top = np.iinfo(dtype).max
    for fill in (0, top):
        pixels = np.full((32, 32), fill, dtype=dtype)
        check_round_trip(pixels, payload_size=0, margin=1)
        check_round_trip(pixels, payload_size=40, margin=1)


def test_payload_filling_the_capacity_exactly() -> None:
    pixels = image(64, np.uint8)
    exclusion = exclusion_mask(blob_lesion(64), 2)
    room = capacity_bytes(exclusion)
    assert room == int((~exclusion).sum()) // 8 - stego.FRAME_OVERHEAD_BYTES
    payload = os.urandom(room)
    marked, record = embed(pixels, exclusion, payload, KEY)
    assert extract(marked, exclusion, KEY) == payload
    np.testing.assert_array_equal(restore(marked, record, KEY), pixels)
    with pytest.raises(CapacityError) as info:
        embed(pixels, exclusion, payload + b"x", KEY)
    needed = 8 * (room + 1 + stego.FRAME_OVERHEAD_BYTES)
    available = int((~exclusion).sum())
    assert info.value.reason == "no_capacity"
    assert str(needed) in str(info.value) and str(available) in str(info.value)


def test_capacity_error_when_the_lesion_covers_almost_everything() -> None:
    pixels = image(16, np.uint16)
    lesion = np.ones((16, 16), bool)
    lesion[0, :5] = False
    with pytest.raises(CapacityError):
        embed(pixels, exclusion_mask(lesion, 0), b"", KEY)


def test_different_keys_choose_different_positions() -> None:
    pixels = np.zeros((512, 512), np.uint8)
    exclusion = np.zeros((512, 512), bool)
    payload = b"\xff" * 200  # all ones: every frame bit that is 1 shows where it went
    a, _ = embed(pixels, exclusion, payload, KEY)
    b, _ = embed(pixels, exclusion, payload, bytes(31) + b"\x01")
    again, _ = embed(pixels, exclusion, payload, KEY)
    np.testing.assert_array_equal(a, again)
    where_a, where_b = set(np.flatnonzero(a)), set(np.flatnonzero(b))
    assert len(where_a) == len(where_b) > 1600
    # unrelated orders overlap by chance in about 1600 / 262144 = 0.6 % of the positions
    assert len(where_a & where_b) < 0.03 * len(where_a)


def test_positions_spread_over_the_image_not_a_raster_prefix() -> None:
    pixels = np.zeros((256, 256), np.uint8)
    marked, _ = embed(pixels, np.zeros((256, 256), bool), b"\xff" * 400, KEY)
    rows = np.flatnonzero(marked.any(axis=1))
    assert rows.min() < 16 and rows.max() > 240


def test_wrong_key_never_extracts() -> None:
    pixels = image(96, np.uint16, seed=3)
    exclusion = exclusion_mask(blob_lesion(96), 2)
    marked, _ = embed(pixels, exclusion, b"secret provenance" * 10, KEY)
    for i in range(50):
        wrong = hashlib.sha256(i.to_bytes(4, "big")).digest()
        with pytest.raises(InputError) as info:
            extract(marked, exclusion, wrong)
        assert info.value.reason in ("hidden_payload_not_found", "hidden_payload_corrupt")


def test_unmarked_image_has_no_payload() -> None:
    pixels = image(64, np.uint8, seed=9)
    with pytest.raises(InputError):
        extract(pixels, np.zeros((64, 64), bool), KEY)
    with pytest.raises(InputError):
        extract(np.zeros((64, 64), np.uint8), np.zeros((64, 64), bool), KEY)


def test_a_flipped_payload_bit_fails_the_crc() -> None:
    pixels = np.zeros((64, 64), np.uint8)
    exclusion = np.zeros((64, 64), bool)
    marked, _ = embed(pixels, exclusion, b"\x00" * 20 + b"\x80", KEY)
    # with an all-zero image the marked ones are the frame's one bits; flip a bit in the payload's last byte
    ones = np.flatnonzero(marked)
    assert ones.size > 0
    tampered = marked.copy()
    # the payload's 0x80 is frame bit 8*(8+20); locate it through the documented order
    order = stego._positions(exclusion, exclusion.size, 8 * (8 + 21), KEY)
    tampered.reshape(-1)[order[8 * (8 + 20)]] ^= 1
    with pytest.raises(InputError) as info:
        extract(tampered, exclusion, KEY)
    assert info.value.reason == "hidden_payload_corrupt"


def test_extract_with_another_exclusion_fails() -> None:
    pixels = image(64, np.uint8, seed=1)
    exclusion = exclusion_mask(blob_lesion(64), 3)
    marked, _ = embed(pixels, exclusion, b"payload bytes" * 5, KEY)
    with pytest.raises(InputError):
        extract(marked, np.zeros_like(exclusion), KEY)


def test_exclusion_mask_is_the_euclidean_margin() -> None:
    lesion = np.zeros((41, 41), bool)
    lesion[20, 20] = lesion[3, 37] = lesion[0, 0] = True
    ys, xs = np.nonzero(lesion)
    yy, xx = np.mgrid[:41, :41]
    distance = np.min(np.hypot(yy[..., None] - ys, xx[..., None] - xs), axis=-1)
    for margin in (0, 1, 2, 5, 12):
        np.testing.assert_array_equal(exclusion_mask(lesion, margin), distance <= margin)
    assert not exclusion_mask(np.zeros((8, 8), np.uint8), 4).any()
    np.testing.assert_array_equal(exclusion_mask(lesion.astype(np.uint8), 0), lesion)


def test_restore_checks_the_record_fits_the_image() -> None:
    pixels = image(32, np.uint8)
    marked, record = embed(pixels, np.zeros((32, 32), bool), b"abc", KEY)
    with pytest.raises(InputError) as info:
        restore(marked.astype(np.uint16), record, KEY)
    assert info.value.reason == "record_mismatch"
    with pytest.raises(InputError):
        restore(marked[:16], record, KEY)


def test_record_parsing_is_strict() -> None:
    pixels = image(40, np.uint16)
    _, record = embed(pixels, exclusion_mask(blob_lesion(40), 1), b"some payload", KEY)
    data = record.to_bytes()
    assert RestorationRecord.from_bytes(data) == record
    bad = [
        b"",
        data[:10],
        data[:-1],
        data + b"\x00",
        b"XXRR" + data[4:],
        data[:4] + b"\x02" + data[5:],  # version
        data[:5] + b"\x04" + data[6:],  # pixel size
        data[:14] + (0).to_bytes(4, "big") + data[18:],  # zero columns
        data[:18] + (10**6).to_bytes(4, "big") + data[22:],  # more bits than stored
    ]
    for item in bad:
        with pytest.raises(InputError) as info:
            RestorationRecord.from_bytes(item)
        assert info.value.reason == "bad_restoration_record"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_records_only_raise_input_error(data: bytes) -> None:
    for candidate in (data, b"MSRR\x01" + data):
        try:
            RestorationRecord.from_bytes(candidate)
        except InputError:
            pass


def test_bad_arguments_are_programming_errors() -> None:
    pixels = image(16, np.uint8)
    mask = np.zeros((16, 16), bool)
    with pytest.raises(ValueError):
        embed(pixels, mask, b"x", b"short key")
    with pytest.raises(ValueError):
        embed(pixels.astype(np.int16), mask, b"x", KEY)
    with pytest.raises(ValueError):
        embed(pixels, mask[:8], b"x", KEY)
    with pytest.raises(ValueError):
        exclusion_mask(mask, -1)


def reference_order(exclusion: np.ndarray, count: int, key: bytes) -> list[int]:
    """The order exactly as the module docstring specifies it, in plain Python."""
    flat = exclusion.reshape(-1).tolist()
    n = len(flat)
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    h = bits // 2
    size = 1 << h
    stream = hashlib.shake_256(b"medshield/stego/order/v1" + bytes([h]) + key).digest(4 * size * 8)
    words = [int.from_bytes(stream[4 * i : 4 * i + 4], "little") & (size - 1) for i in range(8 * size)]
    tables = [words[r * size : (r + 1) * size] for r in range(8)]
    out: list[int] = []
    j = 0
    while len(out) < count:
        left, right = j >> h, j & (size - 1)
        for table in tables:
            left, right = right, left ^ table[right]
        value = (left << h) | right
        if value < n and not flat[value]:
            out.append(value)
        j += 1
    return out


@pytest.mark.parametrize(
    ("shape", "count", "excluded"),
    [((1, 1), 1, 0.0), ((1, 5), 5, 0.0), ((25, 40), 1000, 0.0), ((50, 80), 300, 0.3), ((211, 331), 2000, 0.9)],
)
def test_order_matches_the_documented_algorithm(shape: tuple[int, int], count: int, excluded: float) -> None:
    key = hashlib.sha256(b"order test").digest()
    exclusion = np.random.default_rng(3).random(shape) < excluded
    usable = int((~exclusion).sum())
    count = min(count, usable)
    got = stego._positions(exclusion, usable, count, key)
    assert got.tolist() == reference_order(exclusion, count, key)
    assert len(set(got.tolist())) == count and not exclusion.reshape(-1)[got].any()


def test_the_whole_image_can_be_ordered() -> None:
    exclusion = np.random.default_rng(4).random((37, 41)) < 0.5
    usable = int((~exclusion).sum())
    got = stego._positions(exclusion, usable, usable, KEY)
    assert sorted(got.tolist()) == np.flatnonzero(~exclusion).tolist()
