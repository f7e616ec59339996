"""Decode and encode the image formats the gateway protects: DICOM, PNG and NPY.

`decode` sniffs the format from the first bytes, checks the limits before any heavy work and returns a
`DecodedImage`; `encode` writes new pixel values back in the input's own format. Every failure on bad input
is an `InputError` whose `reason` is one of:

    empty, too_large, too_many_pixels, not_an_image, truncated, malformed, unsupported_transfer_syntax,
    not_monochrome, unsupported_bit_depth, unsupported_dtype, unsupported_shape, no_pixel_data
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gateway.codecs import dicom, npy, png
from gateway.codecs.types import DecodedImage, Format, Limits
from gateway.errors import InputError
from gateway.reasons import Reason

__all__ = [
    "DEFAULT_LIMITS",
    "DecodedImage",
    "Format",
    "Limits",
    "decode",
    "encode",
    "encode_marked",
    "frames_of",
    "rebuild",
    "sniff",
]

DEFAULT_LIMITS = Limits()

_DECODERS = {"dicom": dicom.decode, "png": png.decode, "npy": npy.decode}
_ENCODERS = {"dicom": dicom.encode, "png": png.encode, "npy": npy.encode}


def sniff(data: bytes) -> Format | None:
    """The format `data` announces by its magic bytes, or None when it is none of DICOM, PNG or NPY."""
    if png.is_png(data):
        return "png"
    if npy.is_npy(data):
        return "npy"
    if dicom.is_dicom(data):
        return "dicom"
    return None


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode one image, refusing anything outside `limits` or the supported formats with `InputError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("decode takes bytes")
    data = bytes(data)
    limits.check_bytes(len(data))
    kind = sniff(data)
    if kind is None:
        raise InputError(Reason.NOT_AN_IMAGE, "the input is not a DICOM, PNG or NPY file")
    return _DECODERS[kind](data, limits)


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """`image` in its own format with `pixels` (same shape and dtype as `image.pixels`) as its pixel values."""
    return _ENCODERS[image.format](image, pixels)


def encode_marked(image: DecodedImage, pixels: np.ndarray, message_id: str) -> bytes:
    """The marked image to ship: a DICOM derived object (`dicom.derive`), other formats as `encode`."""
    if image.format == "dicom":
        return dicom.derive(image, pixels, message_id)
    return encode(image, pixels)


def marked_writer(image: DecodedImage, message_id: str) -> Callable[[np.ndarray], bytes]:
    """`encode_marked(image, ·, message_id)` with what needs no marked pixels done now: a DICOM derived
    object is written ahead and the pixels spliced in (`dicom.derive_later`); other formats wait for them."""
    if image.format == "dicom":
        return dicom.derive_later(image, message_id)
    return lambda pixels: encode(image, pixels)


def rebuild(recipe: bytes, pixels: np.ndarray) -> bytes:
    """The original input file, byte for byte, from its decoder's `DecodedImage.recipe` and original pixels."""
    return dicom.rebuild(recipe, pixels)


def frames_of(image: DecodedImage) -> list[DecodedImage]:
    """The frames of a multi-frame image as single-frame images (views; no dataset or recipe)."""
    if image.frames == 1:
        return [image]
    rows = image.pixels.shape[0] // image.frames
    return [
        DecodedImage(
            pixels=image.pixels[i * rows : (i + 1) * rows],
            format=image.format,
            signed=image.signed,
            hu=None if image.hu is None else image.hu[i * rows : (i + 1) * rows],
            source_ref=image.source_ref,
        )
        for i in range(image.frames)
    ]
