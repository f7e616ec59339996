"""Runner registry, backend errors and the engine cache key (CPU-only parts of gateway.inference)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.inference import RUNNER_TYPES, BackendUnavailable, available_backends, create_runner
from gateway.files import write_atomic
from gateway.inference.engine_cache import engine_key, engine_path
from gateway.resources import MODELS_DIR

MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"


def test_registry_names_every_backend_explicitly() -> None:
    assert set(RUNNER_TYPES) == {"cpu", "cuda", "tensorrt-ep", "tensorrt"}
    for name, cls in RUNNER_TYPES.items():
        assert cls.type_name == name


def test_cpu_runner_runs_the_committed_model() -> None:
    runner = create_runner(MODEL, "cpu", threads=1)
    assert runner.type_name == "cpu"
    out = runner.run(np.zeros(runner.input_shape, np.float32))
    assert out.shape == runner.input_shape
    assert np.all((out >= 0) & (out <= 1))


def test_auto_picks_a_backend_that_can_run_here() -> None:
    runner = create_runner(MODEL, "auto", threads=1)
    assert available_backends()[runner.type_name] is None


def test_wrong_input_shape_is_refused() -> None:
    runner = create_runner(MODEL, "cpu", threads=1, warmup=False)
    with pytest.raises(ValueError, match="input shape"):
        runner.run(np.zeros((1, 1, 128, 128), np.float32))


def test_missing_tensorrt_package_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail like an absent package
    with pytest.raises(BackendUnavailable, match="'tensorrt' is not available: the tensorrt Python package"):
        create_runner(MODEL, "tensorrt")
    assert available_backends()["tensorrt"] is not None


def test_missing_cuda_provider_gives_a_clear_error() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA; the missing-provider path cannot occur here")
    with pytest.raises(BackendUnavailable, match="'cuda' is not available: .*CUDAExecutionProvider") as info:
        create_runner(MODEL, "cuda")
    assert isinstance(info.value, ConfigError)


def test_unknown_backend_and_missing_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown inference backend 'npu'"):
        create_runner(MODEL, "npu")
    with pytest.raises(FileNotFoundError):
        create_runner(tmp_path / "absent.onnx", "cpu")


def test_engine_cache_key_changes_with_every_field(tmp_path: Path) -> None:
    base = engine_key("ab" * 32, "10.3.0", "NVIDIA H100", "fp16")
    paths = {engine_path(tmp_path, base)}
    for field, value in (("onnx_sha256", "cd" * 32), ("tensorrt", "10.4.0"), ("gpu", "Orin"), ("precision", "fp32")):
        paths.add(engine_path(tmp_path, {**base, field: value}))
    assert len(paths) == 5
    assert engine_path(tmp_path, dict(base)) == engine_path(tmp_path, base)


def test_write_atomic_leaves_only_the_final_file(tmp_path: Path) -> None:
    target = tmp_path / "engines" / "x.engine"
    target.parent.mkdir()
    write_atomic(target, b"plan")
    write_atomic(target, b"plan 2", mode=0o644, sync_dir=True)
    assert target.read_bytes() == b"plan 2"
    assert [p.name for p in target.parent.iterdir()] == ["x.engine"]
    assert target.stat().st_mode & 0o777 == 0o644
    secret = tmp_path / "secret"
    write_atomic(secret, b"s")
    assert secret.stat().st_mode & 0o777 == 0o600
