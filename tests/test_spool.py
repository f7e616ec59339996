"""The spool: durable, de-duplicating, ordered, capped."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from pathlib import Path

from gateway.daemon.ids import MessageIds
from gateway.spool import Attempts, Spool


def test_message_id_is_a_deterministic_uuid_keyed_by_the_gateway_secret(tmp_path: Path) -> None:
    ids = MessageIds.load_or_create(tmp_path / "message-id.key")
    a = ids.for_message("medshield/scanners/a/images", b"pixels")
    assert a == MessageIds.load_or_create(tmp_path / "message-id.key").for_message(
        "medshield/scanners/a/images", b"pixels"
    )
    assert a != ids.for_message("medshield/scanners/b/images", b"pixels")
    assert a != ids.for_message("medshield/scanners/a/images", b"pixels!")
    parsed = uuid.UUID(a)
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert (tmp_path / "message-id.key").stat().st_mode & 0o777 == 0o600


def test_message_id_cannot_be_confirmed_from_a_candidate_image(tmp_path: Path) -> None:
    # Whoever holds the image and the topic computes every unkeyed candidate; none matches the real id, and
    # another gateway's secret gives another id.
    topic, image = "medshield/scanners/a/images", b"a candidate DICOM"
    real = MessageIds.load_or_create(tmp_path / "a.key").for_message(topic, image)
    other = MessageIds.load_or_create(tmp_path / "b.key").for_message(topic, image)
    assert real != other
    digest = hashlib.sha256(b"medshield/message-id/v1\0" + topic.encode() + b"\0" + hashlib.sha256(image).digest())
    assert uuid.UUID(real).bytes[:6] != digest.digest()[:6]


def test_commit_is_idempotent_per_message_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=10_000)
    assert spool.commit("m1", "protected", [("envelope", "t", b"abc")])
    assert not spool.commit("m1", "protected", [("envelope", "t", b"abc")])
    assert spool.is_processed("m1") and not spool.is_processed("m2")
    assert spool.depth == 1 and spool.size_bytes == 3


def test_rows_come_out_in_order_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=10_000)
    spool.commit("m1", "protected", [("part", "t", b"1a"), ("part", "t", b"1b")])
    spool.commit("m2", "quarantined", [("error", "e", b"{}")])
    spool.close()
    again = Spool(path, max_bytes=10_000)
    rows = again.head(10)
    assert [r.payload for r in rows] == [b"1a", b"1b", b"{}"]
    assert again.depth == 3 and again.size_bytes == 6
    again.delete([rows[0].seq])
    assert [r.payload for r in again.head(10)] == [b"1b", b"{}"]
    assert [r.payload for r in again.head(10, after_seq=rows[1].seq)] == [b"{}"]
    assert again.is_processed("m1")  # de-duplication memory outlives the rows


def test_wal_and_full_sync(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=10_000)
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (tmp_path / "s.db").stat().st_mode & 0o077 == 0


def test_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=1024)
    spool.commit("m1", "protected", [("envelope", "t", b"x" * 1000)])
    assert not spool.full()
    spool.commit("m2", "protected", [("envelope", "t", b"x" * 100)])
    assert spool.full()
    spool.delete([spool.head(1)[0].seq])
    assert not spool.full()


def test_attempts_are_counted_durably_and_cleared_on_commit(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=10_000)
    assert spool.start_attempt("m") == Attempts(1, 0)
    spool.close()
    spool = Spool(path, max_bytes=10_000)
    second = spool.start_attempt("m")
    assert second == Attempts(2, 0) and second.interrupted == 1  # the first start never finished
    assert spool.record_fault("m") == Attempts(2, 1)
    third = spool.start_attempt("m")
    assert third.interrupted == 1 and third.faults == 1
    spool.commit("m", "protected", [])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0


def test_an_older_spool_gains_the_fault_column(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE attempts (message_id TEXT PRIMARY KEY, count INTEGER NOT NULL)")
        db.execute("INSERT INTO attempts VALUES ('m', 2)")
    spool = Spool(path, max_bytes=10_000)
    assert spool.start_attempt("m") == Attempts(3, 0)


def test_database_wal_and_shm_files_are_0600_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "s.db", max_bytes=10_000)
        spool.commit("m1", "protected", [("envelope", "t", b"abc")])
        files = sorted(tmp_path.glob("s.db*"))
        assert {f.name for f in files} >= {"s.db", "s.db-wal", "s.db-shm"}
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
    finally:
        os.umask(old)


def test_full_when_the_disk_is_down_to_its_floor(tmp_path: Path) -> None:
    free = Spool(tmp_path / "a.db", max_bytes=10**12).free_bytes()
    assert not Spool(tmp_path / "b.db", max_bytes=10**12, min_free_bytes=free // 2).full()
    assert Spool(tmp_path / "c.db", max_bytes=10**12, min_free_bytes=free * 2).full()


def test_released_message_is_forgotten_and_queued_in_the_inbox(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=10_000)
    spool.commit("m", "quarantined", [("error", "e", b"{}")])
    spool.start_attempt("m")
    spool.inject("m", "medshield/scanners/a/images", b"image", 123)
    assert not spool.is_processed("m")
    assert spool.start_attempt("m") == Attempts(1, 0)
    [item] = spool.inbox()
    assert (item.topic, item.payload, item.received_ns) == ("medshield/scanners/a/images", b"image", 123)
    spool.take_from_inbox(item.seq)
    assert spool.inbox() == []
