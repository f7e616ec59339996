"""ONNX Runtime plumbing shared by the CPU, CUDA and TensorRT execution-provider runners.

Session settings (CPU work; measured by benchmarks/ort_session_bench.py, benchmarks/results/ort_session.json):
- intra-op threads: the `threads` asked for, else `default_threads()` — the cores this process may use, at
  most MAX_DEFAULT_THREADS (a judgement, not measured on this 2-core machine: on a network this small more
  threads mostly add synchronisation);
- intra- and inter-op spinning OFF (`session.intra_op.allow_spinning=0`): spinning threads keep burning CPU
  after each inference, taking it from paho, mosquitto and the other workers. On the 2-core EPYC (heavily
  loaded, so ratios only) spinning off gave p50 ×0.48 and CPU per inference ×0.59 for one caller, and for two
  callers on one session p50 ×0.44 and ×1.87 inferences/s against spinning on;
- sessions in the daemon (`segmentation.sessions`, `gateway.daemon.protect.segmenter_pool`, measured in
  the daemon benchmark, interleaved, load average 6-7, benchmarks/results/daemon-sessions): one session per
  protection worker with `cores // workers` threads, and one more with the default threads for an image
  segmented while no other is. Against one shared 2-thread session, a 2-thread session per worker gave ×1.17
  images/s at the same e2e p50 (a 1-thread one ×0.84: under load a process's CPU share grows with its
  runnable threads); against those, the 1-thread sessions plus the one for an image alone spent 6-10 % less
  CPU per image at ×0.93-0.98 images/s (within the rounds' spread) with the lone image at full speed. An
  earlier ONNX-Runtime-only run found no gain for per-worker sessions (two callers: 8.0 inferences/s shared,
  7.5 with a 2-thread session each, 5.8 with a 1-thread session each);
- inter-op: one thread, sequential execution (the graphs are a single chain of nodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from gateway.inference.base import BackendUnavailable, ModelRunner
from gateway.resources import usable_cores

MAX_DEFAULT_THREADS = 4
log = structlog.get_logger(__name__)


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


def default_threads(cores: int | None = None) -> int:
    """Intra-op threads when the configuration names none: the usable cores, capped."""
    return max(1, min(cores if cores is not None else usable_cores(), MAX_DEFAULT_THREADS))


def session_options(ort: Any, threads: int | None, *, spinning: bool = False) -> Any:
    """The SessionOptions every runner uses (see the module doc); `spinning` exists for the benchmark."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads if threads is not None else default_threads()
    options.inter_op_num_threads = 1
    flag = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", flag)
    options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    options.log_severity_level = 3
    return options


class OrtRunner(ModelRunner):
    """A runner backed by one ONNX Runtime InferenceSession with an explicit provider list."""

    provider: str = "CPUExecutionProvider"

    def __init__(self, model_path: Path, *, threads: int | None = None, state_dir: Path | None = None,
                 spinning: bool = False) -> None:
        super().__init__(model_path)
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(self.type_name, reason)
        ort = ort_module()
        if self.provider != "CPUExecutionProvider" and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu >= 1.21 finds the CUDA and cuDNN libraries of NVIDIA's pip wheels itself, so the
            # daemon needs no LD_LIBRARY_PATH for them; where they come from the system this finds nothing.
            try:
                ort.preload_dlls()
            except (OSError, RuntimeError) as exc:
                log.info("ort_preload_dlls_failed", error=str(exc))
        self.threads = threads if threads is not None else default_threads()
        options = session_options(ort, self.threads, spinning=spinning)
        providers = self.providers(state_dir)
        try:
            self.session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own pybind classes (Fail, RuntimeException...), no common base
            if self.provider == "CPUExecutionProvider":
                raise
            # A GPU provider that is compiled in but cannot start (no libnvinfer, CUDA too old for the driver)
            # is a missing backend, so that `auto` moves on to the next one.
            raise BackendUnavailable(self.type_name, f"{self.provider} failed to start: {exc}") from exc
        active = self.session.get_providers()
        if active[0] != self.provider:
            # ORT silently falls back to CPU when a GPU provider fails to initialise; that is not what the
            # caller asked for, so say so instead of running slowly under a misleading name.
            raise BackendUnavailable(self.type_name, f"{self.provider} failed to initialise (active: {active})")
        for inp in self.session.get_inputs():
            dims = [d if isinstance(d, int) and d > 0 else -1 for d in inp.shape]
            if any(d < 0 for d in dims[1:]):
                raise BackendUnavailable(
                    self.type_name, f"model input {inp.name} may only have a dynamic batch dimension, got {inp.shape}")
            self.input_shapes[inp.name] = tuple(dims)
        self.output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return provider_missing(cls.provider)

    def providers(self, state_dir: Path | None) -> list[Any]:
        """The provider list handed to the session (the GPU ones keep CPU as a fallback for odd nodes)."""
        return [self.provider]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, self.check_feeds(feeds))
        return {name: np.asarray(out, dtype=np.float32) for name, out in zip(self.output_names, outs, strict=True)}

    def run(self, x: np.ndarray) -> np.ndarray:
        # The single-output fetch keeps the hot path of DS-Net free of the dict plumbing.
        if len(self.input_shapes) != 1:
            return super().run(x)
        (name,) = self.input_shapes
        out = self.session.run(self.output_names[:1], self.check_feeds({name: x}))[0]
        return np.asarray(out, dtype=np.float32)
