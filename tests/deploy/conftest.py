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
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))
