"""The durable outbox between protection and the cloud: SQLite in WAL mode with synchronous=FULL.

A message is *committed* when its outbox rows (envelope parts, error events) and its `processed` record are
written in one transaction; only then is the inbound message acknowledged. The `processed` table is keyed by
the deterministic message id (`gateway.daemon.ids`), so a redelivered inbound message is recognised and not
protected twice. The publisher reads rows in `seq` order and deletes each only after the cloud broker's PUBACK.

Disk space: the spool counts as full when its rows reach `max_bytes` or when the state disk has less than
`min_free_bytes` left, whichever comes first, so a small disk pauses intake cleanly instead of filling up.
A reserve file (`<spool>.reserve`) is kept beside the database: deleting rows needs a little space itself,
and if the disk still fills up (another writer), the reserve is given back so the publisher can go on
deleting what the cloud acknowledged. The database, its WAL and its shared-memory file are all 0600.
"""

from __future__ import annotations

import errno
import os
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
CREATE TABLE IF NOT EXISTS inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    received_ns INTEGER NOT NULL
);
"""
# `attempts.count` counts starts; `faults` (added to older spools on open) counts starts that ended in an
# unexpected error. A start that is neither a fault nor committed was interrupted (the process died).
_MIGRATIONS = ("ALTER TABLE attempts ADD COLUMN faults INTEGER NOT NULL DEFAULT 0",)
RESERVE_BYTES = 8 * 1024 * 1024
WAL_LIMIT_BYTES = 16 * 1024 * 1024

PROCESSED_RETENTION_NS = 30 * 24 * 3600 * 10**9
PRUNE_INTERVAL_NS = 3600 * 10**9
"""How long a processed message id is remembered for de-duplication (brokers redeliver within a session)."""


@dataclass(frozen=True)
class Attempts:
    """How often one message was started, and how many of those starts ended in a processing fault."""

    started: int
    faults: int

    @property
    def interrupted(self) -> int:
        """Starts before the current one that neither committed nor failed: the process died meanwhile."""
        return max(0, self.started - 1 - self.faults)


@dataclass(frozen=True)
class Injected:
    """A message put back into the spool's inbox (`medshield quarantine release`)."""

    seq: int
    topic: str
    payload: bytes
    received_ns: int


class SpoolFull(OSError):
    """The state disk has no room for the spool (raised when opening it)."""


def free_bytes(path: Path) -> int:
    """Bytes available to this process on the file system holding `path`."""
    st = os.statvfs(path)
    return int(st.f_bavail * st.f_frsize)


