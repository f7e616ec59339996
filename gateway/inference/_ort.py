"""ONNX Runtime plumbing shared by the CPU, CUDA and TensorRT execution-provider runners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gateway.inference.base import BackendUnavailable, Runner


def ort_module() -> Any:
    """onnxruntime, or BackendUnavailable naming the missing package."""
    try:
        import onnxruntime
    except ImportError as exc:  # the runtime dependency is missing from this environment
        raise BackendUnavailable("cpu", f"onnxruntime is not installed ({exc})") from exc
    return onnxruntime


def provider_missing(provider: str) -> str | None:
    try:
        ort = ort_module()
    except BackendUnavailable as exc:
        return exc.reason
    if provider not in ort.get_available_providers():
        return f"ONNX Runtime here has no {provider} (install onnxruntime-gpu with a matching CUDA)"
    return None


class OrtRunner(Runner):
    """A runner backed by one ONNX Runtime InferenceSession with an explicit provider list."""

    provider: str = "CPUExecutionProvider"

    def __init__(self, model_path: Path, *, threads: int | None = None, state_dir: Path | None = None) -> None:
        super().__init__(model_path)
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(self.type_name, reason)
        ort = ort_module()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = self.providers(state_dir)
        self.session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
        active = self.session.get_providers()
        if active[0] != self.provider:
            # ORT silently falls back to CPU when a GPU provider fails to initialise; that is not what the
            # caller asked for, so say so instead of running slowly under a misleading name.
            raise BackendUnavailable(self.type_name, f"{self.provider} failed to initialise (active: {active})")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        if not all(isinstance(d, int) for d in inp.shape):
            raise BackendUnavailable(self.type_name, f"model input must have a fixed shape, got {inp.shape}")
        self._shape = tuple(int(d) for d in inp.shape)
        self.output_name = self.session.get_outputs()[0].name

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return provider_missing(cls.provider)

    def providers(self, state_dir: Path | None) -> list[Any]:
        """The provider list handed to the session (the GPU ones keep CPU as a fallback for odd nodes)."""
        return [self.provider]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: self.check_input(x)})[0]
        return np.asarray(out, dtype=np.float32)
