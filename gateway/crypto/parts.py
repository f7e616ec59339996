"""Envelope parts, for brokers with a message size limit (AWS IoT Core: 128 KB; EMQX default: 1 MB).

    part i:  "MSP2" | message id (16 bytes) | u32 BE index | u32 BE count | data
    part 0's data:  u32 BE M | manifest (M bytes) | manifest signature (64) | chunk 0
    others' data:   chunk i

    manifest: "MSPM" | message id (16) | u32 count | u64 envelope length | gateway key id (16)
              | SHA-256(envelope) (32) | SHA-256(chunk 0) | … | SHA-256(chunk count−1)

The gateway signs the manifest with its device key (`"medshield/v2/parts-manifest" ‖ manifest`), so a
receiver that pins the gateway's card authenticates each part as it arrives: part 0 by its signature, every
other part by its digest in the manifest. Parts that arrive before their manifest are *candidates*: a few
per index are kept, and the manifest picks the genuine one. So a forged part can neither complete a set nor
displace a genuine part, and a forged manifest is refused on arrival. The joined envelope is then checked
against the manifest's digest and by its own signature.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from gateway.crypto.envelope import peek_header
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.errors import OpenError

MAGIC = b"MSP2"
MANIFEST_MAGIC = b"MSPM"
HEADER_BYTES = 4 + 16 + 4 + 4
MAX_PARTS = 1 << 16
SIGNATURE_BYTES = 64
MANIFEST_LABEL = b"medshield/v2/parts-manifest"
_MANIFEST_FIXED = 4 + 16 + 4 + 8 + 16 + 32
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Part:
    """One parsed part (not yet authenticated)."""

    message_id: bytes
    index: int
    count: int
    data: bytes = field(repr=False)

    @property
    def digest(self) -> bytes:
        """SHA-256 of the part's chunk (for part 0: of the chunk after the manifest)."""
        return hashlib.sha256(self.chunk).digest()

    @property
    def chunk(self) -> bytes:
        if self.index != 0:
            return self.data
        (m,) = _U32.unpack_from(self.data, 0)
        return self.data[4 + m + SIGNATURE_BYTES :]


@dataclass(frozen=True)
class Manifest:
    """A verified manifest: which chunks make the envelope, and who signed it."""

    message_id: bytes
    count: int
    length: int
    gateway_key_id: str
    envelope_sha256: bytes
    chunk_sha256: tuple[bytes, ...]


def _manifest_bytes(mid: bytes, length: int, key_id: str, digest: bytes, chunks: list[bytes]) -> bytes:
    return b"".join(
        (
            MANIFEST_MAGIC,
            mid,
            _U32.pack(len(chunks)),
            length.to_bytes(8, "big"),
            bytes.fromhex(key_id),
            digest,
            *(hashlib.sha256(c).digest() for c in chunks),
        )
    )


def split(envelope: bytes, max_bytes: int, signer: GatewayKey) -> list[bytes]:
    """Cut `envelope` into parts of at most `max_bytes` each, part 0 carrying the manifest signed by `signer`.

    An envelope that fits is still wrapped (count 1) when split is called. ValueError if `max_bytes` leaves
    no room for data or for the manifest (32 bytes per part, all in part 0: at 128 KB per part, about 4000
    parts or 500 MB), or the envelope would need more than 65536 parts.
    """
    envelope = bytes(envelope)
    if not envelope:
        raise ValueError("empty envelope")
    mid = bytes.fromhex(peek_header(envelope)["message_id"].replace("-", ""))
    room = max_bytes - HEADER_BYTES
    if room < 1:
        raise ValueError(f"max_bytes must exceed the {HEADER_BYTES}-byte part header")
    count = max(1, -(-len(envelope) // room))
    while True:
        if count > MAX_PARTS:
            raise ValueError(f"envelope needs more than {MAX_PARTS} parts; raise max_bytes")
        first_room = room - 4 - _MANIFEST_FIXED - 32 * count - SIGNATURE_BYTES
        if first_room < 0:
            # Each further part adds 32 bytes to the manifest in part 0: more parts cannot help.
            raise ValueError(f"max_bytes {max_bytes} leaves no room in part 0 for a manifest of {count} parts")
        if first_room + (count - 1) * room >= len(envelope):
            break
        count += 1
    first_room = min(first_room, len(envelope))
    chunks = [envelope[:first_room]] + [
        envelope[first_room + i * room : first_room + (i + 1) * room] for i in range(count - 1)
    ]
    digest = hashlib.sha256(envelope).digest()
    manifest = _manifest_bytes(mid, len(envelope), signer.key_id, digest, chunks)
    signature = signer.sign(MANIFEST_LABEL + manifest)
    head = [MAGIC + mid + _U32.pack(i) + _U32.pack(count) for i in range(count)]
    parts = [head[0] + _U32.pack(len(manifest)) + manifest + signature + chunks[0]]
    parts += [head[i] + chunks[i] for i in range(1, count)]
    return parts


def parse_part(data: bytes) -> Part:
    """Parse one part; OpenError if it is malformed."""
    try:
        data = bytes(data)
        if len(data) < HEADER_BYTES or data[:4] != MAGIC:
            raise ValueError("not a part")
        index = int.from_bytes(data[20:24], "big")
        count = int.from_bytes(data[24:28], "big")
        if not 1 <= count <= MAX_PARTS or index >= count:
            raise ValueError("index/count")
        payload = data[HEADER_BYTES:]
        if index == 0:
            (m,) = _U32.unpack_from(payload, 0)
            if m != _MANIFEST_FIXED + 32 * count or len(payload) < 4 + m + SIGNATURE_BYTES:
                raise ValueError("manifest length")
        elif not payload:
            raise ValueError("empty part")
        return Part(message_id=data[4:20], index=index, count=count, data=payload)
    except Exception:
        pass
    raise OpenError()


def verify_manifest(part: Part, gateways: TrustedGateways) -> Manifest:
    """The manifest in part 0, if its signature verifies under a pinned gateway card; else OpenError."""
    try:
        if part.index != 0:
            raise ValueError("not part 0")
        (m,) = _U32.unpack_from(part.data, 0)
        raw = part.data[4 : 4 + m]
        signature = part.data[4 + m : 4 + m + SIGNATURE_BYTES]
        if raw[:4] != MANIFEST_MAGIC or raw[4:20] != part.message_id:
            raise ValueError("manifest")
        count = _U32.unpack_from(raw, 20)[0]
        if count != part.count:
            raise ValueError("count")
        key_id = raw[32:48].hex()
        card = gateways.get(key_id)
        if card is None or not card.verify(MANIFEST_LABEL + raw, signature):
            raise ValueError("signature")
        chunks = tuple(raw[_MANIFEST_FIXED + 32 * i : _MANIFEST_FIXED + 32 * (i + 1)] for i in range(count))
        manifest = Manifest(
            message_id=part.message_id,
            count=count,
            length=int.from_bytes(raw[24:32], "big"),
            gateway_key_id=key_id,
            envelope_sha256=raw[48:80],
            chunk_sha256=chunks,
        )
        if hashlib.sha256(part.chunk).digest() != chunks[0]:
            raise ValueError("chunk 0")
        return manifest
    except Exception:
        pass
    raise OpenError()


def is_part(data: bytes) -> bool:
    """True when `data` starts with the part magic (routing: part or whole envelope)."""
    return bytes(data[:4]) == MAGIC
