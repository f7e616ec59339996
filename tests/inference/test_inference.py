"""Runner registry, backend errors, session settings, TensorRT version dispatch and the engine cache key
(the CPU-only parts of gateway.inference; the GPU halves are in test_gpu.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.files import write_atomic
from gateway.inference import RUNNER_TYPES, BackendUnavailable, available_backends, create_runner
from gateway.inference._ort import default_threads
from gateway.inference.engine_cache import engine_key, engine_path
from gateway.inference.trt_api import UnsupportedTensorRT, api_for, network_flags, optimization_profile, profile_tag
from gateway.resources import MODELS_DIR

MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"
MSENET = MODELS_DIR / "msenet" / "msenet.onnx"
REPO = Path(__file__).resolve().parents[2]


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


def test_tensorrt_without_its_libraries_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A package whose import fails the way the PyPI bindings wheel does when libnvinfer is absent.
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        'raise ImportError("libnvinfer.so.10: cannot open shared object file: No such file or directory")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    reason = available_backends()["tensorrt"]
    assert reason is not None and "installed but its libraries do not load" in reason and "libnvinfer" in reason


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
    base = ("ab" * 32, "10.3.0", "NVIDIA H100 (sm_90)", "fp16", "static")
    changed = ("cd" * 32, "10.4.0", "Orin (sm_87)", "fp32", "fingerprint:1/3/16;iris:1/3/16")
    paths = {engine_path(tmp_path, engine_key(*base))}
    for i, value in enumerate(changed):
        paths.add(engine_path(tmp_path, engine_key(*base[:i], value, *base[i + 1:])))
    assert len(paths) == len(changed) + 1
    assert engine_path(tmp_path, engine_key(*base)) == engine_path(tmp_path, engine_key(*base))
    assert engine_path(tmp_path, engine_key(*base)).parent == tmp_path / "engines"


@pytest.mark.parametrize(("version", "named"), [
    ("8.6.1", False),  # the PyPI 8.6 release
    ("8.6.2.3", False),  # JetPack 6.0
    ("9.3.0.1", False),
    ("10.3.0", True),  # JetPack 6.1 / 6.2
    ("10.16.1.11", True),
    ("10.14.1.48.post1", True),
])
def test_tensorrt_versions_pick_their_api_generation(version: str, named: bool) -> None:
    api = api_for(version)
    assert api.named_tensors is named
    # 8.x/9.x need the explicit-batch flag at network creation (0 means implicit batch there); 10.x takes 0.
    assert api.explicit_batch_flag is (not named)
    explicit_batch_bit = 0  # trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH's value in 8.6 and 10.x
    assert network_flags(api, explicit_batch_bit) == (0 if named else 1)
    assert api.generation == ("tensor-names" if named else "binding-indices")


@pytest.mark.parametrize(("version", "why"), [
    ("8.5.3.1", "too old"), ("8.4.1", "too old"), ("7.1.3", "too old"),  # JetPack 5.0 / 5.1 / 4.6
    ("11.0.0.114", "newer than"), ("", "cannot read"), ("trt", "cannot read"),
])
def test_unsupported_tensorrt_versions_are_refused_clearly(version: str, why: str) -> None:
    with pytest.raises(UnsupportedTensorRT, match=why) as info:
        api_for(version)
    if why != "cannot read":
        assert "8.6 to 10.x" in str(info.value)


def test_an_old_tensorrt_is_a_clear_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scoped stand-in: a module that carries only the version JetPack 5.1 installs. The version check runs
    # before any other TensorRT or CUDA call, so nothing else of the API is needed to reach the refusal.
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.5.2.2"))
    with pytest.raises(BackendUnavailable, match="'tensorrt' is not available: TensorRT 8.5.2.2 is too old"):
        create_runner(MODEL, "tensorrt")
    assert "too old" in str(available_backends()["tensorrt"])


def test_optimisation_profile_covers_the_dynamic_batch_only() -> None:
    assert optimization_profile((1, 1, 256, 256), 16, 3) is None
    assert optimization_profile((-1, 1, 96, 96), 16, 3) == ((1, 1, 96, 96), (3, 1, 96, 96), (16, 1, 96, 96))
    assert optimization_profile((-1, 128), 2, 3) == ((1, 128), (2, 128), (2, 128))  # opt never above max
    with pytest.raises(ValueError, match="only a dynamic batch"):
        optimization_profile((1, -1, 32), 16, 3)
    fp, ir = optimization_profile((-1, 1, 96, 96), 16, 3), optimization_profile((-1, 1, 32, 256), 16, 3)
    assert profile_tag({"a": None}) == "static"
    assert profile_tag({"iris": ir, "fingerprint": fp, "x": None}) == "fingerprint:1/3/16;iris:1/3/16"


def test_ort_sessions_take_threads_from_the_cores_and_do_not_spin() -> None:
    assert [default_threads(c) for c in (1, 2, 3, 16, 128)] == [1, 2, 3, 4, 4]
    runner = create_runner(MODEL, "cpu", warmup=False)
    options = runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == runner.threads == default_threads()
    assert create_runner(MODEL, "cpu", threads=1, warmup=False).session.get_session_options().intra_op_num_threads == 1


def test_a_two_input_dynamic_batch_model_runs_by_name() -> None:
    from gateway.biometrics.features import FeatureExtractor

    runner = create_runner(MSENET, "cpu", threads=1)
    assert runner.input_shapes == {"fingerprint": (-1, 1, 96, 96), "iris": (-1, 1, 32, 256)}
    assert runner.output_names == ["emb_fingerprint", "emb_iris", "emb_fused", "key_features"]
    rng = np.random.default_rng(7)
    feeds = {"fingerprint": rng.standard_normal((3, 1, 96, 96), np.float32),
             "iris": rng.standard_normal((3, 1, 32, 256), np.float32)}
    got = runner.run_all(feeds)
    ref = FeatureExtractor(MSENET).single_pass(feeds["fingerprint"], feeds["iris"])
    # key_features: unused
    for name, want in zip(runner.output_names, (ref.fingerprint, ref.iris, ref.fused), strict=False):
        assert got[name].shape == want.shape
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="use run_all"):
        runner.run(feeds["fingerprint"])
    with pytest.raises(ValueError, match="batch size"):
        runner.run_all({**feeds, "iris": feeds["iris"][:2]})
    with pytest.raises(ValueError, match="model inputs"):
        runner.run_all({"fingerprint": feeds["fingerprint"]})


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


@pytest.mark.slow
def test_gpu_check_without_a_gpu_says_so_and_self_checks_on_the_cpu(shared_data: Path) -> None:
    import shutil

    if shutil.which("nvidia-smi") or Path("/etc/nv_tegra_release").exists():
        pytest.skip("a GPU machine runs the real check")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no NVIDIA GPU found" in done.stdout and "self-check ran" in done.stdout
    out = Path(done.stdout.split("results (not GPU figures) in ")[1].split()[0])
    report = json.loads(out.read_text())
    subject = report["variants"]["cpu-1-thread"]
    assert subject["dsnet_parity"]["pass"] and subject["msenet_parity"]["pass"]
    assert subject["msenet_parity"]["decisions_agree"] == subject["msenet_parity"]["release_attempts"] > 0
    assert report["variants"]["tensorrt-fp16"]["unavailable"]
    assert not (REPO / "benchmarks" / "results" / "gpu").exists()  # committed results are never touched
    shutil.rmtree(out.parent)
