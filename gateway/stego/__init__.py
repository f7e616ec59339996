"""Hide a payload in the least significant bits of non-lesion pixels, and undo it bit for bit (DESIGN §6).

Frame. The payload is framed as ``magic "MSST" | u32 big-endian payload length | payload | u32 big-endian
CRC-32 of everything before it`` and the frame's bits are written most significant bit first, one bit per
pixel, into the least significant bit of the pixel.

Order. A pixel is usable when ``exclusion`` is False there (the lesion dilated by the safety margin, see
`exclusion_mask`). With ``N`` = rows x columns and pixels indexed row-major, frame bit ``i`` goes to the
pixel ``s_i``, where ``s_0, s_1, ...`` are, in order, the values of ``P(0), P(1), P(2), ...`` that are below
``N`` and usable, and ``P`` is a keyed permutation of ``[0, 2**b)``:

- ``b`` = the bit length of ``N - 1``, at least 2, rounded up to an even number; ``h = b / 2``;
- eight tables ``T_0 .. T_7`` of ``2**h`` entries: the SHAKE-256 output of
  ``"medshield/stego/order/v1" | u8 h | order_key`` read as little-endian u32 words, table after table,
  each word masked to its low ``h`` bits;
- ``P(j)``: ``L = j >> h``, ``R = j & (2**h - 1)``; eight Feistel rounds ``L, R = R, L xor T_r[R]``;
  ``P(j) = (L << h) | R``.

Because ``P`` is a permutation, the ``s_i`` are distinct, any prefix of the order is the same whatever the
payload length, and the work is proportional to the number of bits hidden (divided by the usable share of
the image), not to the image size.

Restoration. `embed` returns a `RestorationRecord` with the exclusion mask and the original bits of every
pixel it wrote; `restore` puts them back, giving the original pixels bit for bit.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from gateway.errors import CapacityError, InputError
from gateway.reasons import Reason
from gateway.stego.masks import pack_mask, unpack_mask

__all__ = [
    "FRAME_OVERHEAD_BYTES",
    "RestorationRecord",
    "capacity_bytes",
    "embed",
    "exclusion_mask",
    "extract",
    "restore",
]

FRAME_MAGIC = b"MSST"
FRAME_OVERHEAD_BYTES = 12
"""Bytes the frame adds to a payload: magic, length, CRC-32."""
_HEADER_BITS = 64
_ORDER_DOMAIN = b"medshield/stego/order/v1"
_ROUNDS = 8
MIN_ORDER_KEY_BYTES = 16

RECORD_MAGIC = b"MSRR"
RECORD_VERSION = 1
_RECORD_HEADER = struct.Struct(">4sBBIIII")
_MAX_RECORD_SIDE = 1 << 16


def exclusion_mask(lesion_mask: np.ndarray, margin_px: int) -> np.ndarray:
    """The pixels hiding must never touch: every pixel within `margin_px` (Euclidean) of a lesion pixel.

    `lesion_mask` is a 2-D array, nonzero (True) on the lesion. Returns a new bool array of the same shape.
    """
    mask = np.asarray(lesion_mask)
    if mask.ndim != 2:
        raise ValueError(f"the lesion mask must be 2-D, got {mask.ndim}-D")
    if isinstance(margin_px, bool) or not isinstance(margin_px, (int, np.integer)) or margin_px < 0:
        raise ValueError("margin_px must be a non-negative integer")
    lesion: np.ndarray = mask != 0
    margin = int(margin_px)
    if margin == 0 or not lesion.any():
        return np.array(lesion, dtype=bool)
    # Only the lesion's bounding box grown by the margin can change: grow that window, not the whole image.
    rows = np.flatnonzero(lesion.any(axis=1))
    cols = np.flatnonzero(lesion.any(axis=0))
    top, bottom = max(0, rows[0] - margin), min(lesion.shape[0], rows[-1] + margin + 1)
    left, right = max(0, cols[0] - margin), min(lesion.shape[1], cols[-1] + margin + 1)
    out = np.zeros(lesion.shape, dtype=bool)
    out[top:bottom, left:right] = grow(lesion[top:bottom, left:right], margin)
    return out


_DISTANCE_FROM_RADIUS = 16
"""From this radius on, `grow` thresholds a distance transform, whose cost does not depend on the radius;
below it the dilation, whose cost grows with the disk's area, is the faster (measured at 512² to 4096²)."""


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool: every pixel within Euclidean distance `radius` of a nonzero pixel of the 2-D `mask` (the dilation
    by the disk of lattice points x² + y² ≤ radius²; nothing outside the image counts)."""
    import cv2

    marked = np.asarray(mask) != 0
    if radius >= _DISTANCE_FROM_RADIUS:
        # Exact Euclidean distance to the nearest marked pixel (DIST_MASK_PRECISE), so `<= radius` is the same set.
        distance = cv2.distanceTransform((~marked).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        grown: np.ndarray = distance <= radius
        return grown
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = ((yy * yy + xx * xx) <= radius * radius).astype(np.uint8)
    dilated: np.ndarray = cv2.dilate(marked.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) != 0
    return dilated


def capacity_bytes(exclusion: np.ndarray) -> int:
    """The largest payload (bytes) that fits outside `exclusion`, after the frame's overhead."""
    usable = int(np.count_nonzero(~_check_mask(exclusion)))
    return max(0, usable // 8 - FRAME_OVERHEAD_BYTES)


@dataclass(frozen=True, eq=False)
class RestorationRecord:
    """What `restore` needs: the exclusion mask used, the pixel dtype, and the original bits it overwrote.

    Serialised by `to_bytes` as ``"MSRR" | u8 version (1) | u8 bytes per pixel (1, 2) | u32 rows | u32
    cols | u32 number of bits | u32 length of the mask | zlib(packed exclusion mask, row-major, MSB first)
    | packed original bits (MSB first, zero-padded)``, all integers big-endian.
    """

    exclusion: np.ndarray
    dtype: np.dtype
    original_bits: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """The image's (rows, columns)."""
        return (int(self.exclusion.shape[0]), int(self.exclusion.shape[1]))

    @property
    def n_bits(self) -> int:
        """How many pixels were written."""
        return int(self.original_bits.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RestorationRecord):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.exclusion.shape == other.exclusion.shape
            and bool(np.array_equal(self.exclusion, other.exclusion))
            and bool(np.array_equal(self.original_bits, other.original_bits))
        )

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        """The record's documented binary form (see the class docstring)."""
        rows, cols = self.shape
        packed_mask = pack_mask(self.exclusion, 6)
        header = _RECORD_HEADER.pack(
            RECORD_MAGIC, RECORD_VERSION, self.dtype.itemsize, rows, cols, self.n_bits, len(packed_mask)
        )
        return header + packed_mask + np.packbits(self.original_bits).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> RestorationRecord:
        """Parse `to_bytes` output strictly: any deviation raises `InputError(Reason.BAD_RESTORATION_RECORD)`."""

        def bad(why: str) -> InputError:
            return InputError(Reason.BAD_RESTORATION_RECORD, f"invalid restoration record: {why}")

        data = bytes(data)
        if len(data) < _RECORD_HEADER.size:
            raise bad("too short")
        magic, version, itemsize, rows, cols, n_bits, mask_len = _RECORD_HEADER.unpack_from(data)
        if magic != RECORD_MAGIC:
            raise bad("wrong magic")
        if version != RECORD_VERSION:
            raise bad(f"unknown version {version}")
        if itemsize not in (1, 2):
            raise bad("pixel size must be 1 or 2 bytes")
        if not (0 < rows <= _MAX_RECORD_SIDE and 0 < cols <= _MAX_RECORD_SIDE):
            raise bad("image size out of range")
        bits_len = (n_bits + 7) // 8
        if len(data) != _RECORD_HEADER.size + mask_len + bits_len:
            raise bad("length does not match its header")
        start = _RECORD_HEADER.size
        try:
            exclusion = unpack_mask(data[start : start + mask_len], rows, cols)
        except ValueError as exc:
            raise bad(f"exclusion {exc}") from None
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=start + mask_len))
        if bits[n_bits:].any():
            raise bad("original bits padding is not zero")
        if n_bits > rows * cols - int(np.count_nonzero(exclusion)):
            raise bad("more bits than usable pixels")
        dtype = np.dtype(np.uint8) if itemsize == 1 else np.dtype(np.uint16)
        return cls(exclusion=exclusion, dtype=dtype, original_bits=bits[:n_bits].copy())


