"""Known-answer vectors: a format change of any kind makes these fail (see tests/vectors/make_vectors.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto.envelope import open_envelope
from gateway.crypto.parts import Reassembler
from gateway.crypto.recipients import PrivateKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
_spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
assert _spec is not None and _spec.loader is not None
make_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_vectors)


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", make_vectors.CASES, ids=lambda c: c["name"])
def test_envelope_vectors(case: dict[str, Any]) -> None:
    doc = _load(case["name"])
    assert doc["case"] == json.loads(json.dumps(case))
    assert make_vectors.compute(case) == doc["expected"]


@pytest.mark.parametrize("case", make_vectors.CASES, ids=lambda c: c["name"])
def test_committed_envelopes_open(case: dict[str, Any]) -> None:
    exp = _load(case["name"])["expected"]
    key = PrivateKey(name="vector", secret=bytes.fromhex(exp["recipient_private_key"]))
    opened = open_envelope(bytes.fromhex(exp["envelope"]), key)
    assert opened.plaintext.hex() == case["plaintext"]
    assert {label: opened.derive(label).hex() for label in exp["derived"]} == exp["derived"]


def test_parts_vectors() -> None:
    doc = _load(make_vectors.PARTS_CASE["name"])
    envelope_hex = _load(make_vectors.PARTS_CASE["envelope_of"])["expected"]["envelope"]
    assert make_vectors.compute_parts(envelope_hex, doc["case"]["max_bytes"]) == doc["expected"]
    r = Reassembler()
    outs = [r.feed(bytes.fromhex(p)) for p in reversed(doc["expected"]["parts"])]
    assert outs[-1] == bytes.fromhex(envelope_hex)
