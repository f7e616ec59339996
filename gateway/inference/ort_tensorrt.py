"""ONNX Runtime with the TensorRT execution provider (backend type `tensorrt-ep`).

ORT builds the TensorRT engine itself; its engine cache lives under the state directory so a restart does
not rebuild. ORT keys its own cache files by model and TensorRT version; we put them in a folder per ONNX
sha256 so a new model never picks up an old engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.inference._ort import OrtRunner
from gateway.inference.engine_cache import default_state_dir, file_sha256
from gateway.state_layout import StateLayout


class OrtTensorRTRunner(OrtRunner):
    type_name = "tensorrt-ep"
    provider = "TensorrtExecutionProvider"

    def providers(self, state_dir: Path | None) -> list[Any]:
        cache = StateLayout(state_dir or default_state_dir()).ort_trt_cache / file_sha256(self.model_path)[:16]
        cache.mkdir(parents=True, exist_ok=True)
        options = {
            "device_id": 0,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        return [(self.provider, options), ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
