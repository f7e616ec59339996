"""The durable outbox between protection and the cloud: SQLite in WAL mode with synchronous=FULL.

A message is *committed* when its outbox rows (envelope parts, error events) and its `processed` record are
written in one transaction; only then is the inbound message acknowledged. The `processed` table is keyed by
the deterministic message id (`gateway.daemon.ids`), so a redelivered inbound message is recognised and not protected twice. The
publisher reads rows in `seq` order and deletes each only after the cloud broker's PUBACK.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.ledger import LedgerItem, LedgerWriter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS processed (
    message_id   TEXT PRIMARY KEY,
    outcome      TEXT    NOT NULL,
    committed_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS processed_time ON processed (committed_ns);
CREATE TABLE IF NOT EXISTS ledger (
    seq   INTEGER PRIMARY KEY,
    hash  TEXT NOT NULL,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    message_id TEXT PRIMARY KEY,
    count      INTEGER NOT NULL
);
"""

PROCESSED_RETENTION_NS = 30 * 24 * 3600 * 10**9
PRUNE_INTERVAL_NS = 3600 * 10**9
"""How long a processed message id is remembered for de-duplication (brokers redeliver within a session)."""


@dataclass(frozen=True)
class OutRow:
    """One row waiting for the cloud."""

    seq: int
    message_id: str
    kind: str
    topic: str
    payload: bytes


class Spool:
    """A thread-safe durable outbox. One connection, serialised by a lock (writes are short)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._rows, self._bytes = int(row[0]), int(row[1])
        self._next_prune_ns = 0

    # -- intake side -------------------------------------------------------------------------------------
    def is_processed(self, message_id: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM processed WHERE message_id = ?", (message_id,)).fetchone() is not None
            )

    def record_attempt(self, message_id: str) -> int:
        """Count one processing attempt (so a message that crashes the process is noticed); returns the count."""
        with self._lock:
            # synchronous=NORMAL for this write only: in WAL mode it survives a process crash (what the count
            # is for: a message that kills the daemon) and saves one fsync per message; only a power loss
            # could forget an attempt, which costs at most one extra try.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                count = self._db.execute(
                    "INSERT INTO attempts (message_id, count) VALUES (?, 1) "
                    "ON CONFLICT(message_id) DO UPDATE SET count = count + 1 RETURNING count",
                    (message_id,),
                ).fetchone()[0]
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            return int(count)

    def commit(
        self,
        message_id: str,
        outcome: str,
        rows: Sequence[tuple[str, str, bytes]],
        ledger: tuple[LedgerWriter, Sequence[LedgerItem]] | None = None,
    ) -> bool:
        """Atomically record `message_id` as processed and queue `rows` (kind, topic, payload).

        Returns False (and writes nothing) when the id was already processed: the duplicate is ignored.
        With `ledger`, signed ledger entries for the items are chained on and queued in the same transaction.
        """
        now = time.time_ns()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO processed (message_id, outcome, committed_ns) VALUES (?, ?, ?)",
                        (message_id, outcome, now),
                    )
                except sqlite3.IntegrityError:
                    self._db.execute("ROLLBACK")
                    return False
                rows = list(rows)
                if ledger is not None:
                    rows += self._chain(ledger[0], ledger[1], now)
                self._db.executemany(
                    "INSERT INTO outbox (message_id, kind, topic, payload, created_ns) VALUES (?, ?, ?, ?, ?)",
                    [(message_id, kind, topic, payload, now) for kind, topic, payload in rows],
                )
                self._db.execute("DELETE FROM attempts WHERE message_id = ?", (message_id,))
                if now >= self._next_prune_ns:  # ids are kept 30 days; forgetting old ones hourly is enough
                    self._db.execute("DELETE FROM processed WHERE committed_ns < ?", (now - PROCESSED_RETENTION_NS,))
                    self._next_prune_ns = now + PRUNE_INTERVAL_NS
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._rows += len(rows)
            self._bytes += sum(len(p) for _, _, p in rows)
            return True

    def _chain(self, writer: LedgerWriter, items: Sequence[LedgerItem], now: int) -> list[tuple[str, str, bytes]]:
        from gateway.ledger import GENESIS_HASH

        last = self._db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        entries = writer.entries(int(last[0]) if last else 0, str(last[1]) if last else GENESIS_HASH, items, now)
        self._db.executemany(
            "INSERT INTO ledger (seq, hash, entry) VALUES (?, ?, ?)",
            [(e.seq, e.entry_hash(), e.to_json()) for e in entries],
        )
        return [("ledger", writer.topic, e.to_json().encode()) for e in entries]

    def ledger_lines(self) -> list[str]:
        """Every ledger entry (JSON), in sequence order."""
        with self._lock:
            return [str(r[0]) for r in self._db.execute("SELECT entry FROM ledger ORDER BY seq")]

    # -- publisher side ----------------------------------------------------------------------------------
    def head(self, limit: int, after_seq: int = 0) -> list[OutRow]:
        """Up to `limit` rows with seq > after_seq, oldest first."""
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, message_id, kind, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [OutRow(int(s), m, k, t, bytes(p)) for s, m, k, t, p in cur.fetchall()]

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove rows the cloud acknowledged, in one transaction.

        Written with synchronous=NORMAL: a delete lost to a power cut only re-sends rows the cloud already
        has, which receivers de-duplicate by message id; it saves an fsync per published row.
        """
        if not seqs:
            return
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed_rows = removed_bytes = 0
                for seq in seqs:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE seq = ? RETURNING LENGTH(payload)", (seq,)
                    ).fetchone()
                    if row is not None:
                        removed_rows += 1
                        removed_bytes += int(row[0])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._rows -= removed_rows
            self._bytes -= removed_bytes

    # -- state -------------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._rows

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
