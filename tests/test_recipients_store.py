"""The authenticated recipient store: only cards the admin added (admin OTP, MAC'd manifest) are recipients.

The attack: `recipients add` needed the admin's TOTP code, but any card file dropped into the directory was
loaded as a recipient, so whoever could write there could read every later image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.crypto.recipients import generate_recipient
from gateway.errors import ConfigError
from gateway.otp import STEP_S, totp_at
from gateway.recipients_store import MANIFEST, add_card, installed_cards, recipients_dir
from gateway.rng import SeededRandom

T0 = 1_800_000_000 * 1_000_000_000
STEP_NS = STEP_S * 1_000_000_000


def _add(state: Path, secret: str, card_path: Path, step: int) -> Path:
    t = T0 + step * STEP_NS
    return add_card(state, card_path, totp_at(secret, t // STEP_NS), clock=lambda: t)


def test_dropped_in_card_is_not_a_recipient_and_is_logged(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    directory, secret = admin_state
    _, good = generate_recipient("oncology", SeededRandom(b"good"))
    _add(directory, secret, good.save(tmp_path / "oncology.card"), 0)
    _, mallory = generate_recipient("mallory", SeededRandom(b"mallory"))
    mallory.save(recipients_dir(directory) / "mallory.card")  # dropped in, no admin code
    with capture_logs() as logs:
        cards = installed_cards(directory)
    assert [c.name for c in cards] == ["oncology"]
    assert {"event": "recipient_card_not_authorised", "file": "mallory.card"}.items() <= next(
        e for e in logs if e["event"] == "recipient_card_not_authorised"
    ).items()


def test_replaced_card_file_is_not_a_recipient(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    directory, secret = admin_state
    _, good = generate_recipient("oncology", SeededRandom(b"good"))
    installed = _add(directory, secret, good.save(tmp_path / "oncology.card"), 0)
    _, mallory = generate_recipient("oncology", SeededRandom(b"mallory"))
    installed.write_text(mallory.to_json())  # same name, another key
    assert installed_cards(directory) == []


def test_forged_manifest_stops_the_store(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    directory, secret = admin_state
    _, good = generate_recipient("oncology", SeededRandom(b"good"))
    _add(directory, secret, good.save(tmp_path / "oncology.card"), 0)
    _, mallory = generate_recipient("mallory", SeededRandom(b"mallory"))
    path = mallory.save(recipients_dir(directory) / "mallory.card")
    manifest = recipients_dir(directory) / MANIFEST
    doc = json.loads(manifest.read_text())
    import hashlib

    doc["cards"]["mallory"] = {"key_id": mallory.key_id, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="MAC"):
        installed_cards(directory)


def test_card_from_before_the_manifest_is_authorised_by_adding_it_again(
    tmp_path: Path, admin_state: tuple[Path, str]
) -> None:
    directory, secret = admin_state
    _, old = generate_recipient("radiology", SeededRandom(b"old"))
    recipients_dir(directory).mkdir()
    old.save(recipients_dir(directory) / "radiology.card")  # installed by an earlier version: no manifest
    assert installed_cards(directory) == []
    _add(directory, secret, old.save(tmp_path / "radiology.card"), 0)
    assert [c.name for c in installed_cards(directory)] == ["radiology"]
