"""An installed wheel is a working gateway: models, protect with DS-Net and the demo, outside any checkout.

The wheel is installed into a fresh venv in a temporary directory (not below the checkout, no PYTHONPATH),
exactly as deploy/host/install.sh does on a host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway.resources import REPO_DIR

pytestmark = pytest.mark.slow


def _clean_env(home: Path) -> dict[str, str]:
    keep = {"PATH", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(os.environ.get("HOME", home))  # pip's cache
    return env


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    assert REPO_DIR not in root.parents
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, cwd=root, env=_clean_env(root), timeout=900,
    )
    return venv


def _medshield(venv: Path, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "medshield"), *args], cwd=cwd, env=_clean_env(cwd), capture_output=True, text=True,
        timeout=timeout,
    )


def test_wheel_carries_models_and_manifests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    # MSE-Net's whitening is part of the model: without it an installed gateway cannot release a key.
    for model in ("dsnet/dsnet.onnx", "dsnet/manifest.json", "dsnet/unet.onnx", "msenet/msenet.onnx",
                  "msenet/manifest.json", "msenet/whitening.npz"):
        assert f"share/medshield/models/{model}" in data, model
    assert "share/medshield/systemd/medshield.service" in data
    assert "share/medshield/host/install.sh" in data


def test_installed_models_list(venv: Path, tmp_path: Path) -> None:
    out = _medshield(venv, "models", "list", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    dsnet = next(line for line in out.stdout.splitlines() if line.startswith("dsnet"))
    assert "sha256 ok" in dsnet
    assert str(venv / "share" / "medshield" / "models" / "dsnet") in dsnet  # the wheel's copy, not the checkout's


def test_installed_protect_with_dsnet_then_open(venv: Path, tmp_path: Path) -> None:
    from medshield_tools.scanner_sim import dicom_from_hu, generated_ct

    ct = tmp_path / "slice.dcm"  # a generated CT slice: air around the body carries the hidden payload
    ct.write_bytes(dicom_from_hu(generated_ct(256, seed=5), instance=1))
    assert _medshield(venv, "keygen", "svc", "--out", str(tmp_path), cwd=tmp_path).returncode == 0
    key = tmp_path / "gw.pem"
    made = _medshield(venv, "gateway-key", "--device-id", "gw", "--key", str(key), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    out = _medshield(
        venv, "protect", str(ct), "-r", str(tmp_path / "svc.card"), "-o", str(tmp_path / "ct.msh"), "--json",
        "--device-key", str(key), "--device-id", "gw", cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert "segment" in summary["timings_ms"]  # DS-Net ran (no --mask given)
    opened = _medshield(
        venv, "open", str(tmp_path / "ct.msh"), "--key", str(tmp_path / "svc.key"), "-o", str(tmp_path / "ct.dcm"),
        "--restore-original", "--gateways", str(tmp_path), cwd=tmp_path,
    )
    assert opened.returncode == 0, opened.stderr
    assert (tmp_path / "ct.dcm").read_bytes() == ct.read_bytes()


def test_installed_demo(venv: Path, tmp_path: Path) -> None:
    out = _medshield(venv, "demo", "--generated", "1", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no reference CT" in out.stdout
    assert out.stdout.rstrip().endswith("OK")
