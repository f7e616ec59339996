"""The QR sequence format: what each code carries, how a file is cut into codes and joined again.

Every code holds one *part*, written in the code's alphanumeric mode as base45 (RFC 9285) of

    offset size  field
    0      4     magic "MSQ1"
    4      1     kind: 1 envelope, 2 recipient-card, 3 recovery-key
    5      16    message id (an envelope's own message id; random for cards and keys)
    21     2     index, u16 big-endian, 0-based (people see index + 1: "code 3 of 12")
    23     2     count, u16 big-endian, 1..65535
    25     32    SHA-256 of the whole file
    57     ...   data: bytes [index * chunk, (index + 1) * chunk) of the file

Parts are joined only when all of them share kind, message id, count and digest; the joined bytes must hash
to the digest (compared in constant time), and an envelope's own header must name the same message id. A
QR code's Reed-Solomon check already rejects most misreads; the digest catches the rest. Everything here is
pure: no files, no images.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from gateway.errors import CodedError
from gateway.qr.base45 import b45decode, b45encode

MAGIC = b"MSQ1"
HEADER_BYTES = 4 + 1 + 16 + 2 + 2 + 32
MAX_COUNT = 0xFFFF

Kind = Literal["envelope", "recipient-card", "recovery-key"]
KINDS: tuple[Kind, ...] = ("envelope", "recipient-card", "recovery-key")
_KIND_CODE: dict[Kind, int] = {"envelope": 1, "recipient-card": 2, "recovery-key": 3}
_CODE_KIND: dict[int, Kind] = {v: k for k, v in _KIND_CODE.items()}
# Kinds whose content opens something: their codes and decoded files are written 0600.
SECRET_KINDS: frozenset[Kind] = frozenset({"recovery-key"})

Level = Literal["L", "M", "Q", "H"]
LEVELS: tuple[Level, ...] = ("L", "M", "Q", "H")
# Chosen from benchmarks/results/qr: see benchmarks/README.md (QR transport).
DEFAULT_LEVEL: Level = "Q"
DEFAULT_MAX_VERSION = 40
# A few sheets of paper, or a minute of a camera scanning a screen: past this, move the file over a network.
DEFAULT_MAX_CODES = 200
# Small files by nature: anything larger is not what these kinds are.
MAX_SMALL_BYTES = {"recipient-card": 64 * 1024, "recovery-key": 16 * 1024}
RECOVERY_KEY_FORMAT = "medshield-recovery-key"
RECOVERY_KEY_SUFFIXES = (".recovery", ".recovery-key", ".rkey")


class QRError(CodedError):
    """A QR sequence that cannot be made or joined; `reason` says which rule failed."""


class MissingCodesError(QRError):
    """Some codes of an otherwise consistent set were not found; `missing` lists them 1-based."""

    def __init__(self, missing: list[int], count: int) -> None:
        self.missing = missing
        self.count = count
        shown = ", ".join(str(i) for i in missing[:50]) + (" ..." if len(missing) > 50 else "")
        super().__init__(
            "qr_missing", f"missing {len(missing)} of {count} codes: code {shown} (numbered 1..{count} as printed)"
        )


# ---------------------------------------------------------------------------------------------------------
# Capacity


def _alnum_capacity_chars(version: int, level: Level) -> int:
    """Alphanumeric characters one code of this version and level holds (ISO/IEC 18004 tables, via qrcode)."""
    from qrcode import base, constants, util

    ec = getattr(constants, f"ERROR_CORRECT_{level}")
    bits = sum(b.data_count for b in base.rs_blocks(version, ec)) * 8
    # types-qrcode declares MODE_ALPHA_NUM a plain int, not the Literal its own functions take.
    room = bits - 4 - util.length_in_bits(util.MODE_ALPHA_NUM, version)  # type: ignore[arg-type]
    return room // 11 * 2 + (1 if room % 11 >= 6 else 0)


def capacity_bytes(version: int, level: Level) -> int:
    """File bytes one code of this version and level carries, after the part header."""
    chars = _alnum_capacity_chars(version, level)
    return chars // 3 * 2 + (1 if chars % 3 == 2 else 0) - HEADER_BYTES


@dataclass(frozen=True)
class Plan:
    """How a file of `size` bytes is cut: `count` codes of `version` at `level`, `chunk` bytes each (the last
    may be shorter)."""

    size: int
    level: Level
    version: int
    count: int
    chunk: int


def plan(size: int, level: Level = DEFAULT_LEVEL, *, max_version: int = DEFAULT_MAX_VERSION,
         max_codes: int = DEFAULT_MAX_CODES) -> Plan:
    """The fewest codes for `size` bytes at `level`, each of the smallest version that still gives that count.

    Fewer codes are fewer chances to lose one; a smaller version has larger modules at the same printed size,
    so it survives blur, low resolution and distance better. QRError (`qr_too_many`) past `max_codes`.
    """
    if level not in LEVELS:
        raise ValueError(f"error-correction level must be one of {', '.join(LEVELS)}")
    if not 1 <= max_version <= 40:
        raise ValueError("QR versions are 1..40")
    if size < 1:
        raise QRError("qr_empty", "nothing to encode: the input is empty")
    per_code = capacity_bytes(max_version, level)
    if per_code < 1:
        raise QRError("qr_too_small", f"a version {max_version} code at level {level} has no room after the header")
    count = math.ceil(size / per_code)
    limit = min(max_codes, MAX_COUNT)
    if count > limit:
        raise QRError(
            "qr_too_many",
            f"{size} bytes need {count} QR codes at level {level}, version {max_version} "
            f"({per_code} bytes per code); the limit is {limit} (--max-codes). QR codes are for cards, keys and "
            "small envelopes: move larger envelopes over a network or removable media",
        )
    chunk = math.ceil(size / count)
    version = next(v for v in range(1, max_version + 1) if capacity_bytes(v, level) >= chunk)
    return Plan(size=size, level=level, version=version, count=count, chunk=chunk)


# ---------------------------------------------------------------------------------------------------------
# Parts


@dataclass(frozen=True)
class Part:
    """One parsed code."""

    kind: Kind
    message_id: bytes
    index: int
    count: int
    digest: bytes
    data: bytes = field(repr=False)

    @property
    def set_key(self) -> tuple[str, bytes, int, bytes]:
        return (self.kind, self.message_id, self.count, self.digest)


def split(data: bytes, kind: Kind, message_id: bytes, p: Plan) -> list[str]:
    """The base45 text of each code, in index order."""
    if kind not in _KIND_CODE:
        raise ValueError(f"unknown kind {kind!r}")
    if len(message_id) != 16:
        raise ValueError("message id is 16 bytes")
    if len(data) != p.size:
        raise ValueError("plan is for another size")
    digest = hashlib.sha256(data).digest()
    head = MAGIC + bytes([_KIND_CODE[kind]]) + bytes(message_id)
    return [
        b45encode(
            head + i.to_bytes(2, "big") + p.count.to_bytes(2, "big") + digest + data[i * p.chunk : (i + 1) * p.chunk])
        for i in range(p.count)
    ]


def parse(text: str | bytes) -> Part | None:
    """Parse one code's text; None if it is not a MedShield part (another QR code in the same photo).

    QRError (`qr_malformed`) for a MedShield part whose header is inconsistent.
    """
    try:
        raw = b45decode(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if raw[:4] != MAGIC:
        return None
    if len(raw) <= HEADER_BYTES:
        raise QRError("qr_malformed", "a MedShield QR code is truncated")
    kind = _CODE_KIND.get(raw[4])
    index = int.from_bytes(raw[21:23], "big")
    count = int.from_bytes(raw[23:25], "big")
    if kind is None or count < 1 or index >= count:
        raise QRError("qr_malformed", "a MedShield QR code has an unknown kind or an index outside its count")
    return Part(kind=kind, message_id=raw[5:21], index=index, count=count, digest=raw[25:57], data=raw[57:])


def describe_set(kind: str, message_id: bytes) -> str:
    """How people see a set: its kind and the start of its message id (never content)."""
    return f"{kind} {message_id.hex()[:8]}"


@dataclass(frozen=True)
class Joined:
    """A complete, checked set."""

    kind: Kind
    message_id: bytes
    count: int
    data: bytes = field(repr=False)


def join(parts: Iterable[Part]) -> Joined:
    """Join the parts of one set, in any order, duplicates allowed.

    QRError: `qr_none` no parts; `qr_mixed` parts of more than one set; `qr_conflict` two different parts
    with one index; MissingCodesError (`qr_missing`) naming absent indices; `qr_digest` the joined bytes do
    not match the digest (or an envelope names another message id); `qr_content` the content is not a valid
    file of its kind.
    """
    sets: dict[tuple[str, bytes, int, bytes], dict[int, bytes]] = {}
    for part in parts:
        held = sets.setdefault(part.set_key, {})
        prior = held.get(part.index)
        if prior is None:
            held[part.index] = part.data
        elif not hmac.compare_digest(prior, part.data):
            raise QRError(
                "qr_conflict",
                f"two different codes claim to be code {part.index + 1} of {part.count} of "
                f"{describe_set(part.kind, part.message_id)}",
            )
    if not sets:
        raise QRError("qr_none", "no MedShield QR code found")
    if len(sets) > 1:
        listed = "; ".join(
            f"{describe_set(k[0], k[1])}: {len(v)} of {k[2]} codes"
            for k, v in sorted(sets.items(), key=lambda kv: kv[0][1])
        )
        raise QRError("qr_mixed",
                      f"the codes belong to {len(sets)} different sets ({listed}); decode each set on its own")
    (kind, message_id, count, digest), held = next(iter(sets.items()))
    missing = [i + 1 for i in range(count) if i not in held]
    if missing:
        raise MissingCodesError(missing, count)
    data = b"".join(held[i] for i in range(count))
    if not hmac.compare_digest(hashlib.sha256(data).digest(), digest):
        raise QRError("qr_digest", "the joined codes do not match their digest: a code was misread or altered")
    check_content(data, kind, message_id)  # type: ignore[arg-type]
    return Joined(kind=kind, message_id=message_id, count=count, data=data)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Kinds


def _json_format(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    return fmt if isinstance(fmt, str) else None


def envelope_message_id(data: bytes) -> bytes:
    """The message id an envelope's (unauthenticated) header names; QRError if it is not an envelope."""
    from gateway.crypto.envelope import peek_header
    from gateway.errors import OpenError

    try:
        return uuid.UUID(peek_header(data)["message_id"]).bytes
    except (OpenError, KeyError, ValueError, TypeError):
        raise QRError("qr_content", "not a MedShield envelope (no valid envelope header)") from None


