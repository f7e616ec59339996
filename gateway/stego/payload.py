"""What is hidden in the image (DESIGN §6): message id, timestamp, keyed stamp, lesion mask, source reference.

Binary form (`HiddenPayload.to_bytes`), integers big-endian:

    u8 version (1) | 16 bytes message id (UUID) | u64 timestamp (UTC ns) | 32 bytes stamp
    | u32 rows | u32 cols | u32 n | n bytes zlib(lesion mask packed row-major, MSB first, zero-padded)
    | u16 m | m bytes source reference (UTF-8; m = 0xFFFF means none)

The stamp binds the time and the original pixels to the message:
``T_stamp = HMAC-SHA256(k_stamp, u64 timestamp | sha256(original pixels) | 16-byte message id)``,
with the pixel digest from `pixel_sha256`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass

import numpy as np

from gateway.errors import InputError
from gateway.reasons import Reason
from gateway.stego.masks import pack_mask, unpack_mask

__all__ = ["HiddenPayload", "make_stamp", "pixel_sha256", "verify_stamp"]

VERSION = 1
STAMP_BYTES = 32
_HEAD = struct.Struct(">B16sQ32sIII")
_NO_SOURCE = 0xFFFF
_MAX_SIDE = 1 << 16


@dataclass(frozen=True, eq=False)
class HiddenPayload:
    """The provenance record hidden in the marked image.

    `message_id` is a UUID string (kept in canonical lower-case form), `timestamp_ns` UTC nanoseconds,
    `stamp` the 32-byte HMAC from `make_stamp`, `lesion_mask` a 2-D bool array at the image's resolution,
    `source_ref` e.g. the DICOM SOP Instance UID.
    """

    message_id: str
    timestamp_ns: int
    stamp: bytes
    lesion_mask: np.ndarray
    source_ref: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", str(_uuid(self.message_id)))
        if isinstance(self.timestamp_ns, bool) or not isinstance(self.timestamp_ns, (int, np.integer)):
            raise TypeError("timestamp_ns must be an integer")
        if not 0 <= int(self.timestamp_ns) < 1 << 64:
            raise ValueError("timestamp_ns must fit in an unsigned 64-bit integer")
        object.__setattr__(self, "timestamp_ns", int(self.timestamp_ns))
        if not isinstance(self.stamp, (bytes, bytearray)) or len(self.stamp) != STAMP_BYTES:
            raise ValueError(f"stamp must be {STAMP_BYTES} bytes")
        object.__setattr__(self, "stamp", bytes(self.stamp))
        mask = np.asarray(self.lesion_mask)
        if mask.ndim != 2 or mask.dtype != np.bool_ or 0 in mask.shape:
            raise ValueError("lesion_mask must be a non-empty 2-D bool array")
        if max(mask.shape) > _MAX_SIDE:
            raise ValueError(f"lesion_mask sides must be at most {_MAX_SIDE}")
        mask = mask.copy()
        mask.flags.writeable = False
        object.__setattr__(self, "lesion_mask", mask)
        if self.source_ref is not None and (
            not isinstance(self.source_ref, str) or len(self.source_ref.encode("utf-8")) >= _NO_SOURCE
        ):
            raise ValueError("source_ref must be a string shorter than 65535 UTF-8 bytes")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HiddenPayload):
            return NotImplemented
        return (
            self.message_id == other.message_id
            and self.timestamp_ns == other.timestamp_ns
            and hmac.compare_digest(self.stamp, other.stamp)
            and self.lesion_mask.shape == other.lesion_mask.shape
            and bool(np.array_equal(self.lesion_mask, other.lesion_mask))
            and self.source_ref == other.source_ref
        )

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        """The compact binary form (see the module docstring)."""
        rows, cols = self.lesion_mask.shape
        mask = pack_mask(self.lesion_mask, 9)
        head = _HEAD.pack(
            VERSION, uuid.UUID(self.message_id).bytes, self.timestamp_ns, self.stamp, rows, cols, len(mask)
        )
        if self.source_ref is None:
            tail = struct.pack(">H", _NO_SOURCE)
        else:
            ref = self.source_ref.encode("utf-8")
            tail = struct.pack(">H", len(ref)) + ref
        return head + mask + tail

    @classmethod
    def from_bytes(cls, data: bytes) -> HiddenPayload:
        """Parse `to_bytes` output strictly: any deviation raises `InputError(Reason.BAD_HIDDEN_PAYLOAD)`."""

        def bad(why: str) -> InputError:
            return InputError(Reason.BAD_HIDDEN_PAYLOAD, f"invalid hidden payload: {why}")

        data = bytes(data)
        if len(data) < _HEAD.size + 2:
            raise bad("too short")
        version, mid, timestamp, stamp, rows, cols, mask_len = _HEAD.unpack_from(data)
        if version != VERSION:
            raise bad(f"unknown version {version}")
        if not (0 < rows <= _MAX_SIDE and 0 < cols <= _MAX_SIDE):
            raise bad("lesion mask size out of range")
        at = _HEAD.size
        if len(data) < at + mask_len + 2:
            raise bad("too short for its lesion mask")
        try:
            mask = unpack_mask(data[at : at + mask_len], rows, cols)
        except ValueError as exc:
            raise bad(f"lesion {exc}") from None
        at += mask_len
        (ref_len,) = struct.unpack_from(">H", data, at)
        at += 2
        if ref_len == _NO_SOURCE:
            source_ref = None
        else:
            if len(data) < at + ref_len:
                raise bad("too short for its source reference")
            try:
                source_ref = data[at : at + ref_len].decode("utf-8")
            except UnicodeDecodeError:
                raise bad("source reference is not UTF-8") from None
            at += ref_len
        if at != len(data):
            raise bad("trailing bytes")
        return cls(
            message_id=str(uuid.UUID(bytes=mid)),
            timestamp_ns=timestamp,
            stamp=stamp,
            lesion_mask=mask,
            source_ref=source_ref,
        )


def pixel_sha256(pixels: np.ndarray) -> bytes:
    """SHA-256 of an image's pixels: ``u32 rows | u32 cols | u8 bytes per pixel | little-endian values``.

    The shape is hashed too so that the same bytes in another shape give another digest.
    """
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype.kind != "u" or pixels.dtype.itemsize > 2:
        raise ValueError("pixels must be a 2-D uint8 or uint16 array")
    rows, cols = pixels.shape
    digest = hashlib.sha256(struct.pack(">IIB", rows, cols, pixels.dtype.itemsize))
    digest.update(np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes())
    return digest.digest()


def make_stamp(k_stamp: bytes, timestamp_ns: int, pixel_sha256: bytes, message_id: str) -> bytes:
    """``HMAC-SHA256(k_stamp, u64 timestamp_ns | pixel_sha256 | 16-byte message id)`` (DESIGN §6)."""
    if not isinstance(k_stamp, (bytes, bytearray)) or len(k_stamp) < 16:
        raise ValueError("k_stamp must be at least 16 bytes")
    if not isinstance(pixel_sha256, (bytes, bytearray)) or len(pixel_sha256) != 32:
        raise ValueError("pixel_sha256 must be a 32-byte SHA-256 digest")
    if isinstance(timestamp_ns, bool) or not 0 <= int(timestamp_ns) < 1 << 64:
        raise ValueError("timestamp_ns must fit in an unsigned 64-bit integer")
    message = struct.pack(">Q", int(timestamp_ns)) + bytes(pixel_sha256) + _uuid(message_id).bytes
    return hmac.new(bytes(k_stamp), message, hashlib.sha256).digest()


def verify_stamp(k_stamp: bytes, timestamp_ns: int, pixel_sha256: bytes, message_id: str, stamp: bytes) -> bool:
    """True when `stamp` is `make_stamp` of the same inputs; the comparison takes constant time."""
    return hmac.compare_digest(make_stamp(k_stamp, timestamp_ns, pixel_sha256, message_id), bytes(stamp))


def _uuid(message_id: str) -> uuid.UUID:
    if not isinstance(message_id, str):
        raise TypeError("message_id must be a UUID string")
    try:
        return uuid.UUID(message_id)
    except ValueError:
        raise ValueError("message_id must be a UUID string") from None
