from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.crypto.recipients import (
    PrivateKey,
    RecipientCard,
    generate_recipient,
    recipient_from_seed,
    save_recipient,
)
from gateway.errors import ConfigError
from gateway.rng import SeededRandom


def test_key_id_is_sha256_prefix() -> None:
    key, card = generate_recipient("alice", SeededRandom(b"a"))
    assert card.key_id == hashlib.sha256(card.public_key).digest()[:16].hex()
    assert key.key_id == card.key_id and key.public_key == card.public_key
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)


def test_save_and_load(tmp_path: Path) -> None:
    key, card = generate_recipient("alice", SeededRandom(b"a"))
    key_path, card_path = save_recipient(tmp_path, key)
    assert key_path.name == "alice.key" and card_path.name == "alice.card"
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert PrivateKey.load(key_path) == key
    assert RecipientCard.load(card_path) == card
    with pytest.raises(ConfigError, match="already exists"):
        key.save(key_path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_refuses_readable_key_file(tmp_path: Path, mode: int) -> None:
    key, _ = generate_recipient("alice", SeededRandom(b"a"))
    path = key.save(tmp_path / "alice.key")
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        PrivateKey.load(path)


def test_card_with_wrong_key_id_rejected(tmp_path: Path) -> None:
    _, card = generate_recipient("alice", SeededRandom(b"a"))
    text = card.to_json().replace(card.key_id, "0" * 32)
    with pytest.raises(ConfigError, match="key id"):
        RecipientCard.from_json(text)


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"format":"medshield-recipient-card","version":1}', "\xff"])
def test_malformed_card(text: str) -> None:
    with pytest.raises(ConfigError):
        RecipientCard.from_json(text)


def test_low_order_public_key_rejected() -> None:
    with pytest.raises(ValueError):
        RecipientCard(name="x", key_id=hashlib.sha256(bytes(32)).digest()[:16].hex(), public_key=bytes(32))


def test_from_seed_is_deterministic() -> None:
    k1, c1 = recipient_from_seed("dr-a", b"\x01" * 32)
    k2, c2 = recipient_from_seed("dr-a", b"\x01" * 32)
    k3, _ = recipient_from_seed("dr-a", b"\x02" * 32)
    assert k1 == k2 and c1 == c2 and k3.public_key != k1.public_key
    with pytest.raises(ValueError):
        recipient_from_seed("dr-a", b"short")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        generate_recipient(name, SeededRandom(b"a"))


def test_refuses_symlinked_key(tmp_path: Path) -> None:
    key, _ = generate_recipient("alice", SeededRandom(b"a"))
    path = key.save(tmp_path / "alice.key")
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="symbolic link"):
        PrivateKey.load(link)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PrivateKey.load(tmp_path / "nope.key")
    with pytest.raises(ConfigError, match="cannot read"):
        RecipientCard.load(tmp_path / "nope.card")