def embed(
    pixels: np.ndarray, exclusion: np.ndarray, payload: bytes, order_key: bytes
) -> tuple[np.ndarray, RestorationRecord]:
    """Hide `payload` in the LSBs of the pixels outside `exclusion`, in the order keyed by `order_key`.

    Returns the marked copy of `pixels` and the record that undoes it. Raises `CapacityError` when the
    framed payload needs more bits than there are usable pixels.
    """
    _check_pixels(pixels)
    exclusion = _check_mask(exclusion, pixels.shape)
    key = _check_key(order_key)
    frame = _frame(bytes(payload))
    bits = np.unpackbits(np.frombuffer(frame, dtype=np.uint8))
    usable = exclusion.size - int(np.count_nonzero(exclusion))
    if bits.size > usable:
        raise CapacityError(
            f"the hidden payload needs {bits.size} bits ({len(payload)} bytes + {FRAME_OVERHEAD_BYTES} of framing) "
            f"but only {usable} pixels of {exclusion.size} are usable outside the lesion exclusion"
        )
    where = _positions(exclusion, usable, bits.size, key)
    marked = np.array(pixels, copy=True, order="C")
    flat = marked.reshape(-1)
    chosen = flat[where]
    original = (chosen & 1).astype(np.uint8)
    flat[where] = (chosen & ~np.array(1, dtype=marked.dtype)) | bits.astype(marked.dtype)
    record = RestorationRecord(exclusion=exclusion.copy(), dtype=marked.dtype, original_bits=original)
    return marked, record


