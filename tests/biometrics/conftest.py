"""Shared fixtures: a self-signed certificate for the key-release service on loopback, made per session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


class Clock:
    """A settable clock (UTC ns)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


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
