"""PNG in and out (OpenCV): 8- or 16-bit grey-scale only.

The IHDR header is read and checked against the limits before anything is inflated, so a tiny file that
claims 100000 x 100000 pixels (a decompression bomb) is refused without decoding it. Colour, grey + alpha,
palette and sub-byte depths are refused: their pixels cannot be written back unchanged as one grey channel.
Ancillary chunks (text, gamma...) are not carried over to the encoded output.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from gateway.codecs.types import DecodedImage, Limits, check_new_pixels
from gateway.errors import InputError
from gateway.reasons import Reason

MAGIC = b"\x89PNG\r\n\x1a\n"
_GREY = 0
_COLOUR_NAMES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey + alpha", 6: "RGBA"}


def is_png(data: bytes) -> bool:
    """True when `data` starts with the PNG signature."""
    return data[: len(MAGIC)] == MAGIC


def read_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk, which PNG requires to come first."""
    if len(data) < 33:
        raise InputError(Reason.TRUNCATED, "the PNG file ends inside its header")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise InputError(Reason.MALFORMED, "the PNG file does not start with a valid IHDR chunk")
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise InputError(Reason.MALFORMED, "the PNG IHDR chunk fails its CRC")
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    return width, height, depth, colour


def decode(data: bytes, limits: Limits) -> DecodedImage:
    """Decode an 8- or 16-bit grey-scale PNG, checking its declared size before inflating it."""
    limits.check_bytes(len(data))
    width, height, depth, colour = read_header(data)
    if colour != _GREY:
        raise InputError(
            Reason.NOT_MONOCHROME,
            f"only grey-scale PNG is supported (got {_COLOUR_NAMES.get(colour, f'colour type {colour}')})",
        )
    if depth not in (8, 16):
        raise InputError(Reason.UNSUPPORTED_BIT_DEPTH, f"only 8- or 16-bit PNG is supported (got {depth}-bit)")
    limits.check_shape(height, width)

    import cv2

    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pixels = None
    if pixels is None:
        raise InputError(Reason.MALFORMED, "the PNG image data could not be decoded (corrupt or truncated)")
    expected = np.uint8 if depth == 8 else np.uint16
    if pixels.ndim != 2 or pixels.shape != (height, width) or pixels.dtype != expected:
        # OpenCV must agree with the header we checked; anything else is not what the limits judged
        raise InputError(Reason.NOT_MONOCHROME, "the PNG did not decode to one grey channel of its declared size")
    return DecodedImage(pixels=np.ascontiguousarray(pixels), format="png")


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Write `pixels` as a grey-scale PNG of the same bit depth."""
    import cv2

    pixels = check_new_pixels(image, pixels)
    ok, buffer = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return buffer.tobytes()
