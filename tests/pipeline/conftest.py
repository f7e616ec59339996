"""Fixtures for pipeline tests: the real lung1 CT and a deterministic recipient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.crypto.recipients import PrivateKey, RecipientCard, generate_recipient
from gateway.rng import SeededRandom


@pytest.fixture(scope="session")
def lung1(shared_data: Path) -> dict[str, np.ndarray]:
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        return {"image_hu": npz["image_hu"], "lesion_mask": npz["lesion_mask"].astype(bool)}


@pytest.fixture(scope="session")
def recipient() -> tuple[PrivateKey, RecipientCard]:
    return generate_recipient("radiology", SeededRandom(b"pipeline-tests-recipient"))
