"""The envelope's plaintext: the marked image, its restoration record, the metadata that must not travel in
clear and the original file's rebuild recipe, losslessly compressed.

Layout (before compression), all lengths u32 big-endian:

    "MSC2" | len(marked) | marked | len(record) | record | len(meta) | meta | len(recipe) | recipe

`meta` (canonical UTF-8 JSON object) holds what the image is (`content`: format, dtype, signedness, shape)
and where it came from (`source`: topic, scanner id, file name...). `recipe` is what it takes to rebuild the
input file byte for byte from the original pixels (DICOM: see `gateway.codecs.dicom.rebuild`); empty when the
format has none. Compression, named in the envelope header's `compression` (docs/ENVELOPE.md §10):

- `shuffle2-zstd` (what the gateway writes): the serialised container byte-shuffled in 2-byte words (all
  even-offset bytes, then all odd-offset bytes, then an odd trailing byte), then one zstd frame (level 1).
  The shuffle puts the high bytes of 16-bit pixels side by side, which zstd then finds; it compresses CT
  better than zlib-1 in a fraction of the time (benchmarks/README.md).
- `zlib` (level 1, RFC 1950) and `none`: still read, and written on request.

Unpacking decompresses in bounded steps and stops at the limit the caller gives (from its configuration,
never from anything the envelope declares), so a hostile envelope cannot exhaust memory.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zstandard

from gateway.errors import ContainerError

Compression = Literal["shuffle2-zstd", "zlib", "none"]
DEFAULT_COMPRESSION: Compression = "shuffle2-zstd"
COMPRESSIONS: tuple[Compression, ...] = ("shuffle2-zstd", "zlib", "none")

_MAGIC = b"MSC2"
_LEN = struct.Struct(">I")
_FIELDS = 4
# zlib level 1 keeps most of the ratio of level 6 on CT at a fraction of the time (see benchmarks).
_ZLIB_LEVEL = 1
_STEP = 1 << 20  # inflate at most 1 MiB per call, so the output never overshoots the limit by more
_ZSTD_LEVEL = 1
# The writer's level-1 frames use a window of at most 512 KiB; a frame asking for more than this is refused
# before the decoder allocates it.
_ZSTD_MAX_WINDOW = 1 << 23
# zstd compression contexts are not thread-safe (one shared by two workers crashed the process): one each.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "zstd", None)
    if comp is None:
        comp = _local.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
    return comp


def shuffle2(raw: bytes) -> bytes:
    """Bytes at even offsets, then those at odd offsets, then the last byte of an odd-length input."""
    even = len(raw) & ~1
    words = np.frombuffer(raw, dtype=np.uint8, count=even).reshape(-1, 2)
    return words.T.tobytes() + raw[even:]


def unshuffle2(data: bytes) -> bytes:
    """Inverse of `shuffle2`."""
    even = len(data) & ~1
    halves = np.frombuffer(data, dtype=np.uint8, count=even).reshape(2, -1)
    return halves.T.tobytes() + data[even:]


def unzstd(data: bytes, max_bytes: int) -> bytes:
    """Decompress one zstd frame in steps of at most 1 MiB; ContainerError past `max_bytes` or if malformed."""
    out = bytearray()
    try:
        decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        with decompressor.stream_reader(io.BytesIO(data), read_across_frames=False) as reader:
            while True:
                chunk = reader.read(_STEP)
                if not chunk:
                    break
                out += chunk
                if len(out) > max_bytes:
                    raise ContainerError("container larger than the limit")
    except zstandard.ZstdError:
        raise ContainerError("not zstd") from None
    return bytes(out)


@dataclass(frozen=True)
class Container:
    marked: bytes
    record: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    recipe: bytes = b""
    """What it takes to rebuild the original input file byte for byte; empty when the format has none."""


def _meta_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def pack(container: Container, compression: Compression = DEFAULT_COMPRESSION) -> bytes:
    """Serialise and compress a container."""
    fields = (container.marked, container.record, _meta_bytes(container.meta), container.recipe)
    raw = b"".join([_MAGIC, *(_LEN.pack(len(f)) + f for f in fields)])
    if compression == "shuffle2-zstd":
        return _compressor().compress(shuffle2(raw))
    if compression == "zlib":
        return zlib.compress(raw, _ZLIB_LEVEL)
    if compression == "none":
        return raw
    raise ValueError(f"unknown compression {compression!r}")


def inflate(data: bytes, max_bytes: int) -> bytes:
    """zlib-inflate `data` in steps of at most 1 MiB; ContainerError past `max_bytes` or if truncated."""
    inflater = zlib.decompressobj()
    out = bytearray()
    pending = bytes(data)
    while True:
        try:
            chunk = inflater.decompress(pending, _STEP)
        except zlib.error:
            raise ContainerError("not zlib") from None
        out += chunk
        if len(out) > max_bytes:
            raise ContainerError("container larger than the limit")
        progress = bool(chunk) or len(inflater.unconsumed_tail) < len(pending)
        pending = inflater.unconsumed_tail
        if inflater.eof:
            break
        if not progress or (not pending and not chunk):
            raise ContainerError("truncated container")
    if inflater.unused_data:
        raise ContainerError("trailing bytes after the compressed container")
    return bytes(out)


def unpack(data: bytes, compression: str, max_bytes: int) -> Container:
    """Inverse of `pack`; refuses output larger than `max_bytes`."""
    if compression == "shuffle2-zstd":
        raw = unshuffle2(unzstd(data, max_bytes))
    elif compression == "zlib":
        raw = inflate(data, max_bytes)
    elif compression == "none":
        raw = bytes(data)
    else:
        raise ContainerError("unknown compression")
    if len(raw) > max_bytes or raw[:4] != _MAGIC:
        raise ContainerError("not a container")
    offset = 4
    fields = []
    for _ in range(_FIELDS):
        if offset + 4 > len(raw):
            raise ContainerError("truncated container")
        (length,) = _LEN.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ContainerError("truncated container")
        fields.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise ContainerError("trailing bytes in container")
    try:
        meta = json.loads(fields[2].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ContainerError("metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise ContainerError("metadata is not an object")
    return Container(marked=fields[0], record=fields[1], meta=meta, recipe=fields[3])
