"""Where the project's files live: committed model files, and the reference data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
MODELS_DIR = REPO_DIR / "models"


def shared_data_dir() -> Path:
    """The reference data set (`../shared/data` beside the checkout, or $MEDSHIELD_SHARED/data).

    Only tests, the demo, training and benchmarks use it; the daemon never does.
    """
    override = os.environ.get("MEDSHIELD_SHARED")
    base = Path(override) if override else REPO_DIR.parent / "shared"
    return base / "data"
