"""Where compiled engines live and how they are named.

A TensorRT engine is only valid for the exact ONNX graph, TensorRT version, GPU model and precision it was
built with (and, for a dynamic batch, the optimisation profile), so the cache key hashes all of them:
changing any one gives a new file name and the engine is rebuilt instead of a stale one being loaded. Old
engines are left in place (a downgrade finds its engine again); `medshield models build-engines` reports
which file serves.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gateway.state_layout import StateLayout

STATE_ENV = "MEDSHIELD_STATE_DIR"


def default_state_dir() -> Path:
    """$MEDSHIELD_STATE_DIR, else ~/.cache/medshield (the daemon passes its configured state directory)."""
    override = os.environ.get(STATE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "medshield"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def engine_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
               profile: str = "static") -> dict[str, str]:
    """The fields an engine depends on, in a stable order. `profile` describes the optimisation profile of
    a model with a dynamic batch (trt_api.profile_tag); "static" for fixed-shape models."""
    return {"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "precision": precision,
            "profile": profile}


def engine_path(state_dir: Path, key: dict[str, str]) -> Path:
    """Cache file for `key`: engines/<onnx sha prefix>-<hash of the whole key>.engine under the state dir."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return StateLayout(state_dir).engines / f"{key['onnx_sha256'][:12]}-{digest[:16]}.engine"


def timing_cache_path(engines_dir: Path, trt_version: str, gpu_name: str) -> Path:
    """TensorRT's kernel timing cache for one TensorRT version and GPU, beside the engines it helped build."""
    digest = hashlib.sha256(json.dumps([trt_version, gpu_name]).encode()).hexdigest()
    return engines_dir / f"timing-{digest[:16]}.cache"
