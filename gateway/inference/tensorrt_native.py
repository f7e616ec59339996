"""Native TensorRT (backend type `tensorrt`): an engine built from the ONNX file, cached in the state dir.

The engine is built with FP16 enabled where the GPU supports it and stored under a key made of the ONNX
sha256, the TensorRT version, the GPU name and the precision (see engine_cache), so it is built once per
model/GPU/TensorRT combination and rebuilt automatically when any of them changes. Uses the TensorRT 10
name-based tensor API (set_tensor_address + execute_async_v3) and the CUDA runtime through ctypes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import structlog

from gateway.inference.base import BackendUnavailable, Runner
from gateway.inference.cudart import CudaError, CudaRuntime
from gateway.files import write_atomic
from gateway.inference.engine_cache import default_state_dir, engine_key, engine_path, file_sha256

log = structlog.get_logger(__name__)

WORKSPACE_BYTES = 1 << 30


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable("tensorrt", f"the tensorrt Python package is not installed ({exc})") from exc
    return tensorrt


class TensorRTRunner(Runner):
    type_name = "tensorrt"

    def __init__(self, model_path: Path, *, threads: int | None = None, state_dir: Path | None = None,
                 precision: str = "fp16") -> None:
        super().__init__(model_path)
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', not {precision!r}")
        trt = _tensorrt()
        try:
            self.cuda = CudaRuntime()
            gpu = self.cuda.device_name()
        except CudaError as exc:
            raise BackendUnavailable(self.type_name, str(exc)) from exc
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(self.logger)
        # FP16 only where the GPU has fast FP16 (older TensorRT exposes the query; 10.x GPUs all do).
        if precision == "fp16" and not getattr(builder, "platform_has_fast_fp16", True):
            precision = "fp32"
        self.precision = precision
        self.key = engine_key(file_sha256(self.model_path), trt.__version__, gpu, precision)
        self.engine_path = engine_path(state_dir or default_state_dir(), self.key)
        runtime = trt.Runtime(self.logger)
        engine = None
        self.built = False
        if self.engine_path.exists():
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                log.warning("tensorrt_engine_unreadable_rebuilding", path=str(self.engine_path))
        if engine is None:
            plan = self._build(builder)
            self.engine_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.engine_path, plan)
            engine = runtime.deserialize_cuda_engine(plan)
            self.built = True
            if engine is None:
                raise BackendUnavailable(self.type_name, "TensorRT could not deserialise the engine it built")
        self.engine = engine
        self.context = engine.create_execution_context()
        self._bind()
        log.info("tensorrt_engine_ready", built=self.built, precision=precision, gpu=gpu,
                 path=str(self.engine_path))

    def _build(self, builder: Any) -> bytes:
        trt = self.trt
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.model_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(self.type_name, f"TensorRT cannot parse {self.model_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendUnavailable(self.type_name, "TensorRT failed to build an engine from the ONNX model")
        return bytes(plan)

    def _bind(self) -> None:
        trt, engine = self.trt, self.engine
        self.stream = self.cuda.stream_create()
        self.buffers: dict[str, int] = {}
        self.host_out: np.ndarray | None = None
        self.input_name = self.output_name = ""
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendUnavailable(self.type_name, f"tensor {name} has a dynamic shape {shape}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if dtype != np.float32:
                raise BackendUnavailable(self.type_name, f"tensor {name} is {dtype}, expected float32")
            ptr = self.cuda.malloc(int(np.prod(shape)) * dtype.itemsize)
            self.buffers[name] = ptr
            self.context.set_tensor_address(name, ptr)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_name, self._shape = name, shape
            elif not self.output_name:
                self.output_name = name
                self.host_out = np.empty(shape, np.float32)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            _tensorrt()
            CudaRuntime()
        except BackendUnavailable as exc:
            return exc.reason
        except CudaError as exc:
            return str(exc)
        return None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def run(self, x: np.ndarray) -> np.ndarray:
        arr = self.check_input(x)
        assert self.host_out is not None
        self.cuda.copy_to_device(self.buffers[self.input_name], arr, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.cuda.copy_to_host(self.host_out, self.buffers[self.output_name], self.stream)
        self.cuda.synchronize(self.stream)
        return self.host_out.copy()

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the runner is garbage-collected)."""
        for ptr in getattr(self, "buffers", {}).values():
            self.cuda.free(ptr)
        self.buffers = {}
        if getattr(self, "stream", 0):
            self.cuda.stream_destroy(self.stream)
            self.stream = 0

    def __del__(self) -> None:
        try:
            self.close()
        except (CudaError, AttributeError):
            pass
