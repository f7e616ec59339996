"""ONNX Runtime on the CPU (backend type `cpu`): always present, the reference for every GPU backend."""

from __future__ import annotations

from gateway.inference._ort import OrtRunner


class OrtCpuRunner(OrtRunner):
    type_name = "cpu"
    provider = "CPUExecutionProvider"