def _is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    )


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

    def __init__(self, path: Path, max_bytes: int, min_free_bytes: int = 0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._reserve = path.with_name(path.name + ".reserve")
        self._lock = threading.Lock()
        try:
            # Created 0600 before SQLite opens it: SQLite gives the WAL and shared-memory files the database
            # file's mode, whatever the umask.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Without a limit a WAL that once held a burst of large images keeps that size on disk.
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._db.executescript(_SCHEMA)
            self._migrate()
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        except (sqlite3.OperationalError, OSError) as exc:
            if _is_disk_full(exc):
                raise SpoolFull(errno.ENOSPC, f"no space left for the spool ({free_bytes(path.parent)} bytes free)",
                                str(path)) from None
            raise
        self._rows, self._bytes = int(row[0]), int(row[1])
        self._next_prune_ns = 0
        self._last_checkpoint: tuple[int, str] | None = None
        self._ensure_reserve()

    def _migrate(self) -> None:
        columns = {str(r[1]) for r in self._db.execute("PRAGMA table_info(attempts)")}
        if "faults" not in columns:
            self._db.execute(_MIGRATIONS[0])

    def _ensure_reserve(self) -> None:
        """Keep `RESERVE_BYTES` on disk for deletes, when there is room to spare for it."""
        if self._reserve.exists():
            return
        try:
            if free_bytes(self.path.parent) < 4 * RESERVE_BYTES:
                return
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        return True

    # -- intake side -------------------------------------------------------------------------------------
    def is_processed(self, message_id: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM processed WHERE message_id = ?", (message_id,)).fetchone() is not None
            )

    def start_attempt(self, message_id: str) -> Attempts:
        """Count one start of processing `message_id` (so a message that kills the process is noticed)."""
        return self._count_attempt(
            message_id,
            "INSERT INTO attempts (message_id, count, faults) VALUES (?, 1, 0) "
            "ON CONFLICT(message_id) DO UPDATE SET count = count + 1 RETURNING count, faults",
        )

    def record_fault(self, message_id: str) -> Attempts:
        """Count one processing fault (an unexpected error) of the attempt under way."""
        return self._count_attempt(
            message_id,
            "INSERT INTO attempts (message_id, count, faults) VALUES (?, 1, 1) "
            "ON CONFLICT(message_id) DO UPDATE SET faults = faults + 1 RETURNING count, faults",
        )

    def _count_attempt(self, message_id: str, sql: str) -> Attempts:
        with self._lock:
            # synchronous=NORMAL for this write only: in WAL mode it survives a process crash (what the count
            # is for: a message that kills the daemon) and saves one fsync per message; only a power loss
            # could forget an attempt, which costs at most one extra try.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                started, faults = self._db.execute(sql, (message_id,)).fetchone()
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            return Attempts(int(started), int(faults))

    # -- inbox (released quarantine items) ---------------------------------------------------------------
    def inject(self, message_id: str, topic: str, payload: bytes, received_ns: int) -> None:
        """Put a quarantined message back: forget its outcome and attempts, queue it in the inbox (one
        transaction), so the daemon processes it again as if it had just arrived."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM processed WHERE message_id = ?", (message_id,))
                self._db.execute("DELETE FROM attempts WHERE message_id = ?", (message_id,))
                self._db.execute(
                    "INSERT INTO inbox (topic, payload, received_ns) VALUES (?, ?, ?)", (topic, payload, received_ns)
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def inbox(self, limit: int = 1) -> list[Injected]:
        with self._lock:
            cur = self._db.execute("SELECT seq, topic, payload, received_ns FROM inbox ORDER BY seq LIMIT ?", (limit,))
            return [Injected(int(s), str(t), bytes(p), int(r)) for s, t, p, r in cur.fetchall()]

    def take_from_inbox(self, seq: int) -> None:
        """Remove an inbox row once its message was committed (a crash before this only redoes a duplicate)."""
        with self._lock:
            self._db.execute("DELETE FROM inbox WHERE seq = ?", (seq,))

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

    def ledger_head(self) -> tuple[int, str]:
        """(number of ledger entries, hash of the last one; the genesis hash when there are none)."""
        from gateway.ledger import GENESIS_HASH

        with self._lock:
            last = self._db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)

    def queue_checkpoint(self, writer: LedgerWriter) -> bool:
        """Queue a signed checkpoint of the ledger as it stands now, unless the last one queued by this spool
        says the same; returns whether one was queued."""
        count, head = self.ledger_head()
        if self._last_checkpoint == (count, head):
            return False
        now = time.time_ns()
        cp = writer.checkpoint(count, head, now).to_json().encode()
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (message_id, kind, topic, payload, created_ns) VALUES (?, ?, ?, ?, ?)",
                (f"checkpoint-{count}", "checkpoint", writer.checkpoint_topic, cp, now),
            )
            self._rows += 1
            self._bytes += len(cp)
        self._last_checkpoint = (count, head)
        return True

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
        try:
            self._delete(seqs)
        except sqlite3.OperationalError as exc:
            # Deleting needs room itself: give the reserve back and try once more (raises if still full).
            if not _is_disk_full(exc) or not self._release_reserve():
                raise
            self._delete(seqs)
        self._ensure_reserve()

    def _delete(self, seqs: Sequence[int]) -> None:
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

    def free_bytes(self) -> int:
        """Bytes the spool can still grow by: free on the state disk, plus pages freed inside the database
        by deleted rows (SQLite reuses them; the file does not shrink)."""
        with self._lock:
            pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
            page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        return free_bytes(self.path.parent) + pages * page_size

    def full(self) -> bool:
        """No more commits for now: the rows reached `max_bytes`, or the disk is down to `min_free_bytes`."""
        return self._bytes >= self.max_bytes or (self.min_free_bytes > 0 and self.free_bytes() < self.min_free_bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()
