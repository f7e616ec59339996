"""Fixtures for the deployment tests: the wheel, built once per session from this checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.resources import REPO_DIR


def build_wheel(out: Path) -> Path:
    """`pip wheel` of the checkout (no dependencies), as a release would build it; returns the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", "-w", str(out),
         str(REPO_DIR)],
        check=True, cwd=out, timeout=600,
    )
    (wheel,) = out.glob("medshield-*.whl")
    return wheel


@pytest.fixture(scope="session")
def test_root() -> Path:
    """The cached Debian root and dependency wheelhouse (tests/deploy/make_root.sh): a no-op when current,
    refreshed when the dependency list changed, built (debootstrap, minutes) when missing."""
    import os
    import shutil

    from tests.deploy.nspawn import cache_dir

    if os.geteuid() != 0:
        pytest.fail("the deployment tests need root (systemd-nspawn, debootstrap, overlay mounts)")
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: make deploy-tools (apt-get install systemd-container debootstrap)")
    subprocess.run(["bash", str(REPO_DIR / "tests" / "deploy" / "make_root.sh"), str(cache_dir()), sys.executable],
                   check=True, timeout=1800)
    return cache_dir()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))