def extract(marked: np.ndarray, exclusion: np.ndarray, order_key: bytes) -> bytes:
    """The payload hidden by `embed` with the same exclusion and key.

    Raises `InputError` (`hidden_payload_not_found` or `hidden_payload_corrupt`) when the frame's magic,
    length or CRC-32 do not check out, e.g. under a wrong key: garbage is never returned.
    """
    _check_pixels(marked)
    exclusion = _check_mask(exclusion, marked.shape)
    key = _check_key(order_key)
    usable = exclusion.size - int(np.count_nonzero(exclusion))
    flat = np.ascontiguousarray(marked).reshape(-1)
    if usable < 8 * FRAME_OVERHEAD_BYTES:
        raise InputError(Reason.HIDDEN_PAYLOAD_NOT_FOUND, "too few usable pixels to hold a hidden payload")
    header = _read_bits(flat, _positions(exclusion, usable, _HEADER_BITS, key))
    magic, length = struct.unpack(">4sI", header)
    if magic != FRAME_MAGIC:
        raise InputError(Reason.HIDDEN_PAYLOAD_NOT_FOUND, "no hidden payload under this key (frame magic absent)")
    total_bits = 8 * (length + FRAME_OVERHEAD_BYTES)
    if total_bits > usable:
        raise InputError(Reason.HIDDEN_PAYLOAD_CORRUPT, "the hidden frame claims more bits than the image can hold")
    frame = _read_bits(flat, _positions(exclusion, usable, total_bits, key))
    (crc,) = struct.unpack(">I", frame[-4:])
    if zlib.crc32(frame[:-4]) != crc:
        raise InputError(Reason.HIDDEN_PAYLOAD_CORRUPT, "the hidden payload fails its CRC-32")
    return frame[8:-4]


def restore(marked: np.ndarray, record: RestorationRecord, order_key: bytes) -> np.ndarray:
    """The original pixels, bit for bit: the record's original bits put back where `embed` wrote."""
    _check_pixels(marked)
    if marked.shape != record.shape or marked.dtype != record.dtype:
        raise InputError(
            Reason.RECORD_MISMATCH,
            f"the restoration record is for {record.dtype} {record.shape}, the image is {marked.dtype} {marked.shape}",
        )
    key = _check_key(order_key)
    exclusion = np.ascontiguousarray(record.exclusion)
    usable = exclusion.size - int(np.count_nonzero(exclusion))
    if record.n_bits > usable:
        raise InputError(Reason.RECORD_MISMATCH, "the restoration record has more bits than usable pixels")
    where = _positions(exclusion, usable, record.n_bits, key)
    original = np.array(marked, copy=True, order="C")
    flat = original.reshape(-1)
    flat[where] = (flat[where] & ~np.array(1, dtype=original.dtype)) | record.original_bits.astype(original.dtype)
    return original


def _frame(payload: bytes) -> bytes:
    if len(payload) > 0xFFFFFFFF:
        raise CapacityError("the hidden payload is larger than 4 GiB")
    head = FRAME_MAGIC + struct.pack(">I", len(payload)) + payload
    return head + struct.pack(">I", zlib.crc32(head))


def _read_bits(flat: np.ndarray, where: np.ndarray) -> bytes:
    return np.packbits((flat[where] & 1).astype(np.uint8)).tobytes()


def _positions(exclusion: np.ndarray, usable: int, count: int, key: bytes) -> np.ndarray:
    """Flat indices of the first `count` usable pixels in the keyed order (see the module docstring)."""
    if count > usable:
        raise ValueError("more positions requested than there are usable pixels")
    flat = exclusion.reshape(-1)
    n = flat.size
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    domain = 1 << bits
    tables = _tables(key, half)
    low = (1 << half) - 1
    chunks: list[np.ndarray] = []
    have, start = 0, 0
    while have < count:
        need = count - have
        # P maps `domain` indices onto itself and about usable/domain of them land on usable pixels
        size = min(domain - start, int(need * domain / usable * 1.1) + 64)
        j = np.arange(start, start + size, dtype=np.int64)
        left, right = j >> half, j & low
        for table in tables:
            left, right = right, left ^ table[right]
        values = (left << half) | right
        values = values[values < n]
        values = values[~flat[values]][:need]
        chunks.append(values)
        have += values.size
        start += size
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _tables(key: bytes, half: int) -> np.ndarray:
    size = 1 << half
    stream = hashlib.shake_256(_ORDER_DOMAIN + bytes([half]) + key).digest(4 * size * _ROUNDS)
    words = np.frombuffer(stream, dtype="<u4").reshape(_ROUNDS, size)
    return (words & np.uint32(size - 1)).astype(np.int64)


def _check_pixels(pixels: np.ndarray) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError("pixels must be a 2-D uint8 or uint16 array")


def _check_mask(mask: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
        raise ValueError("the exclusion mask must be a 2-D bool array")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"the exclusion mask is {mask.shape}, the image {shape}")
    return np.ascontiguousarray(mask)


def _check_key(order_key: bytes) -> bytes:
    if not isinstance(order_key, (bytes, bytearray)) or len(order_key) < MIN_ORDER_KEY_BYTES:
        raise ValueError(f"the order key must be at least {MIN_ORDER_KEY_BYTES} bytes")
    return bytes(order_key)
