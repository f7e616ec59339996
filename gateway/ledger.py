"""The integrity ledger (DESIGN §9): a signed hash chain of every envelope the gateway sealed, with signed
checkpoints that prove it complete.

Each entry records sequence, time, message id, the envelope's SHA-256, the cloud topic and the previous
entry's hash, and is signed with the gateway's device key (`gateway.crypto.origin`, the key that signs its
envelopes). Entries are stored in the spool database in the same transaction as the envelope they describe
(so neither exists without the other) and published, through the spool, on
`medshield/gateways/<device>/ledger`. A *checkpoint* (count and head hash, signed) is published at regular
intervals and on shutdown, on `medshield/gateways/<device>/ledger/checkpoints`, and `medshield ledger export`
ends with a fresh one. `verify_ledger` checks order, links, signatures, every checkpoint and, given envelopes,
that each is recorded; tampering, deletion, reordering, a dropped tail, an empty ledger and a fork are each
reported with the entry they concern.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway import topics
from gateway.crypto.origin import GatewayKey, verify_signature
from gateway.encoding import b64url_decode, b64url_encode

GENESIS_HASH = "0" * 64
CHECKPOINT_LABEL = b"medshield/v2/ledger-checkpoint"
_FIELDS = ("seq", "time_ns", "device_id", "message_id", "envelope_sha256", "topic", "prev_hash")
_CHECKPOINT_FIELDS = ("device_id", "count", "head_hash", "time_ns")


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _signature_ok(public_key: bytes, message: bytes, signature: str) -> bool:
    try:
        raw = b64url_decode(signature)
    except (ValueError, TypeError):
        return False
    return verify_signature(public_key, message, raw)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    time_ns: int
    device_id: str
    message_id: str
    envelope_sha256: str
    topic: str
    prev_hash: str
    signature: str = ""

    def body(self) -> bytes:
        """The signed bytes: canonical JSON (sorted keys, no spaces) of every field but the signature."""
        return _canonical({k: getattr(self, k) for k in _FIELDS})

    def entry_hash(self) -> str:
        """What the next entry's `prev_hash` must be: SHA-256 of body ‖ signature (as written, base64url), so a
        malformed signature still chains and is reported by `verify_ledger` rather than breaking it."""
        return hashlib.sha256(self.body() + self.signature.encode("ascii", "replace")).hexdigest()

    def verify(self, public_key: bytes) -> bool:
        return _signature_ok(public_key, self.body(), self.signature)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LedgerEntry:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {*_FIELDS, "signature"}:
            raise ValueError("not a ledger entry")
        entry = cls(**data)
        if type(entry.seq) is not int or entry.seq < 1 or not isinstance(entry.signature, str):
            raise ValueError("not a ledger entry")
        return entry


@dataclass(frozen=True)
class Checkpoint:
    """The gateway's signed statement that its ledger holds `count` entries ending in `head_hash`."""

    device_id: str
    count: int
    head_hash: str
    time_ns: int
    signature: str = ""

    def body(self) -> bytes:
        return CHECKPOINT_LABEL + _canonical({k: getattr(self, k) for k in _CHECKPOINT_FIELDS})

    def verify(self, public_key: bytes) -> bool:
        return _signature_ok(public_key, self.body(), self.signature)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {*_CHECKPOINT_FIELDS, "signature"}:
            raise ValueError("not a ledger checkpoint")
        cp = cls(**data)
        if type(cp.count) is not int or cp.count < 0 or not isinstance(cp.signature, str):
            raise ValueError("not a ledger checkpoint")
        return cp


@dataclass(frozen=True)
class LedgerItem:
    """One sealed envelope to record."""

    message_id: str
    envelope_sha256: str
    topic: str


class LedgerWriter:
    """Builds the next signed entries (the spool calls it inside its commit transaction) and checkpoints."""

    def __init__(self, key: GatewayKey, topic: str) -> None:
        self.key = key
        self.device_id = key.device_id
        self.topic = topic
        self.checkpoint_topic = topics.checkpoints_of(topic)

    def sign(self, entry: LedgerEntry) -> LedgerEntry:
        return replace(entry, signature=b64url_encode(self.key.sign(entry.body())))

    def entries(self, last_seq: int, last_hash: str, items: Sequence[LedgerItem], now_ns: int) -> list[LedgerEntry]:
        out = []
        for item in items:
            entry = self.sign(
                LedgerEntry(
                    last_seq + 1, now_ns, self.device_id, item.message_id, item.envelope_sha256, item.topic, last_hash
                )
            )
            out.append(entry)
            last_seq, last_hash = entry.seq, entry.entry_hash()
        return out

    def checkpoint(self, count: int, head_hash: str, now_ns: int) -> Checkpoint:
        cp = Checkpoint(self.device_id, count, head_hash, now_ns)
        return replace(cp, signature=b64url_encode(self.key.sign(cp.body())))


