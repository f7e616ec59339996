"""The runner interface shared by every inference backend."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from gateway.errors import ConfigError


class BackendUnavailable(ConfigError):
    """A requested inference backend cannot run here; the message says which and what is missing."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"inference backend {backend!r} is not available: {reason}")
        self.backend = backend
        self.reason = reason


class Runner(abc.ABC):
    """Runs one ONNX model with a fixed input shape on one backend.

    Subclasses load the model in `__init__` and must raise `BackendUnavailable` when their backend is
    missing. `create_runner` warms each runner up once before handing it out, so the first real request does
    not pay for lazy initialisation (kernel selection, engine deserialisation, memory pools).
    """

    type_name: str = ""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else a short reason (missing package, no GPU...)."""

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The model's fixed input shape, e.g. (1, 1, 256, 256)."""

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference: float32 input of `input_shape` -> the model's first output as float32."""

    def warmup(self, iterations: int = 2) -> None:
        """Run a few inferences on zeros so later calls see steady-state latency."""
        zeros = np.zeros(self.input_shape, np.float32)
        for _ in range(iterations):
            self.run(zeros)

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """The input as contiguous float32, or ValueError when its shape is not the model's."""
        arr = np.ascontiguousarray(x, dtype=np.float32)
        if arr.shape != self.input_shape:
            raise ValueError(f"input shape {arr.shape} != model input {self.input_shape}")
        return arr
