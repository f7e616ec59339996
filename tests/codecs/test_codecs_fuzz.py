"""Property: whatever bytes come in, decoding either succeeds or raises InputError, nothing else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from dicom_samples import bundled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codecs import DecodedImage, Limits, decode
from gateway.errors import InputError

SMALL = Limits(max_bytes=1 << 20, max_pixels=256 * 256, max_side=512)
PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\x93NUMPY\x01\x00",
    b"\x00" * 128 + b"DICM",
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_input_error(data: bytes) -> None:
    try:
        image = decode(data, SMALL)
    except InputError as exc:
        assert exc.reason and str(exc)
        return
    assert isinstance(image, DecodedImage)
    assert image.pixels.ndim == 2 and image.pixels.size <= SMALL.max_pixels


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_input_error(prefix: bytes, body: bytes) -> None:
    decode_or_input_error(prefix + body)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _png_of(pixels: np.ndarray) -> bytes:
    import cv2

    ok, buffer = cv2.imencode(".png", pixels)
    assert ok
    return buffer.tobytes()


VALID = [
    bundled("CT_small.dcm"),
    bundled("MR_small_RLE.dcm"),
    _npy(np.arange(64, dtype=np.uint16).reshape(8, 8)),
    _png_of(np.arange(256, dtype=np.uint8).reshape(16, 16)),
]


@FUZZ
@given(
    which=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    cut=st.floats(0, 1),
)
def test_corrupted_and_truncated_real_files_only_ever_raise_input_error(
    which: int, edits: list[tuple[float, int]], cut: float
) -> None:
    data = bytearray(VALID[which])
    for where, value in edits:
        data[int(where * len(data))] = value
    decode_or_input_error(bytes(data[: max(1, int(cut * len(data)))]))


@FUZZ
@given(
    width=st.integers(0, 2**32 - 1),
    height=st.integers(0, 2**32 - 1),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 5]),
    body=st.binary(max_size=200),
)
def test_png_headers_with_any_size_only_ever_raise_input_error(
    width: int, height: int, depth: int, colour: int, body: bytes
) -> None:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(body)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    decode_or_input_error(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_panicking_rle_decoder_is_bad_input() -> None:
    """One changed byte in pydicom's RLE sample makes pylibjpeg-rle index past its segment and panic
    (pyo3's PanicException, a BaseException): the gateway must see InputError, never the panic."""
    from pydicom.data import get_testdata_file

    data = bytearray(open(get_testdata_file("MR_small_RLE.dcm"), "rb").read())
    data[-601] = 157
    try:
        decode(bytes(data), SMALL)
    except InputError as exc:
        assert exc.reason == "malformed"
    else:
        raise AssertionError("the corrupted RLE file decoded")
