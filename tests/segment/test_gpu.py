"""GPU backends against the CPU reference, and the TensorRT engine cache (run only where an NVIDIA GPU is
usable; skipped elsewhere). benchmarks/gpu_check.sh runs these first on a lent GPU machine.

The cache key has five fields. The model and the precision are changed for real here. The TensorRT version
and the GPU cannot change on one machine, so those two tests hand the runner the identity another
installation would detect (`EngineIdentity`); the build, the cache files and the loading are all real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.inference import available_backends, create_runner
from gateway.resources import MODELS_DIR
from gateway.segment import Segmenter

pytestmark = pytest.mark.gpu

DSNET = MODELS_DIR / "dsnet" / "dsnet.onnx"
UNET = MODELS_DIR / "dsnet" / "unet.onnx"
MSENET = MODELS_DIR / "msenet" / "msenet.onnx"
SLICES = (10, 20, 31, 32, 33, 34, 40)
REPO = Path(__file__).resolve().parents[2]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def lung1(shared_data: Path) -> np.ndarray:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return d["image_hu"][list(SLICES)]


@pytest.fixture(scope="module")
def cpu_masks(lung1: np.ndarray) -> np.ndarray:
    seg = Segmenter(backend="cpu")
    return np.stack([seg.predict_hu(s) for s in lung1])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir for the module: the DS-Net FP16 engine is built once and the tests that need it share it."""
    return tmp_path_factory.mktemp("state")


def _require(backend: str) -> None:
    reason = available_backends()[backend]
    if reason is not None:
        pytest.skip(f"{backend} unavailable here: {reason}")


def _trt(model: Path, state_dir: Path, **kwargs):  # type: ignore[no-untyped-def]
    from gateway.inference.tensorrt_native import TensorRTRunner

    return TensorRTRunner(model, state_dir=state_dir, **kwargs)


def test_tensorrt_engine_is_built_cached_and_reused(engines: Path, lung1: np.ndarray,
                                                    cpu_masks: np.ndarray) -> None:
    _require("tensorrt")
    first = Segmenter(backend="tensorrt", state_dir=engines)
    assert first.backend == "tensorrt"
    assert first.runner.built and first.runner.engine_path.is_file()
    assert first.runner.engine_path.is_relative_to(engines)
    mtime = first.runner.engine_path.stat().st_mtime_ns
    second = Segmenter(backend="tensorrt", state_dir=engines)
    assert not second.runner.built
    assert second.runner.engine_path == first.runner.engine_path
    assert second.runner.engine_path.stat().st_mtime_ns == mtime
    got = np.stack([second.predict_hu(hu) for hu in lung1])
    assert got.shape == cpu_masks.shape
    # Pooled over the slices: FP16 may flip a few boundary pixels, which on a tiny per-slice mask would
    # swing a per-slice Dice far more than it matters.
    assert dice(got, cpu_masks) >= 0.99


def test_engines_are_reused_by_a_restarted_process(tmp_path: Path) -> None:
    _require("tensorrt")
    command = [sys.executable, "-m", "gateway", "models", "build-engines", "--state-dir", str(tmp_path),
               "--model", "dsnet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=True).stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=True).stdout
    assert "dsnet: engine built" in first
    assert "dsnet: engine reused" in second
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1


def test_tensorrt_engine_is_rebuilt_for_another_precision(engines: Path) -> None:
    _require("tensorrt")
    fp16 = _trt(DSNET, engines, precision="fp16")
    fp32 = _trt(DSNET, engines, precision="fp32")
    assert fp32.built and fp32.engine_path != fp16.engine_path
    assert fp16.engine_path.is_file()
    x = np.random.default_rng(3).standard_normal((1, 1, 256, 256), np.float32)
    assert float(np.abs(fp32.run(x) - create_runner(DSNET, "cpu").run(x)).max()) < 1e-3  # FP32 tracks the CPU


def test_tensorrt_engine_is_rebuilt_when_the_model_file_changes(tmp_path: Path) -> None:
    _require("tensorrt")
    model = tmp_path / "model.onnx"
    shutil.copyfile(DSNET, model)
    old = _trt(model, tmp_path)
    assert old.built
    shutil.copyfile(UNET, model)  # an updated model at the same path
    new = _trt(model, tmp_path)
    assert new.built and new.engine_path != old.engine_path
    x = np.random.default_rng(5).standard_normal((1, 1, 256, 256), np.float32)
    want = create_runner(UNET, "cpu").run(x)
    assert float(np.abs(new.run(x) - want).max()) < 0.05  # it serves the new model, not the cached one


def test_tensorrt_engine_is_rebuilt_for_another_tensorrt_version_or_gpu(engines: Path) -> None:
    _require("tensorrt")
    from gateway.inference.tensorrt_native import EngineIdentity

    here = _trt(DSNET, engines)  # the module's FP16 engine (built here if no earlier test built it)
    upgraded = _trt(DSNET, engines, identity=EngineIdentity(f"{here.identity.tensorrt}.1", here.identity.gpu))
    moved = _trt(DSNET, engines, identity=EngineIdentity(here.identity.tensorrt, "another GPU (sm_87)"))
    assert upgraded.built and moved.built
    assert len({here.engine_path, upgraded.engine_path, moved.engine_path}) == 3
    again = _trt(DSNET, engines)
    assert not again.built and again.engine_path == here.engine_path  # the original engine is still found


def test_an_unreadable_cached_engine_is_rebuilt(tmp_path: Path) -> None:
    _require("tensorrt")
    probe = _trt(DSNET, tmp_path)
    probe.engine_path.write_bytes(b"not an engine")
    again = _trt(DSNET, tmp_path)
    assert again.built and again.engine_path == probe.engine_path
    assert again.engine_path.stat().st_size > 1000


@pytest.mark.parametrize("backend", ["cuda", "tensorrt-ep"])
def test_ort_gpu_providers_match_cpu(backend: str, tmp_path: Path, lung1: np.ndarray,
                                     cpu_masks: np.ndarray) -> None:
    _require(backend)
    seg = Segmenter(backend=backend, state_dir=tmp_path)
    assert seg.backend == backend
    got = np.stack([seg.predict_hu(hu) for hu in lung1])
    assert dice(got, cpu_masks) >= 0.99


@pytest.mark.parametrize("backend", ["tensorrt", "tensorrt-ep", "cuda"])
def test_msenet_embeddings_match_cpu(backend: str, engines: Path) -> None:
    _require(backend)
    rng = np.random.default_rng(11)
    cpu = create_runner(MSENET, "cpu")
    gpu = create_runner(MSENET, backend, state_dir=engines)
    for batch in (1, 3):  # one capture, and what a key release presents
        feeds = {"fingerprint": rng.standard_normal((batch, 1, 96, 96), np.float32),
                 "iris": rng.standard_normal((batch, 1, 32, 256), np.float32)}
        want, got = cpu.run_all(feeds), gpu.run_all(feeds)
        for name in cpu.output_names:
            assert got[name].shape == want[name].shape
            assert cosine_rows(got[name], want[name]).min() >= 0.999, name
