"""Where the project's files live: the ONNX models with their manifests, and the reference data.

A checkout keeps the models in `models/` and the reference data in `../shared/data`; an installed wheel
carries the models under `<prefix>/share/medshield/models` (pyproject's data-files) and has no reference
data unless `$MEDSHIELD_SHARED` names it. Nothing is looked up relative to site-packages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The directory above the package: the checkout when imported from one (see `checkout_dir`).
REPO_DIR = PACKAGE_DIR.parent
SYSTEM_MODELS_DIR = Path("/usr/share/medshield/models")


def checkout_dir() -> Path | None:
    """The source checkout this package is imported from (editable install or PYTHONPATH), else None."""
    repo = REPO_DIR
    pyproject = repo / "pyproject.toml"
    try:
        if pyproject.is_file() and 'name = "medshield"' in pyproject.read_text(encoding="utf-8"):
            return repo
    except OSError:
        return None
    return None


def installed_share_dir() -> Path:
    """`<prefix>/share/medshield` of the environment this interpreter runs in (a venv under /opt/medshield)."""
    return Path(sys.prefix) / "share" / "medshield"


def _models_dir() -> Path:
    """$MEDSHIELD_MODELS_DIR, else the checkout's models/, else the installed wheel's share/medshield/models,
    else the system location."""
    override = os.environ.get("MEDSHIELD_MODELS_DIR")
    if override:
        return Path(override)
    repo = checkout_dir()
    if repo is not None:
        return repo / "models"
    installed = installed_share_dir() / "models"
    return installed if installed.is_dir() else SYSTEM_MODELS_DIR


MODELS_DIR = _models_dir()


def shared_data_dir() -> Path:
    """The reference data set: $MEDSHIELD_SHARED/data, else `../shared/data` beside the checkout.

    Only tests, the demo, training and benchmarks use it; the daemon never does. Outside a checkout without
    $MEDSHIELD_SHARED the returned directory does not exist (see `reference_ct`).
    """
    override = os.environ.get("MEDSHIELD_SHARED")
    if override:
        return Path(override) / "data"
    repo = checkout_dir()
    if repo is not None:
        return repo.parent / "shared" / "data"
    return installed_share_dir() / "data"


def reference_ct() -> Path | None:
    """The real chest CT (`ct/lung1.npz`) when the reference data is present, else None."""
    path = shared_data_dir() / "ct" / "lung1.npz"
    return path if path.is_file() else None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and systemd's CPUAffinity set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
