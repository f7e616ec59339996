"""Envelope parts, for brokers with a message size limit (AWS IoT Core: 128 KB; EMQX default: 1 MB).

    "MSHP" | message id (16 bytes, the UUID's bytes) | u32 BE index | u32 BE count | SHA-256 of the whole
    envelope (32 bytes) | data

Parts are not authenticated on their own: the receiver keeps them until a set is complete, joins them in
index order, and hands out the envelope only if its SHA-256 matches and its header names the same message id.
The envelope's own tag then authenticates everything. Truncated, duplicated, reordered, missing or foreign
parts never yield a wrong envelope; malformed parts raise OpenError.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.crypto.envelope import MAX_ENVELOPE_BYTES, peek_header
from gateway.errors import OpenError
from gateway.rng import Clock, system_clock

MAGIC = b"MSHP"
HEADER_BYTES = 4 + 16 + 4 + 4 + 32
MAX_PARTS = 1 << 16


@dataclass(frozen=True)
class Part:
    """One parsed part."""

    message_id: bytes
    index: int
    count: int
    digest: bytes
    data: bytes = field(repr=False)


def split(envelope: bytes, max_bytes: int) -> list[bytes]:
    """Cut `envelope` into parts of at most `max_bytes` each (part header included).

    An envelope that fits is still wrapped (count 1), so receivers handle one format. ValueError if
    `max_bytes` leaves no room for data or the envelope would need more than 65536 parts.
    """
    envelope = bytes(envelope)
    if max_bytes <= HEADER_BYTES:
        raise ValueError(f"max_bytes must exceed the {HEADER_BYTES}-byte part header")
    if not envelope:
        raise ValueError("empty envelope")
    mid = uuid.UUID(peek_header(envelope)["message_id"]).bytes
    room = max_bytes - HEADER_BYTES
    count = -(-len(envelope) // room)
    if count > MAX_PARTS:
        raise ValueError(f"envelope needs {count} parts; at most {MAX_PARTS} allowed, raise max_bytes")
    digest = hashlib.sha256(envelope).digest()
    return [
        MAGIC + mid + i.to_bytes(4, "big") + count.to_bytes(4, "big") + digest + envelope[i * room : (i + 1) * room]
        for i in range(count)
    ]


def parse_part(data: bytes) -> Part:
    """Parse one part; OpenError if it is malformed."""
    try:
        data = bytes(data)
        if len(data) <= HEADER_BYTES or data[:4] != MAGIC:
            raise ValueError("not a part")
        index = int.from_bytes(data[20:24], "big")
        count = int.from_bytes(data[24:28], "big")
        if not 1 <= count <= MAX_PARTS or index >= count:
            raise ValueError("index/count")
        return Part(message_id=data[4:20], index=index, count=count, digest=data[28:60], data=data[60:])
    except Exception:
        pass
    raise OpenError()


def is_part(data: bytes) -> bool:
    """True when `data` starts with the part magic (routing: part or whole envelope)."""
    return bytes(data[:4]) == MAGIC


@dataclass
class _PartialSet:
    count: int
    created_ns: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Collects parts and returns whole envelopes, in bounded memory.

    Sets are keyed by (message id, SHA-256 of the whole, count), so a foreign part can only start a set of
    its own. A forged part that copies a genuine set's key can make that set fail (it is then dropped and
    OpenError raised); it can never make it yield a wrong envelope. A set older than `ttl_ns` is dropped; when the buffered
    bytes would exceed `max_buffered_bytes` or the number of sets `max_sets`, the oldest sets are dropped
    first. `dropped` counts discarded sets.
    """

    def __init__(
        self,
        *,
        max_buffered_bytes: int = 256 * 1024 * 1024,
        max_sets: int = 1024,
        ttl_ns: int = 10 * 60 * 10**9,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        clock: Clock = system_clock,
    ) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self.max_sets = max_sets
        self.ttl_ns = ttl_ns
        self.max_envelope_bytes = max_envelope_bytes
        self.clock = clock
        self._sets: OrderedDict[tuple[bytes, bytes, int], _PartialSet] = OrderedDict()
        self._buffered = 0
        self.dropped = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in incomplete sets."""
        return self._buffered

    @property
    def pending(self) -> int:
        """Number of incomplete sets."""
        return len(self._sets)

    def expire(self) -> int:
        """Drop sets older than the TTL; returns how many."""
        now = self.clock()
        stale = [k for k, s in self._sets.items() if now - s.created_ns > self.ttl_ns]
        for key in stale:
            self._drop(key)
        return len(stale)

    def _drop(self, key: tuple[bytes, bytes, int]) -> None:
        s = self._sets.pop(key)
        self._buffered -= s.size
        self.dropped += 1

    def feed(self, data: bytes) -> bytes | None:
        """Add one part. Returns the whole envelope when this part completes a set whose SHA-256 and message
        id check out, else None. OpenError for a malformed part, a part that contradicts one already held,
        or a completed set that fails its checks (that set is discarded)."""
        part = parse_part(data)
        self.expire()
        key = (part.message_id, part.digest, part.count)
        if part.count == 1:
            return self._finish(part.message_id, part.digest, part.data)
        s = self._sets.get(key)
        if s is None:
            s = _PartialSet(count=part.count, created_ns=self.clock())
            self._sets[key] = s
        held = s.parts.get(part.index)
        if held is not None:
            if hmac.compare_digest(held, part.data):
                return None  # a redelivered duplicate
            raise OpenError()
        if s.size + len(part.data) > self.max_envelope_bytes:
            self._drop(key)
            raise OpenError()
        s.parts[part.index] = part.data
        s.size += len(part.data)
        self._buffered += len(part.data)
        if len(s.parts) == s.count:
            self._sets.pop(key)
            self._buffered -= s.size
            return self._finish(part.message_id, part.digest, b"".join(s.parts[i] for i in range(s.count)))
        self._evict(keep=key)
        return None

    def _evict(self, keep: tuple[bytes, bytes, int]) -> None:
        # Oldest first; the set just fed goes last, and only if it alone exceeds the byte budget.
        for key in list(self._sets):
            if self._buffered <= self.max_buffered_bytes and len(self._sets) <= self.max_sets:
                return
            if key != keep:
                self._drop(key)
        if self._buffered > self.max_buffered_bytes and keep in self._sets:
            self._drop(keep)

    def _finish(self, message_id: bytes, digest: bytes, envelope: bytes) -> bytes:
        if len(envelope) > self.max_envelope_bytes or not hmac.compare_digest(
            hashlib.sha256(envelope).digest(), digest
        ):
            raise OpenError()
        if uuid.UUID(peek_header(envelope)["message_id"]).bytes != message_id:
            raise OpenError()
        return envelope
