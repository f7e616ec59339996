"""Where the project's files live: committed model files, and the reference data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SYSTEM_MODELS_DIR = Path("/usr/share/medshield/models")


def _models_dir() -> Path:
    """Committed models: $MEDSHIELD_MODELS_DIR, else the checkout's models/, else the system location that the
    container images install them to (a wheel carries the code only)."""
    override = os.environ.get("MEDSHIELD_MODELS_DIR")
    if override:
        return Path(override)
    checkout = REPO_DIR / "models"
    return checkout if checkout.is_dir() else SYSTEM_MODELS_DIR


MODELS_DIR = _models_dir()


def shared_data_dir() -> Path:
    """The reference data set (`../shared/data` beside the checkout, or $MEDSHIELD_SHARED/data).

    Only tests, the demo, training and benchmarks use it; the daemon never does.
    """
    override = os.environ.get("MEDSHIELD_SHARED")
    base = Path(override) if override else REPO_DIR.parent / "shared"
    return base / "data"
