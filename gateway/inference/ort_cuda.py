"""ONNX Runtime with the CUDA execution provider (backend type `cuda`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.inference._ort import OrtRunner


class OrtCudaRunner(OrtRunner):
    type_name = "cuda"
    provider = "CUDAExecutionProvider"

    def providers(self, state_dir: Path | None) -> list[Any]:
        return [(self.provider, {"device_id": 0}), "CPUExecutionProvider"]
