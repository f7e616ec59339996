"""Fixtures for the DICOM tests: the real series from the registry, a raw-key recipient, fast seal settings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import EmbeddedBroker, find_mosquitto
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard, generate_recipient
from gateway.crypto.sbbe import SearchParams
from gateway.rng import SeededRandom
from tests.dicom.reference import dcmtk_encode, totalsegmentator_ct_series

# The cipher is not under test here: the fast suite with a one-candidate search keeps the files many.
GATEWAY = GatewayKey.generate("gw-dicom-tests", SeededRandom(b"dicom-tests-gateway"))
FAST = {"suite": "aes-256-siv", "sbbe_params": SearchParams(population=1, generations=0), "signer": GATEWAY}
OPEN = {"gateways": TrustedGateways([GATEWAY.card])}  # what `open_` needs: the pinned gateway card


@pytest.fixture(scope="session")
def ct_series() -> list[Path]:
    series = totalsegmentator_ct_series()
    assert len(series) == 20
    return series


@pytest.fixture(scope="session")
def dcmtk_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real pixels in the syntaxes pydicom ships no usable file for, encoded once by dcmtk (file name -> path)."""
    return dcmtk_encode(tmp_path_factory.mktemp("dcmtk-encoded"))


@pytest.fixture(scope="session")
def dicom_recipient() -> tuple[PrivateKey, RecipientCard]:
    return generate_recipient("dicom-tests", SeededRandom(b"dicom-tests"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A real mosquitto on a free loopback port (the gateway's inbound and cloud broker in these tests)."""
    find_mosquitto()
    started = EmbeddedBroker(persistence_dir=tmp_path / "mosquitto").start()
    yield started
    started.close()


def require_tool(name: str) -> str:
    """The path of a system tool the Makefile installs; a clear failure (not a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (`make test` installs it with apt-get)")
    return path
