"""Inference runners: one class per backend, registered explicitly by its `type` name.

    runner = create_runner("models/dsnet/dsnet.onnx", "auto")
    prob = runner.run(x)                     # x: float32 of runner.input_shape

    outs = runner.run_all({"fingerprint": fp, "iris": ir})   # several inputs / a dynamic batch, by name

Backends: `cpu` (ONNX Runtime CPU), `cuda` (ORT CUDA EP), `tensorrt-ep` (ORT TensorRT EP), `tensorrt` (native
TensorRT engine built from the ONNX, cached in the state dir). `auto` takes the fastest one that loads, in
the order tensorrt, tensorrt-ep, cuda, cpu. This package imports without tensorrt, CUDA or torch: GPU
libraries are imported only when a GPU runner is created.

Versions: native TensorRT 8.6 (JetPack 6.0) and 10.x (JetPack 6.1/6.2 ship 10.3; x86), dispatched in
`trt_api`; older or 11+ is refused with a clear error. onnxruntime-gpu 1.22-1.26 (CUDA 12) and 1.27-1.31
(CUDA 13) on x86; Jetson ORT builds come from NVIDIA's Jetson index. The full matrix, and what PyPI serves,
is in benchmarks/README.md ("GPU").
"""

from __future__ import annotations

from pathlib import Path

import structlog

from gateway.inference.base import BackendUnavailable, ModelRunner
from gateway.inference.ort_cpu import OrtCpuRunner
from gateway.inference.ort_cuda import OrtCudaRunner
from gateway.inference.ort_tensorrt import OrtTensorRTRunner
from gateway.inference.tensorrt_native import TensorRTRunner

__all__ = ["BackendUnavailable", "ModelRunner", "RUNNER_TYPES", "AUTO_ORDER", "available_backends", "create_runner"]

log = structlog.get_logger(__name__)

RUNNER_TYPES: dict[str, type[ModelRunner]] = {
    OrtCpuRunner.type_name: OrtCpuRunner,
    OrtCudaRunner.type_name: OrtCudaRunner,
    OrtTensorRTRunner.type_name: OrtTensorRTRunner,
    TensorRTRunner.type_name: TensorRTRunner,
}
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "tensorrt-ep", "cuda", "cpu")


def available_backends() -> dict[str, str | None]:
    """Each backend type -> None when it can run here, else why not."""
    return {name: cls.unavailable_reason() for name, cls in RUNNER_TYPES.items()}


def create_runner(model_path: str | Path, backend: str = "auto", *, threads: int | None = None,
                  state_dir: Path | None = None, warmup: bool = True) -> ModelRunner:
    """A loaded, warmed-up runner for `model_path` on `backend` ("auto" or a key of RUNNER_TYPES).

    Raises BackendUnavailable (a ConfigError) when the named backend is missing here, and ValueError for an
    unknown backend name. `threads` sets ONNX Runtime's intra-op threads (CPU work); `state_dir` holds
    engine caches.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if backend == "auto":
        reasons = []
        for name in AUTO_ORDER:
            try:
                return create_runner(path, name, threads=threads, state_dir=state_dir, warmup=warmup)
            except BackendUnavailable as exc:
                reasons.append(exc.reason)
                log.info("inference_backend_skipped", backend=name, reason=exc.reason)
        raise BackendUnavailable("auto", "; ".join(reasons))
    cls = RUNNER_TYPES.get(backend)
    if cls is None:
        raise ValueError(f"unknown inference backend {backend!r}; choose auto or one of {sorted(RUNNER_TYPES)}")
    runner = cls(path, threads=threads, state_dir=state_dir)  # type: ignore[call-arg]
    if warmup:
        runner.warmup()
    log.info("inference_backend_ready", backend=backend, model=path.name)
    return runner
