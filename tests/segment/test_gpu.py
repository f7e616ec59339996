"""GPU backends against the CPU reference (run only where an NVIDIA GPU is usable; skipped elsewhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.inference import available_backends
from gateway.segment import Segmenter

pytestmark = pytest.mark.gpu

SLICES = (10, 20, 31, 32, 33, 34, 40)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.fixture(scope="module")
def lung1(shared_data: Path) -> np.ndarray:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return d["image_hu"][list(SLICES)]


@pytest.fixture(scope="module")
def cpu_masks(lung1: np.ndarray) -> np.ndarray:
    seg = Segmenter(backend="cpu")
    return np.stack([seg.predict_hu(s) for s in lung1])


def _require(backend: str) -> None:
    reason = available_backends()[backend]
    if reason is not None:
        pytest.skip(f"{backend} unavailable here: {reason}")


def test_tensorrt_engine_is_built_cached_and_reused(tmp_path: Path, lung1: np.ndarray,
                                                    cpu_masks: np.ndarray) -> None:
    _require("tensorrt")
    first = Segmenter(backend="tensorrt", state_dir=tmp_path)
    assert first.backend == "tensorrt"
    assert first.runner.built and first.runner.engine_path.is_file()
    assert first.runner.engine_path.is_relative_to(tmp_path)
    mtime = first.runner.engine_path.stat().st_mtime_ns
    second = Segmenter(backend="tensorrt", state_dir=tmp_path)
    assert not second.runner.built
    assert second.runner.engine_path == first.runner.engine_path
    assert second.runner.engine_path.stat().st_mtime_ns == mtime
    got = np.stack([second.predict_hu(hu) for hu in lung1])
    assert got.shape == cpu_masks.shape
    # Pooled over the slices: FP16 may flip a few boundary pixels, which on a tiny per-slice mask would
    # swing a per-slice Dice far more than it matters.
    assert dice(got, cpu_masks) >= 0.99


def test_tensorrt_engine_is_rebuilt_for_another_precision(tmp_path: Path) -> None:
    _require("tensorrt")
    from gateway.inference.tensorrt_native import TensorRTRunner

    fp16 = TensorRTRunner(Segmenter(backend="cpu").model_path, state_dir=tmp_path, precision="fp16")
    fp32 = TensorRTRunner(fp16.model_path, state_dir=tmp_path, precision="fp32")
    assert fp32.built and fp32.engine_path != fp16.engine_path


@pytest.mark.parametrize("backend", ["cuda", "tensorrt-ep"])
def test_ort_gpu_providers_match_cpu(backend: str, tmp_path: Path, lung1: np.ndarray,
                                     cpu_masks: np.ndarray) -> None:
    _require(backend)
    seg = Segmenter(backend=backend, state_dir=tmp_path)
    assert seg.backend == backend
    got = np.stack([seg.predict_hu(hu) for hu in lung1])
    assert dice(got, cpu_masks) >= 0.99
