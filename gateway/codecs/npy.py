"""NPY in and out (numpy, never pickles): one 2-D uint8, uint16 or int16 array.

The header is parsed and checked (dtype, shape, limits, data length) before any pixel is read. `int16`
arrays are treated like signed DICOM: the pixels are viewed as `uint16` and the image is marked `signed`;
they are taken to hold CT Hounsfield units (the convention of the reference data's `image_hu`), so `hu`
is set for them. Output is always little-endian, C order.
"""

from __future__ import annotations

import ast
import io
import struct

import numpy as np

from gateway.codecs.types import DecodedImage, Limits, check_new_pixels
from gateway.errors import InputError
from gateway.reasons import Reason

MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10_000  # numpy's own default for np.load
_ALLOWED: dict[str, np.dtype] = {
    "|u1": np.dtype(np.uint8),
    "<u1": np.dtype(np.uint8),
    ">u1": np.dtype(np.uint8),
    "<u2": np.dtype("<u2"),
    ">u2": np.dtype(">u2"),
    "<i2": np.dtype("<i2"),
    ">i2": np.dtype(">i2"),
}


def is_npy(data: bytes) -> bool:
    """True when `data` starts with the NPY magic string."""
    return data[: len(MAGIC)] == MAGIC


def _read_header(data: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    if len(data) < 10:
        raise InputError(Reason.TRUNCATED, "the NPY file ends inside its header")
    major = data[6]
    if major == 1:
        (size,) = struct.unpack("<H", data[8:10])
        start = 10
    elif major in (2, 3):
        if len(data) < 12:
            raise InputError(Reason.TRUNCATED, "the NPY file ends inside its header")
        (size,) = struct.unpack("<I", data[8:12])
        start = 12
    else:
        raise InputError(Reason.MALFORMED, f"unknown NPY format version {major}")
    if size > _MAX_HEADER:
        raise InputError(Reason.MALFORMED, f"the NPY header has {size} bytes, more than {_MAX_HEADER}")
    if start + size > len(data):
        raise InputError(Reason.TRUNCATED, "the NPY file ends inside its header")
    try:
        text = data[start : start + size].decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError(Reason.MALFORMED, "the NPY header is not a valid dictionary") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise InputError(Reason.MALFORMED, "the NPY header does not have exactly descr, fortran_order and shape")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(descr, str) or descr not in _ALLOWED:
        raise InputError(Reason.UNSUPPORTED_DTYPE, f"only uint8, uint16 or int16 arrays are supported (got {descr!r})")
    if not isinstance(fortran, bool):
        raise InputError(Reason.MALFORMED, "the NPY fortran_order is not a boolean")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise InputError(Reason.MALFORMED, "the NPY shape is not a tuple of integers")
    return _ALLOWED[descr], shape, fortran, start + size


def decode(data: bytes, limits: Limits) -> DecodedImage:
    """Decode a 2-D uint8/uint16/int16 NPY array without ever unpickling."""
    limits.check_bytes(len(data))
    dtype, shape, _fortran, offset = _read_header(data)
    if len(shape) != 2:
        raise InputError(Reason.UNSUPPORTED_SHAPE, f"only 2-D arrays are supported (got {len(shape)}-D)")
    rows, cols = shape
    limits.check_shape(rows, cols)
    needed = rows * cols * dtype.itemsize
    if len(data) - offset < needed:
        raise InputError(Reason.TRUNCATED, f"the NPY data holds {len(data) - offset} bytes, {needed} are needed")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(Reason.MALFORMED, f"the NPY file could not be read ({type(exc).__name__})") from None
    if array.shape != (rows, cols) or array.dtype != dtype:
        raise InputError(Reason.MALFORMED, "the NPY array does not match its header")
    signed = dtype.kind == "i"
    native = np.ascontiguousarray(array.astype(dtype.newbyteorder("="), copy=False))
    hu = native.astype(np.float32) if signed else None
    unsigned = np.uint16 if dtype.itemsize == 2 else np.uint8
    pixels = native.view(unsigned).copy()
    return DecodedImage(pixels=pixels, format="npy", signed=signed, hu=hu)


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Write `pixels` as NPY in the input's dtype (int16 again for signed input), little-endian, C order."""
    pixels = check_new_pixels(image, pixels)
    out = pixels.view(np.int16) if image.signed else pixels
    buffer = io.BytesIO()
    np.save(buffer, out.astype(out.dtype.newbyteorder("<"), copy=False), allow_pickle=False)
    return buffer.getvalue()
