"""The types every codec shares: size limits and the decoded image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gateway.errors import InputError
from gateway.reasons import Reason

Format = Literal["dicom", "png", "npy"]


@dataclass(frozen=True)
class Limits:
    """What one input may cost before any heavy work is done on it.

    The defaults admit any 16-bit image whose raw pixels fit in `max_bytes` (8192 x 4096 or 5792 x 5792, say)
    and refuse anything bigger, so a small compressed file cannot expand into gigabytes of pixels.
    """

    max_bytes: int = 64 * 1024 * 1024
    """Largest encoded input, in bytes."""
    max_pixels: int = 8192 * 4096
    """Largest rows x columns."""
    max_side: int = 8192
    """Largest number of rows or of columns."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_side <= 0:
            raise ValueError("limits must be positive")

    def check_bytes(self, size: int) -> None:
        """Refuse empty or oversized input (reasons `empty`, `too_large`)."""
        if size == 0:
            raise InputError(Reason.EMPTY, "the input is empty")
        if size > self.max_bytes:
            raise InputError(Reason.TOO_LARGE, f"the input has {size} bytes, more than the limit of {self.max_bytes}")

    def check_shape(self, rows: int, cols: int) -> None:
        """Refuse degenerate or oversized dimensions (reasons `malformed`, `too_many_pixels`)."""
        if rows <= 0 or cols <= 0:
            raise InputError(Reason.MALFORMED, f"the image has no pixels ({rows} x {cols})")
        if rows > self.max_side or cols > self.max_side:
            raise InputError(
                Reason.TOO_MANY_PIXELS,
                f"the image is {rows} x {cols}; a side may be at most {self.max_side} pixels",
            )
        if rows * cols > self.max_pixels:
            raise InputError(
                Reason.TOO_MANY_PIXELS,
                f"the image has {rows * cols} pixels, more than the limit of {self.max_pixels}",
            )


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One decoded grey-scale image and what is needed to write it back in its own format.

    `pixels` is always a 2-D `uint8` or `uint16` array of the stored values: signed stored values (signed
    DICOM, `int16` NPY) are reinterpreted bit for bit as unsigned (`signed` is then True), so that changing a
    least significant bit and changing it back is lossless. `hu` holds float32 Hounsfield units when the
    input is CT (what the segmenter reads); it is None otherwise. `dataset` is the pydicom Dataset of a
    DICOM input with every element as read. `source_ref` is the DICOM SOP Instance UID when there is one.

    A multi-frame input (`frames` > 1) has its frames stacked top to bottom: `pixels` is (frames x rows,
    columns). `recipe` is what it takes to rebuild the input file byte for byte from the original pixels
    (`gateway.codecs.rebuild`); None where the format has none (PNG, NPY are rewritten by `encode`).
    """

    pixels: np.ndarray
    format: Format
    signed: bool = False
    hu: np.ndarray | None = None
    dataset: Any = field(default=None, repr=False)
    source_ref: str | None = None
    frames: int = 1
    recipe: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2 or self.pixels.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError("pixels must be a 2-D uint8 or uint16 array")
        if self.hu is not None and self.hu.shape != self.pixels.shape:
            raise ValueError("hu must have the shape of pixels")
        if self.frames < 1 or self.pixels.shape[0] % self.frames:
            raise ValueError("the stacked frames must divide the rows evenly")


def check_new_pixels(image: DecodedImage, pixels: np.ndarray) -> np.ndarray:
    """The replacement pixels for `encode`, checked to have the decoded image's shape and dtype."""
    if not isinstance(pixels, np.ndarray) or pixels.shape != image.pixels.shape or pixels.dtype != image.pixels.dtype:
        raise ValueError(
            f"new pixels must be {image.pixels.dtype} of shape {image.pixels.shape}, "
            f"got {getattr(pixels, 'dtype', type(pixels))} of shape {getattr(pixels, 'shape', None)}"
        )
    return np.ascontiguousarray(pixels)
