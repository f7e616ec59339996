"""Native TensorRT (backend type `tensorrt`): an engine built from the ONNX file, cached in the state dir.

The engine is built with FP16 enabled where the GPU supports it (or FP32 when asked) and stored under a key
made of the ONNX sha256, the TensorRT version, the GPU (name and compute capability), the precision and the
input profile (see engine_cache), so it is built once per model/GPU/TensorRT combination, reused on every
restart, and rebuilt automatically when any of them changes. An unreadable cached engine is rebuilt too.

Both TensorRT API generations in deployments are supported (the table and the pure dispatch are in
`trt_api`): 8.6 (JetPack 6.0) with explicit-batch network creation and binding indices + execute_async_v2,
and 10.x (JetPack 6.1/6.2, x86) with tensor names + execute_async_v3. Anything older or newer is refused with
a BackendUnavailable that names the supported range. Device memory and the stream come from the CUDA runtime
through ctypes (`cudart`), so no pycuda / cuda-python / torch is needed.

Models with a dynamic batch dimension (MSE-Net) get one optimisation profile, batch 1..max_batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from gateway.files import write_atomic
from gateway.inference.base import BackendUnavailable, ModelRunner
from gateway.inference.cudart import CudaError, CudaRuntime
from gateway.inference.engine_cache import default_state_dir, engine_key, engine_path, file_sha256, timing_cache_path
from gateway.inference.trt_api import (
    TensorRTApi,
    UnsupportedTensorRT,
    api_for,
    network_flags,
    optimization_profile,
    profile_tag,
)

log = structlog.get_logger(__name__)

WORKSPACE_BYTES = 1 << 30
MAX_BATCH = 16  # gateway.biometrics.features.MAX_CAPTURES: the most capture pairs one call embeds
OPT_BATCH = 3  # gateway.biometrics.keyrelease.RELEASE_CAPTURES: what a key release presents


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        if exc.name == "tensorrt":
            raise BackendUnavailable("tensorrt", f"the tensorrt Python package is not installed ({exc})") from exc
        # The bindings are there but libnvinfer is not: what a PyPI-only install of the bindings wheel gives.
        raise BackendUnavailable("tensorrt", f"the tensorrt package is installed but its libraries do not load"
                                             f" ({exc})") from exc
    except OSError as exc:
        raise BackendUnavailable("tensorrt", f"the tensorrt package is installed but its libraries do not load"
                                             f" ({exc})") from exc
    return tensorrt


def supported_api(trt: Any) -> TensorRTApi:
    """The API generation of the imported tensorrt module, or BackendUnavailable for an unsupported one."""
    try:
        return api_for(str(getattr(trt, "__version__", "")))
    except UnsupportedTensorRT as exc:
        raise BackendUnavailable("tensorrt", str(exc)) from exc


@dataclass(frozen=True)
class EngineIdentity:
    """The installation an engine is built for: the TensorRT version and the GPU ("name (sm_XY)")."""

    tensorrt: str
    gpu: str


@dataclass
class _Tensor:
    name: str
    index: int
    is_input: bool
    shape: tuple[int, ...]  # as the engine declares it: -1 for the dynamic batch
    ptr: int = 0


class TensorRTRunner(ModelRunner):
    type_name = "tensorrt"

    def __init__(self, model_path: Path, *, threads: int | None = None, state_dir: Path | None = None,
                 precision: str = "fp16", max_batch: int = MAX_BATCH, opt_batch: int = OPT_BATCH,
                 identity: EngineIdentity | None = None) -> None:
        """Load (or build and cache) the engine for `model_path`.

        `identity` is what the engine cache is keyed on besides the model, precision and profile; by default
        the TensorRT version and GPU detected here. `threads` is accepted for a uniform runner signature.
        """
        super().__init__(model_path)
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', not {precision!r}")
        trt = _tensorrt()
        self.api = supported_api(trt)
        try:
            self.cuda = CudaRuntime()
            major, minor = self.cuda.compute_capability()
            detected = EngineIdentity(str(trt.__version__), f"{self.cuda.device_name()} (sm_{major}{minor})")
        except CudaError as exc:
            raise BackendUnavailable(self.type_name, str(exc)) from exc
        self.identity = identity or detected
        self.trt = trt
        self.stream = 0
        self.tensors: list[_Tensor] = []
        self.logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(self.logger)
        # FP16 only where the GPU has fast FP16 (8.6 exposes the query; every GPU TensorRT 10 runs on has it).
        if precision == "fp16" and not getattr(builder, "platform_has_fast_fp16", True):
            precision = "fp32"
        self.precision = precision
        network, parser = self._parse(builder)
        self.profiles = {network.get_input(i).name: optimization_profile(
            tuple(int(d) for d in network.get_input(i).shape), max_batch, opt_batch) for i in range(network.num_inputs)}
        self.key = engine_key(file_sha256(self.model_path), self.identity.tensorrt, self.identity.gpu, precision,
                              profile_tag(self.profiles))
        self.engine_path = engine_path(state_dir or default_state_dir(), self.key)
        runtime = trt.Runtime(self.logger)
        engine = None
        self.built = False
        if self.engine_path.exists():
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                log.warning("tensorrt_engine_unreadable_rebuilding", path=str(self.engine_path))
        if engine is None:
            plan = self._build(builder, network)
            self.engine_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.engine_path, plan)
            engine = runtime.deserialize_cuda_engine(plan)
            self.built = True
            if engine is None:
                raise BackendUnavailable(self.type_name, "TensorRT could not deserialise the engine it built")
        del parser
        self.engine = engine
        self.context = engine.create_execution_context()
        self._bind()
        log.info("tensorrt_engine_ready", built=self.built, precision=precision, gpu=self.identity.gpu,
                 tensorrt=self.identity.tensorrt, api=self.api.generation, path=str(self.engine_path))

    def _parse(self, builder: Any) -> tuple[Any, Any]:
        trt = self.trt
        network = builder.create_network(network_flags(self.api, int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.model_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(self.type_name, f"TensorRT cannot parse {self.model_path.name}: {errors}")
        return network, parser

    def _build(self, builder: Any, network: Any) -> bytes:
        trt = self.trt
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        # The timing cache keeps the measured speed of each layer's kernels: a rebuild (new model version,
        # other precision) re-times only what it has not seen. Same identity fields as the engines.
        cache = timing_cache_path(self.engine_path.parent, self.identity.tensorrt, self.identity.gpu)
        timing = None
        if cache.exists():
            try:
                timing = config.create_timing_cache(cache.read_bytes())
            except (RuntimeError, TypeError, ValueError):
                log.warning("tensorrt_timing_cache_unreadable", path=str(cache))
        config.set_timing_cache(timing or config.create_timing_cache(b""), False)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        dynamic = {name: p for name, p in self.profiles.items() if p is not None}
        if dynamic:
            profile = builder.create_optimization_profile()
            for name, (lo, opt, hi) in dynamic.items():
                profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendUnavailable(self.type_name, "TensorRT failed to build an engine from the ONNX model")
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    # The two API generations differ only in these five calls.
    def _io(self) -> list[tuple[str, bool, tuple[int, ...], Any]]:
        engine, trt = self.engine, self.trt
        if self.api.named_tensors:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            return [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, tuple(engine.get_tensor_shape(n)),
                     engine.get_tensor_dtype(n)) for n in names]
        return [(engine.get_binding_name(i), bool(engine.binding_is_input(i)), tuple(engine.get_binding_shape(i)),
                 engine.get_binding_dtype(i)) for i in range(engine.num_bindings)]

    def _set_input_shape(self, t: _Tensor, shape: tuple[int, ...]) -> None:
        ok = (self.context.set_input_shape(t.name, shape) if self.api.named_tensors
              else self.context.set_binding_shape(t.index, shape))
        if ok is False:
            raise ValueError(f"input {t.name}: shape {shape} is outside the engine's profile")

    def _context_shape(self, t: _Tensor) -> tuple[int, ...]:
        shape = (self.context.get_tensor_shape(t.name) if self.api.named_tensors
                 else self.context.get_binding_shape(t.index))
        return tuple(int(d) for d in shape)

    def _set_address(self, t: _Tensor) -> None:
        if self.api.named_tensors:
            self.context.set_tensor_address(t.name, t.ptr)

    def _execute(self) -> bool:
        if self.api.named_tensors:
            return bool(self.context.execute_async_v3(self.stream))
        bindings = [t.ptr for t in sorted(self.tensors, key=lambda t: t.index)]
        return bool(self.context.execute_async_v2(bindings, self.stream))

    def _bind(self) -> None:
        trt = self.trt
        self.stream = self.cuda.stream_create()
        for index, (name, is_input, shape, dtype) in enumerate(self._io()):
            shape = tuple(int(d) for d in shape)
            if np.dtype(trt.nptype(dtype)) != np.float32:
                raise BackendUnavailable(
                    self.type_name, f"tensor {name} is {np.dtype(trt.nptype(dtype))}, expected float32")
            self.tensors.append(_Tensor(name, index, is_input, shape))
        # Size every buffer for the largest batch: set each dynamic input to its profile maximum and read the
        # output shapes that follow.
        for t in self.tensors:
            profile = self.profiles.get(t.name) if t.is_input else None
            if profile is not None:
                self._set_input_shape(t, profile[2])
        for t in self.tensors:
            shape = self._context_shape(t)
            if any(d < 0 for d in shape):
                raise BackendUnavailable(self.type_name, f"tensor {t.name} has an unresolved shape {shape}")
            t.ptr = self.cuda.malloc(int(np.prod(shape)) * 4)
            self._set_address(t)
        self.input_shapes = {t.name: t.shape for t in self.tensors if t.is_input}
        self.output_names = [t.name for t in self.tensors if not t.is_input]
        self._shapes_set: dict[str, tuple[int, ...]] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            supported_api(_tensorrt())
            CudaRuntime()
        except BackendUnavailable as exc:
            return exc.reason
        except CudaError as exc:
            return str(exc)
        return None

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self.check_feeds(feeds)
        for t in self.tensors:
            if not t.is_input:
                continue
            arr = arrays[t.name]
            if self.profiles.get(t.name) is not None and self._shapes_set.get(t.name) != arr.shape:
                self._set_input_shape(t, arr.shape)
                self._shapes_set[t.name] = arr.shape
            self.cuda.copy_to_device(t.ptr, arr, self.stream)
        if not self._execute():
            raise RuntimeError("TensorRT execution failed")
        outs = {}
        for t in self.tensors:
            if not t.is_input:
                outs[t.name] = np.empty(self._context_shape(t), np.float32)
                self.cuda.copy_to_host(outs[t.name], t.ptr, self.stream)
        self.cuda.synchronize(self.stream)
        return outs

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the runner is garbage-collected)."""
        for t in getattr(self, "tensors", []):
            if t.ptr:
                self.cuda.free(t.ptr)
                t.ptr = 0
        if getattr(self, "stream", 0):
            self.cuda.stream_destroy(self.stream)
            self.stream = 0

    def __del__(self) -> None:
        try:
            self.close()
        except (CudaError, AttributeError):
            pass
