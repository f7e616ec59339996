"""The reason-code registry: documented, used, and sent as the same plain strings."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from gateway.quarantine import Quarantine
from gateway.reasons import DESCRIPTIONS, Reason, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_code_is_documented_in_the_table() -> None:
    assert set(DESCRIPTIONS) == set(Reason)
    doc = (ROOT / "docs" / "REASON_CODES.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, "docs/REASON_CODES.md is stale: paste `python -m gateway.reasons` into it"


def test_every_code_is_raised_somewhere() -> None:
    files = [p for p in (ROOT / "gateway").rglob("*.py") if p.name != "reasons.py"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in files)
    used = set(re.findall(r"Reason\.([A-Z_]+)", source))
    assert used == {r.name for r in Reason}


def test_codes_travel_as_their_plain_strings(tmp_path: Path) -> None:
    assert all(str(r) == r.value == r.name.lower() for r in Reason)
    record = Quarantine(tmp_path, "gw-1").put("m-1", "t", b"x", Reason.TOO_MANY_PIXELS, "detail", 1)
    assert json.loads(record.event())["reason"] == "too_many_pixels"
    assert record.event() == replace(record, reason="too_many_pixels").event()  # the bytes of the wire event
    stored = json.loads((tmp_path / "m-1.json").read_text())
    assert stored["reason"] == "too_many_pixels"