def check_content(data: bytes, kind: Kind, message_id: bytes | None = None) -> None:
    """Refuse content that is not a file of `kind` (QRError `qr_content`), or an envelope whose header names
    another message id than its codes (`qr_digest`)."""
    if kind == "envelope":
        if message_id is not None and not hmac.compare_digest(envelope_message_id(data), message_id):
            raise QRError("qr_digest", "the envelope inside the codes names another message id than its codes")
        envelope_message_id(data)
    elif kind == "recipient-card":
        from gateway.crypto.recipients import RecipientCard
        from gateway.errors import ConfigError

        try:
            RecipientCard.from_json(data)
        except ConfigError as exc:
            raise QRError("qr_content", str(exc)) from None
    if kind in MAX_SMALL_BYTES and len(data) > MAX_SMALL_BYTES[kind]:
        raise QRError("qr_content", f"a {kind} is at most {MAX_SMALL_BYTES[kind]} bytes; this is {len(data)}")


def detect_kind(data: bytes, name: str = "") -> Kind:
    """What a file is, from its content (and, for the opaque recovery key, its name).

    Envelopes start with the envelope magic (`gateway.crypto.envelope.MAGIC`); cards are JSON documents of format
    medshield-recipient-card; a recovery key is a JSON document of format medshield-recovery-key or any small file
    named *.recovery, *.recovery-key or *.rkey.
    QRError (`qr_kind`) for anything else, private keys included: those never leave their file.
    """
    from gateway.crypto.envelope import MAGIC

    if data[:4] == MAGIC:
        return "envelope"
    fmt = _json_format(data)
    if fmt == "medshield-recipient-card":
        return "recipient-card"
    if fmt == RECOVERY_KEY_FORMAT or name.lower().endswith(RECOVERY_KEY_SUFFIXES):
        return "recovery-key"
    if fmt == "medshield-private-key":
        raise QRError("qr_kind", "this is a private key: it is not carried as QR codes (print a recovery key instead)")
    raise QRError(
        "qr_kind", "cannot tell what this file is (not an envelope, recipient card or recovery key): give --kind"
    )
