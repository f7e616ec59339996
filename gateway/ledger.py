"""The integrity ledger (DESIGN §9): a signed hash chain of every envelope the gateway sealed.

Each entry records sequence, time, message id, the envelope's SHA-256, the cloud topic and the previous
entry's hash, and is signed with the gateway's Ed25519 key. Entries are stored in the spool database in the
same transaction as the envelope they describe (so neither exists without the other) and published,
through the spool, on `medshield/gateways/<device>/ledger`. `verify_chain` checks order, links, signatures
and, given envelopes, that each is recorded; any tampering is reported, not silently accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import ConfigError

GENESIS_HASH = "0" * 64
_FIELDS = ("seq", "time_ns", "device_id", "message_id", "envelope_sha256", "topic", "prev_hash")


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
        return json.dumps({k: getattr(self, k) for k in _FIELDS}, sort_keys=True, separators=(",", ":")).encode()

    def entry_hash(self) -> str:
        """What the next entry's `prev_hash` must be: SHA-256 of body ‖ signature (as written, base64url), so a
        malformed signature still chains and is reported by `verify_chain` rather than breaking it."""
        return hashlib.sha256(self.body() + self.signature.encode("ascii", "replace")).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LedgerEntry:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {*_FIELDS, "signature"}:
            raise ValueError("not a ledger entry")
        return cls(**data)


class LedgerKey:
    """The gateway's Ed25519 signing key (PEM, 0600). It signs ledger entries only; it opens nothing."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self._signer = eddsa.new(key, "rfc8032")

    @classmethod
    def load_or_create(cls, path: Path) -> LedgerKey:
        if path.exists():
            try:
                return cls(ECC.import_key(path.read_text()))
            except (ValueError, IndexError, TypeError):
                raise ConfigError(f"ledger key {path}: not an Ed25519 private key") from None
        key = ECC.generate(curve="Ed25519")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.export_key(format="PEM"))
        path.with_suffix(".pub").write_text(key.public_key().export_key(format="PEM"))
        return cls(key)

    def public_pem(self) -> str:
        return str(self._key.public_key().export_key(format="PEM"))

    def sign(self, entry: LedgerEntry) -> LedgerEntry:
        return replace(entry, signature=b64url_encode(self._signer.sign(entry.body())))


@dataclass(frozen=True)
class LedgerItem:
    """One sealed envelope to record."""

    message_id: str
    envelope_sha256: str
    topic: str


class LedgerWriter:
    """Builds the next signed entries; the spool calls it inside its commit transaction."""

    def __init__(self, key: LedgerKey, device_id: str, topic: str) -> None:
        self.key = key
        self.device_id = device_id
        self.topic = topic

    def entries(self, last_seq: int, last_hash: str, items: Sequence[LedgerItem], now_ns: int) -> list[LedgerEntry]:
        out = []
        for item in items:
            entry = self.key.sign(
                LedgerEntry(
                    last_seq + 1, now_ns, self.device_id, item.message_id, item.envelope_sha256, item.topic, last_hash
                )
            )
            out.append(entry)
            last_seq, last_hash = entry.seq, entry.entry_hash()
        return out


@dataclass
class LedgerReport:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    entries: Iterable[LedgerEntry], public_pem: str, envelopes: Sequence[bytes] = (), *, start_hash: str = GENESIS_HASH
) -> LedgerReport:
    """Check sequence, hash links and signatures; then that each of `envelopes` is recorded."""
    verifier = eddsa.new(ECC.import_key(public_pem), "rfc8032")
    report = LedgerReport()
    prev_hash, prev_seq = start_hash, None
    for entry in entries:
        report.entries += 1
        if prev_seq is not None and entry.seq != prev_seq + 1:
            report.problems.append(f"seq {entry.seq}: expected {prev_seq + 1} (entry missing or reordered)")
        if not hmac.compare_digest(entry.prev_hash, prev_hash):
            report.problems.append(f"seq {entry.seq}: previous-hash link broken")
        try:
            verifier.verify(entry.body(), b64url_decode(entry.signature))
        except ValueError:
            report.problems.append(f"seq {entry.seq}: bad signature")
        report.recorded.add(entry.envelope_sha256)
        prev_hash, prev_seq = entry.entry_hash(), entry.seq
    for envelope in envelopes:
        digest = hashlib.sha256(envelope).hexdigest()
        if digest not in report.recorded:
            report.problems.append(f"envelope {digest[:16]}…: not recorded in the ledger")
    return report


def read_jsonl(path: Path) -> list[LedgerEntry]:
    return [LedgerEntry.from_json(line) for line in path.read_text().splitlines() if line.strip()]
