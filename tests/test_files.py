"""gateway.files: exclusive creation of once-made secrets (never a half-written file left behind) and bounded reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.files import write_new


def test_write_new_creates_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_new(tmp_path / "k", b"secret")
    finally:
        os.umask(old)
    assert (tmp_path / "k").read_bytes() == b"secret"
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_write_new_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "k", b"second")
    assert (tmp_path / "k").read_bytes() == b"first"


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_new(tmp_path / "k", "not bytes")  # type: ignore[arg-type]
    assert not (tmp_path / "k").exists()


def test_read_small_reads_up_to_its_limit_and_names_what_it_refuses(tmp_path: Path) -> None:
    from gateway.errors import ConfigError
    from gateway.files import read_small

    card = tmp_path / "radiology.card"
    card.write_bytes(b"x" * 64)
    assert read_small(card, 64, "recipient card") == b"x" * 64
    with pytest.raises(ConfigError, match=r"recipient card .*radiology.card is too large"):
        read_small(card, 63, "recipient card")
    with pytest.raises(ConfigError, match=r"cannot read gateway card .*missing.card"):
        read_small(tmp_path / "missing.card", 64, "gateway card")


def test_a_card_file_too_large_is_refused_before_parsing(tmp_path: Path) -> None:
    from gateway.crypto.origin import MAX_CARD_BYTES, GatewayCard
    from gateway.crypto.recipients import MAX_FILE_BYTES, RecipientCard
    from gateway.errors import ConfigError

    big = tmp_path / "big.card"
    big.write_bytes(b" " * (max(MAX_CARD_BYTES, MAX_FILE_BYTES) + 1))
    for load in (GatewayCard.load, RecipientCard.load):
        with pytest.raises(ConfigError, match="is too large"):
            load(big)
