"""deploy/host/install.sh into a temporary root: install, a failed upgrade, an upgrade that keeps config and
state, rollback, uninstall and purge. (Inside a booted Debian root, with the units running, it is exercised
by test_systemd_unit.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from gateway.resources import REPO_DIR

pytestmark = pytest.mark.slow

SCRIPT = REPO_DIR / "deploy" / "host" / "install.sh"


def _sh(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["bash", str(SCRIPT), "--root", str(root), *args], capture_output=True, text=True,
                         timeout=900)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def _current(root: Path) -> str:
    return os.readlink(root / "opt/medshield/current")


def _install(root: Path, wheel: Path, wheels: Path) -> subprocess.CompletedProcess[str]:
    return _sh(root, "install", str(wheel), "--find-links", str(wheels))


def test_install_upgrade_rollback_uninstall(wheel: Path, test_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _install(root, wheel, test_root / "wheels")
    first = _current(root)
    assert first.startswith("releases/0.1.0-")
    medshield = root / "usr/bin/medshield"
    assert medshield.is_symlink() and not os.readlink(medshield).startswith("/")  # stays inside the root
    listed = subprocess.run([str(medshield), "models", "list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and "sha256 ok" in listed.stdout, listed.stdout + listed.stderr
    assert str(root / "opt/medshield") in listed.stdout  # the release's own models
    for unit in ("medshield.service", "medshield-build-engines.service"):
        assert (root / "usr/lib/systemd/system" / unit).read_text() == (REPO_DIR / "systemd" / unit).read_text()
    assert "medshield:" in (root / "etc/passwd").read_text()  # systemd-sysusers --root
    assert stat.S_IMODE((root / "var/lib/medshield").stat().st_mode) == 0o700  # systemd-tmpfiles --root
    assert stat.S_IMODE((root / "etc/medshield/credentials").stat().st_mode) == 0o700
    config = root / "etc/medshield/gateway.toml"
    gid = next(int(line.split(":")[2]) for line in (root / "etc/group").read_text().splitlines()
               if line.startswith("medshield:"))
    # Readable by the gateway's group as the root knows it (not this machine's), never by others.
    assert config.stat().st_gid == gid and stat.S_IMODE(config.stat().st_mode) == 0o640
    assert (root / "var/lib/medshield").stat().st_gid == gid

    # The admin's configuration and the gateway's state.
    config.write_text(config.read_text() + "\n# edited by the admin\n")
    spool = root / "var/lib/medshield/spool.sqlite3"
    spool.write_bytes(b"rows waiting")

    bogus = tmp_path / "medshield-9.9.9-py3-none-any.whl"
    bogus.write_bytes(b"not a wheel")
    failed = _sh(root, "install", str(bogus), check=False)
    assert failed.returncode != 0 and "current release is unchanged" in failed.stderr
    assert _current(root) == first and len(os.listdir(root / "opt/medshield/releases")) == 1

    time.sleep(1.1)  # release names carry the install time to the second
    _install(root, wheel, test_root / "wheels")
    second = _current(root)
    assert second != first and (root / "opt/medshield" / first).is_dir()
    assert config.read_text().endswith("# edited by the admin\n") and spool.read_bytes() == b"rows waiting"
    assert "* " + second.removeprefix("releases/") in _sh(root, "status").stdout

    _sh(root, "rollback")
    assert _current(root) == first
    assert subprocess.run([str(medshield), "--version"], capture_output=True, timeout=120).returncode == 0

    _sh(root, "uninstall")
    assert not (root / "opt/medshield").exists() and not medshield.is_symlink()
    assert not (root / "usr/lib/systemd/system/medshield.service").exists()
    assert config.is_file() and spool.is_file()  # kept without --purge
    _sh(root, "uninstall", "--purge")
    assert not (root / "etc/medshield").exists() and not (root / "var/lib/medshield").exists()
