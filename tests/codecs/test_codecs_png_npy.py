"""PNG and NPY decode/encode: round trips, refusals, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import png as pypng
import pytest

from gateway.codecs import Limits, decode, encode, sniff
from gateway.errors import InputError


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, depth: int = 8, colour: int = 0, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(dtype: type) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, (37, 53), dtype=dtype)
    ok, buffer = cv2.imencode(".png", pixels)
    assert ok
    image = decode(buffer.tobytes())
    assert image.format == "png" and image.pixels.dtype == dtype and not image.signed and image.hu is None
    np.testing.assert_array_equal(image.pixels, pixels)
    changed = pixels ^ dtype(1)
    np.testing.assert_array_equal(decode(encode(image, changed)).pixels, changed)


def test_16_bit_png_from_another_encoder_keeps_its_values() -> None:
    rows = [[0, 1, 256, 65535], [4096, 3, 2, 1]]
    buffer = io.BytesIO()
    pypng.Writer(4, 2, greyscale=True, bitdepth=16).write(buffer, rows)
    np.testing.assert_array_equal(decode(buffer.getvalue()).pixels, np.array(rows, dtype=np.uint16))


def test_colour_palette_alpha_and_low_depth_png_are_refused() -> None:
    ok, colour = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    with pytest.raises(InputError) as info:
        decode(colour.tobytes())
    assert info.value.reason == "not_monochrome"

    buffer = io.BytesIO()
    pypng.Writer(4, 2, palette=[(0, 0, 0), (255, 255, 255)]).write(buffer, [[0, 1, 0, 1], [1, 0, 1, 0]])
    with pytest.raises(InputError) as info:
        decode(buffer.getvalue())
    assert info.value.reason == "not_monochrome"

    buffer = io.BytesIO()
    pypng.Writer(2, 1, greyscale=True, alpha=True).write(buffer, [[0, 255, 9, 255]])
    with pytest.raises(InputError) as info:
        decode(buffer.getvalue())
    assert info.value.reason == "not_monochrome"

    buffer = io.BytesIO()
    pypng.Writer(4, 1, greyscale=True, bitdepth=4).write(buffer, [[0, 3, 7, 15]])
    with pytest.raises(InputError) as info:
        decode(buffer.getvalue())
    assert info.value.reason == "unsupported_bit_depth"


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8192, 8192), (1, 9000)])
def test_png_bomb_is_refused_from_its_header_before_inflating(width: int, height: int) -> None:
    # a few hundred bytes that claim up to 10^10 pixels; the IDAT is a valid zlib stream of zeros
    bomb = handmade_png(width, height, idat=zlib.compress(b"\x00" * 100_000, 9))
    assert len(bomb) < 1000
    with pytest.raises(InputError) as info:
        decode(bomb)
    assert info.value.reason == "too_many_pixels"


def test_png_with_bad_header_crc_or_corrupt_data_is_refused() -> None:
    good = handmade_png(4, 4, idat=zlib.compress(b"\x00\x01\x02\x03\x04" * 4))
    assert decode(good).pixels.shape == (4, 4)
    bad_crc = bytearray(good)
    bad_crc[29] ^= 0xFF
    with pytest.raises(InputError) as info:
        decode(bytes(bad_crc))
    assert info.value.reason == "malformed"
    with pytest.raises(InputError) as info:
        decode(handmade_png(64, 64, idat=b"not zlib at all"))
    assert info.value.reason == "malformed"
    with pytest.raises(InputError) as info:
        decode(good[:20])
    assert info.value.reason == "truncated"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "u1", "<i2", ">i2"])
def test_npy_round_trip(dtype: str) -> None:
    values = (np.arange(40 * 9).reshape(40, 9) * 7919) % (256 if dtype == "u1" else 65536)
    if np.dtype(dtype).kind == "i":
        values = values - 32768
    array = values.astype(dtype)
    image = decode(npy(array))
    assert image.format == "npy"
    assert image.signed is (np.dtype(dtype).kind == "i")
    values = image.pixels.view(np.int16) if image.signed else image.pixels
    np.testing.assert_array_equal(values, array)
    if image.signed:
        assert image.hu is not None
        np.testing.assert_array_equal(image.hu, array.astype(np.float32))
    changed = image.pixels ^ image.pixels.dtype.type(1)
    back = np.load(io.BytesIO(encode(image, changed)), allow_pickle=False)
    assert back.dtype == np.dtype(dtype).newbyteorder("<")
    np.testing.assert_array_equal(back.view(changed.dtype), changed)


def test_fortran_order_npy_is_read_right() -> None:
    array = np.asfortranarray(np.arange(12, dtype=np.uint16).reshape(3, 4))
    np.testing.assert_array_equal(decode(npy(array)).pixels, array)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((4, 4), np.float32), "unsupported_dtype"),
        (np.zeros((4, 4), np.int32), "unsupported_dtype"),
        (np.zeros((2, 4, 4), np.uint8), "unsupported_shape"),
        (np.zeros(16, np.uint16), "unsupported_shape"),
        (np.zeros((0, 4), np.uint16), "malformed"),
    ],
)
def test_npy_wrong_dtype_or_shape_is_refused(array: np.ndarray, reason: str) -> None:
    with pytest.raises(InputError) as info:
        decode(npy(array))
    assert info.value.reason == reason


def test_pickled_npy_is_refused_without_unpickling() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([[object()]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as info:
        decode(buffer.getvalue())
    assert info.value.reason == "unsupported_dtype"


def test_npy_limits_and_truncation() -> None:
    data = npy(np.zeros((100, 50), np.uint16))
    with pytest.raises(InputError) as info:
        decode(data[:-1])
    assert info.value.reason == "truncated"
    with pytest.raises(InputError) as info:
        decode(data, Limits(max_side=64))
    assert info.value.reason == "too_many_pixels"
    header_only = npy(np.zeros((8192, 8192), np.uint8))[:128]
    with pytest.raises(InputError) as info:
        decode(header_only)
    assert info.value.reason == "too_many_pixels"


def test_sniff_and_trivial_refusals() -> None:
    assert sniff(npy(np.zeros((2, 2), np.uint8))) == "npy"
    assert sniff(handmade_png(1, 1)) == "png"
    assert sniff(b"\x00" * 128 + b"DICM") == "dicom"
    assert sniff(b"GIF89a") is None
    for data, reason in [(b"", "empty"), (b"GIF89a....", "not_an_image"), (b"\x00" * 10, "not_an_image")]:
        with pytest.raises(InputError) as info:
            decode(data)
        assert info.value.reason == reason
    with pytest.raises(InputError) as info:
        decode(b"\x00" * 2048, Limits(max_bytes=1024))
    assert info.value.reason == "too_large"


def test_encode_refuses_pixels_of_another_shape_or_dtype() -> None:
    image = decode(npy(np.zeros((4, 4), np.uint8)))
    with pytest.raises(ValueError):
        encode(image, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError):
        encode(image, np.zeros((4, 4), np.uint16))