@dataclass
class LedgerReport:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_ledger(
    entries: Iterable[LedgerEntry],
    public_key: bytes,
    checkpoints: Sequence[Checkpoint] = (),
    envelopes: Sequence[bytes] = (),
    *,
    require_checkpoint: bool = True,
) -> LedgerReport:
    """Check a ledger as given (order, links, signatures), then that it matches every checkpoint, then that each
    of `envelopes` is recorded. Each problem names the entry (sequence number) it concerns.

    Without a valid checkpoint a ledger cannot be shown complete (an empty file, or a dropped tail, would look
    fine), so that is a problem too unless `require_checkpoint` is False.
    """
    report = LedgerReport()
    prev_hash, prev_seq = GENESIS_HASH, 0
    by_seq: dict[int, LedgerEntry] = {}
    for entry in entries:
        report.entries += 1
        seq = entry.seq
        held = by_seq.get(seq)
        if held is not None:
            if held != entry:
                report.problems.append(f"seq {seq}: two different entries with this sequence number (fork)")
            else:
                report.problems.append(f"seq {seq}: duplicated")
            continue
        if not entry.verify(public_key):
            report.problems.append(f"seq {seq}: bad signature (entry altered or not signed by this gateway)")
        if seq < prev_seq:
            report.problems.append(f"seq {seq}: out of order (after seq {prev_seq})")
        elif seq > prev_seq + 1:
            report.problems.append(f"seq {seq}: entries {_span(prev_seq + 1, seq - 1)} missing (deleted)")
        elif not hmac.compare_digest(entry.prev_hash, prev_hash):
            report.problems.append(f"seq {seq}: previous-hash link broken (entry {seq - 1} altered or replaced)")
        by_seq[seq] = entry
        report.recorded.add(entry.envelope_sha256)
        if seq > prev_seq:
            prev_hash, prev_seq = entry.entry_hash(), seq
    valid = [cp for cp in checkpoints if cp.verify(public_key)]
    for cp in checkpoints:
        if cp not in valid:
            report.problems.append(f"checkpoint of {cp.count} entries: bad signature")
    report.checkpoints = len(valid)
    heads: dict[int, str] = {}
    for cp in valid:
        if cp.count in heads and heads[cp.count] != cp.head_hash:
            report.problems.append(f"seq {cp.count}: two checkpoints name different heads (fork)")
        heads[cp.count] = cp.head_hash
        if cp.count == 0:
            if cp.head_hash != GENESIS_HASH:
                report.problems.append("checkpoint of 0 entries: head is not the genesis hash")
            continue
        at = by_seq.get(cp.count)
        if at is None:
            continue  # reported below as a dropped tail or a deletion
        if not hmac.compare_digest(at.entry_hash(), cp.head_hash):
            report.problems.append(f"seq {cp.count}: differs from the signed checkpoint's head (fork)")
    latest = max((cp.count for cp in valid), default=None)
    if latest is None:
        if require_checkpoint:
            what = "empty ledger" if report.entries == 0 else f"{report.entries} entries"
            report.problems.append(f"{what} and no valid signed checkpoint: completeness cannot be shown")
    elif latest > prev_seq:
        if prev_seq == 0:
            report.problems.append(f"empty ledger: the latest checkpoint says {latest} entries (1..{latest} missing)")
        else:
            report.problems.append(
                f"seq {_span(prev_seq + 1, latest)}: missing after the last entry (tail dropped; checkpoint says"
                f" {latest})"
            )
    for envelope in envelopes:
        digest = hashlib.sha256(envelope).hexdigest()
        if digest not in report.recorded:
            report.problems.append(f"envelope {digest[:16]}…: not recorded in the ledger")
    return report


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def parse_line(line: str | bytes) -> LedgerEntry | Checkpoint:
    """One JSON line of a ledger file: an entry or a checkpoint (ValueError otherwise)."""
    data = json.loads(line)
    if isinstance(data, dict) and "count" in data:
        return Checkpoint.from_json(line)
    return LedgerEntry.from_json(line)


def read_ledger(path: Path) -> tuple[list[LedgerEntry], list[Checkpoint]]:
    """Entries (file order) and checkpoints of a ledger file (JSON lines, as exported or collected)."""
    entries: list[LedgerEntry] = []
    checkpoints: list[Checkpoint] = []
    for line in path.read_text().splitlines():
        if line.strip():
            item = parse_line(line)
            (checkpoints if isinstance(item, Checkpoint) else entries).append(item)  # type: ignore[arg-type]
    return entries, checkpoints


def read_jsonl(path: Path) -> list[LedgerEntry]:
    """The entries of a ledger file (checkpoints skipped)."""
    return read_ledger(path)[0]
