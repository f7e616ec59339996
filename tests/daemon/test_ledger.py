"""The signed envelope ledger: chained in the spool with the envelope, verifiable, tamper-evident."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

from gateway.cli import ledger as ledger_cli
from gateway.ledger import LedgerEntry, LedgerItem, LedgerKey, LedgerWriter, read_jsonl, verify_chain
from gateway.spool import Spool


def _spool_with_entries(tmp_path: Path, envelopes: list[bytes]) -> tuple[Spool, LedgerKey]:
    key = LedgerKey.load_or_create(tmp_path / "ledger.key")
    writer = LedgerWriter(key, "gw", "medshield/gateways/gw/ledger")
    spool = Spool(tmp_path / "spool.sqlite3", 1 << 30)
    for i, env in enumerate(envelopes):
        item = LedgerItem(f"m{i}", hashlib.sha256(env).hexdigest(), "medshield/gateways/gw/envelopes")
        assert spool.commit(f"m{i}", "protected", [("envelope", "t", env)], ledger=(writer, [item]))
    return spool, key


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    envelopes = [b"env-a", b"env-b", b"env-c"]
    spool, key = _spool_with_entries(tmp_path, envelopes)
    lines = spool.ledger_lines()
    entries = [LedgerEntry.from_json(line) for line in lines]
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[1].prev_hash == entries[0].entry_hash()
    # Each ledger entry is queued for the cloud right after its envelope, in the same transaction.
    assert [r.kind for r in spool.head(10)] == ["envelope", "ledger"] * 3
    assert (tmp_path / "ledger.key").stat().st_mode & 0o077 == 0
    report = verify_chain(entries, key.public_pem(), envelopes)
    assert report.ok and report.entries == 3


def test_tampering_is_reported(tmp_path: Path) -> None:
    envelopes = [b"env-a", b"env-b", b"env-c"]
    spool, key = _spool_with_entries(tmp_path, envelopes)
    entries = [LedgerEntry.from_json(line) for line in spool.ledger_lines()]
    edited = list(entries)
    edited[1] = dataclasses.replace(entries[1], message_id="forged")
    assert any("bad signature" in p for p in verify_chain(edited, key.public_pem()).problems)
    dropped = [entries[0], entries[2]]
    assert any("missing or reordered" in p for p in verify_chain(dropped, key.public_pem()).problems)
    assert any("not recorded" in p for p in verify_chain(entries, key.public_pem(), [b"env-x"]).problems)
    other = LedgerKey.load_or_create(tmp_path / "other.key")
    assert not verify_chain(entries, other.public_pem()).ok
    # A signature that is not even base64url is a reported problem, not a crash of the verifier.
    garbled = list(entries)
    garbled[0] = dataclasses.replace(entries[0], signature="not base64url!")
    problems = verify_chain(garbled, key.public_pem()).problems
    assert any(p.startswith("seq 1: bad signature") for p in problems)
    assert any(p.startswith("seq 2: previous-hash link broken") for p in problems)


def test_key_survives_restart(tmp_path: Path) -> None:
    first = LedgerKey.load_or_create(tmp_path / "k")
    assert LedgerKey.load_or_create(tmp_path / "k").public_pem() == first.public_pem()
    assert (tmp_path / "k.pub").read_text() == first.public_pem()


def test_cli_export_and_verify(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    envelopes = [b"one", b"two"]
    spool, _key = _spool_with_entries(tmp_path, envelopes)
    spool.close()
    for i, env in enumerate(envelopes):
        (tmp_path / f"{i}.msh").write_bytes(env)
    out = tmp_path / "ledger.jsonl"
    assert ledger_cli._export(argparse.Namespace(state_dir=tmp_path, out=out)) == 0
    assert len(read_jsonl(out)) == 2
    ok = argparse.Namespace(
        ledger=out, public_key=tmp_path / "ledger.pub", envelope=[tmp_path / "0.msh", tmp_path / "1.msh"]
    )
    assert ledger_cli._verify(ok) == 0
    assert "OK: 2 entries" in capsys.readouterr().out
    (tmp_path / "1.msh").write_bytes(b"tw0")
    assert ledger_cli._verify(ok) == 1
    assert "not recorded" in capsys.readouterr().out
