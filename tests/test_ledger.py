"""The signed envelope ledger: chained in the spool with the envelope, checkpointed, verifiable.

Attacks that `ledger verify` accepted before checkpoints: a dropped tail, an empty ledger, a fork by the key
holder. Each is now reported with the entry it concerns.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import pytest

from gateway.cli import ledger as ledger_cli
from gateway.crypto.origin import GatewayKey
from gateway.ledger import (
    GENESIS_HASH,
    Checkpoint,
    LedgerEntry,
    LedgerItem,
    LedgerWriter,
    read_ledger,
    verify_ledger,
)
from gateway.rng import SeededRandom
from gateway.spool import Spool

KEY = GatewayKey.generate("gw", SeededRandom(b"ledger-key"))
WRITER = LedgerWriter(KEY, "medshield/gateways/gw/ledger")


def _chain(n: int) -> list[LedgerEntry]:
    items = [LedgerItem(f"m{i}", hashlib.sha256(b"env-%d" % i).hexdigest(), "t") for i in range(n)]
    return WRITER.entries(0, GENESIS_HASH, items, 1_700_000_000_000_000_000)


def _cp(entries: list[LedgerEntry]) -> Checkpoint:
    return WRITER.checkpoint(len(entries), entries[-1].entry_hash() if entries else GENESIS_HASH, 1)


def _problems(entries: list[LedgerEntry], checkpoints: list[Checkpoint]) -> list[str]:
    return verify_ledger(entries, KEY.public_key, checkpoints).problems


def _spool_with_entries(tmp_path: Path, envelopes: list[bytes]) -> tuple[Spool, GatewayKey]:
    key = GatewayKey.load_or_create(tmp_path / "ledger.key", "gw")
    key.card.save(tmp_path / "gw.gateway-card")
    writer = LedgerWriter(key, "medshield/gateways/gw/ledger")
    spool = Spool(tmp_path / "spool.sqlite3", 1 << 30)
    for i, env in enumerate(envelopes):
        item = LedgerItem(f"m{i}", hashlib.sha256(env).hexdigest(), "medshield/gateways/gw/envelopes")
        assert spool.commit(f"m{i}", "protected", [("envelope", "t", env)], ledger=(writer, [item]))
    return spool, key


def test_entries_chain_in_the_spool_and_checkpoints_queue(tmp_path: Path) -> None:
    envelopes = [b"env-a", b"env-b", b"env-c"]
    spool, key = _spool_with_entries(tmp_path, envelopes)
    entries = [LedgerEntry.from_json(line) for line in spool.ledger_lines()]
    assert [e.seq for e in entries] == [1, 2, 3] and entries[1].prev_hash == entries[0].entry_hash()
    # Each ledger entry is queued for the cloud right after its envelope, in the same transaction.
    assert [r.kind for r in spool.head(10)] == ["envelope", "ledger"] * 3
    assert (tmp_path / "ledger.key").stat().st_mode & 0o077 == 0
    writer = LedgerWriter(key, "medshield/gateways/gw/ledger")
    assert spool.queue_checkpoint(writer) and not spool.queue_checkpoint(writer)  # nothing new: none queued
    row = spool.head(10)[-1]
    assert row.kind == "checkpoint" and row.topic == "medshield/gateways/gw/ledger/checkpoints"
    cp = Checkpoint.from_json(row.payload)
    assert cp.count == 3 and cp.head_hash == entries[-1].entry_hash()
    report = verify_ledger(entries, key.public_key, [cp], envelopes)
    assert report.ok and report.entries == 3 and report.checkpoints == 1


def test_clean_10000_entry_ledger_verifies() -> None:
    entries = _chain(10_000)
    report = verify_ledger(entries, KEY.public_key, [_cp(entries)])
    assert report.ok and report.entries == 10_000


def test_tampering_deletion_and_reordering_name_the_entry() -> None:
    entries = _chain(6)
    cp = [_cp(entries)]
    edited = list(entries)
    edited[2] = dataclasses.replace(entries[2], message_id="forged")
    assert any(p.startswith("seq 3: bad signature") for p in _problems(edited, cp))
    deleted = entries[:2] + entries[3:]
    assert any(p.startswith("seq 4: entries 3 missing") for p in _problems(deleted, cp))
    reordered = [entries[0], entries[2], entries[1]] + entries[3:]
    assert any(p.startswith("seq 2: out of order") for p in _problems(reordered, cp))
    garbled = list(entries)
    garbled[0] = dataclasses.replace(entries[0], signature="not base64url!")
    problems = _problems(garbled, cp)
    assert any(p.startswith("seq 1: bad signature") for p in problems)
    assert any(p.startswith("seq 2: previous-hash link broken") for p in problems)
    other = GatewayKey.generate("gw", SeededRandom(b"other"))
    assert not verify_ledger(entries, other.public_key, cp).ok


def test_dropped_tail_is_detected() -> None:
    entries = _chain(6)
    problems = _problems(entries[:4], [_cp(entries)])
    assert problems == ["seq 5..6: missing after the last entry (tail dropped; checkpoint says 6)"]


def test_empty_ledger_is_not_ok() -> None:
    entries = _chain(3)
    assert _problems([], [_cp(entries)]) == ["empty ledger: the latest checkpoint says 3 entries (1..3 missing)"]
    assert _problems([], []) == ["empty ledger and no valid signed checkpoint: completeness cannot be shown"]
    assert _problems([], [_cp([])]) == []  # a gateway that truly sealed nothing says so, signed


def test_fork_by_the_key_holder_is_detected() -> None:
    entries = _chain(5)
    # The key holder rewrites history from seq 3 on: a valid chain, validly signed, that differs.
    fork_items = [LedgerItem(f"x{i}", "cd" * 32, "t") for i in range(3)]
    forked = entries[:2] + WRITER.entries(2, entries[1].entry_hash(), fork_items, 2)
    assert verify_ledger(forked, KEY.public_key, []).problems == [
        "5 entries and no valid signed checkpoint: completeness cannot be shown"
    ]
    problems = _problems(forked, [_cp(entries)])
    assert problems == ["seq 5: differs from the signed checkpoint's head (fork)"]
    # Two signed checkpoints for the same count with different heads, and two entries for one seq.
    assert "seq 5: two checkpoints name different heads (fork)" in _problems(entries, [_cp(entries), _cp(forked)])
    assert any("seq 3: two different entries" in p for p in _problems(entries + forked[2:3], [_cp(entries)]))


def test_forged_checkpoint_is_reported() -> None:
    entries = _chain(3)
    bad = dataclasses.replace(_cp(entries), count=2)
    assert "checkpoint of 2 entries: bad signature" in _problems(entries, [bad, _cp(entries)])


def test_cli_export_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelopes = [b"one", b"two"]
    spool, _key = _spool_with_entries(tmp_path, envelopes)
    spool.close()
    for i, env in enumerate(envelopes):
        (tmp_path / f"{i}.msh").write_bytes(env)
    out = tmp_path / "ledger.jsonl"
    export = argparse.Namespace(state_dir=tmp_path, out=out, device_id=None, key=None)
    assert ledger_cli._export(export) == 0
    entries, checkpoints = read_ledger(out)
    assert len(entries) == 2 and [c.count for c in checkpoints] == [2]
    ok = argparse.Namespace(
        ledger=out, gateway_card=tmp_path / "gw.gateway-card", public_key=None, checkpoints=[],
        envelope=[tmp_path / "0.msh", tmp_path / "1.msh"],
    )
    assert ledger_cli._verify(ok) == 0
    assert "OK: 2 entries" in capsys.readouterr().out
    pem = argparse.Namespace(**{**vars(ok), "gateway_card": None, "public_key": tmp_path / "ledger.pub"})
    assert ledger_cli._verify(pem) == 0
    (tmp_path / "1.msh").write_bytes(b"tw0")
    assert ledger_cli._verify(ok) == 1
    assert "not recorded" in capsys.readouterr().out
    # Dropping the last entry from the exported file is caught by its checkpoint.
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert ledger_cli._verify(argparse.Namespace(**{**vars(ok), "envelope": []})) == 1
    assert "FAIL seq 2: missing after the last entry" in capsys.readouterr().out
