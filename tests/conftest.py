"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.files import write_atomic
from gateway.otp import generate_secret
from gateway.recipients_store import ADMIN_SECRET
from gateway.resources import shared_data_dir
from gateway.rng import SeededRandom


def gpu_available() -> bool:
    """True when an NVIDIA GPU is usable through ONNX Runtime's CUDA provider or TensorRT."""
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return True
    except ImportError:
        pass
    try:
        import tensorrt  # noqa: F401

        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="no NVIDIA GPU on this machine")
    for item in items:
        # The marker, not `"gpu" in item.keywords`: keywords also hold every parent node's name, so a checkout
        # in a folder called gpu would skip the whole suite.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"reference data missing: {path} (CI clones with ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for 127.0.0.1, made by the openssl command line (EC P-256, one day)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl command line needed (Debian package openssl; `make test` installs it)"
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def admin_state(tmp_path: Path) -> tuple[Path, str]:
    """A gateway state directory holding the admin's TOTP secret (fixed seed), and that secret."""
    state = tmp_path / "state"
    state.mkdir()
    secret = generate_secret(SeededRandom(b"admin"))
    write_atomic(state / ADMIN_SECRET, (secret + "\n").encode())
    return state, secret
