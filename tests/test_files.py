"""gateway.files.write_new: exclusive creation of once-made secrets, never a half-written file left behind."""

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
