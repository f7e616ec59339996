"""Boolean masks in the hiding layer's records: packed row-major, MSB first, zero-padded, then zlib.

One encoder and one strict decoder, shared by the restoration record (exclusion mask) and the hidden payload
(lesion mask), so both formats stay the same and both refuse the same malformed inputs.
"""

from __future__ import annotations

import zlib

import numpy as np


def pack_mask(mask: np.ndarray, level: int) -> bytes:
    """zlib(packbits(mask)) at compression `level`."""
    return zlib.compress(np.packbits(mask, axis=None).tobytes(), level)


def unpack_mask(data: bytes, rows: int, cols: int) -> np.ndarray:
    """Inverse of `pack_mask` for a rows×cols mask. ValueError (with what is wrong) unless `data` inflates to
    exactly the packed size, with nothing after the stream and zero padding bits: the inflation is bounded,
    so a hostile record cannot make it allocate more than the mask needs."""
    packed = (rows * cols + 7) // 8
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, packed)
    except zlib.error:
        raise ValueError("mask does not inflate") from None
    if len(raw) != packed or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise ValueError("mask has the wrong size")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[rows * cols :].any():
        raise ValueError("mask padding is not zero")
    return bits[: rows * cols].astype(bool).reshape(rows, cols)
