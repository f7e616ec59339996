"""The runner interface shared by every inference backend."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.errors import ConfigError


class BackendUnavailable(ConfigError):
    """A requested inference backend cannot run here; the message says which and what is missing."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"inference backend {backend!r} is not available: {reason}")
        self.backend = backend
        self.reason = reason


class ModelRunner(abc.ABC):
    """Runs one ONNX model on one backend.

    Inputs and outputs are float32 and named as in the ONNX graph. A dimension given as -1 in
    `input_shapes` is dynamic (the leading batch dimension of MSE-Net); every other one is fixed.
    `run(x)` is the single-input shorthand (DS-Net); `run_all(feeds)` takes every input by name and returns
    every output by name.

    Subclasses load the model in `__init__` and must raise `BackendUnavailable` when their backend is
    missing. `create_runner` warms each runner up once before handing it out, so the first real request does
    not pay for lazy initialisation (kernel selection, engine deserialisation, memory pools).
    """

    type_name: str = ""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.output_names: list[str] = []

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else a short reason (missing package, no GPU...)."""

    @abc.abstractmethod
    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference: every input by name (float32, shapes as `input_shapes`) -> every output by name."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of a model with one fixed-shape input, e.g. (1, 1, 256, 256)."""
        if len(self.input_shapes) != 1:
            raise ValueError(f"{self.model_path.name} has {len(self.input_shapes)} inputs; use run_all")
        (shape,) = self.input_shapes.values()
        if any(d < 0 for d in shape):
            raise ValueError(f"{self.model_path.name} has a dynamic input shape {shape}; use run_all")
        return shape

    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference of a single-input model: float32 input of `input_shape` -> its first output."""
        if len(self.input_shapes) != 1:
            raise ValueError(f"{self.model_path.name} has {len(self.input_shapes)} inputs; use run_all")
        (name,) = self.input_shapes
        return self.run_all({name: x})[self.output_names[0]]

    def example_feeds(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Zeros for every input, dynamic dimensions set to `batch`."""
        return {name: np.zeros(tuple(batch if d < 0 else d for d in shape), np.float32)
                for name, shape in self.input_shapes.items()}

    def warmup(self, iterations: int = 2) -> None:
        """Run a few inferences on zeros so later calls see steady-state latency."""
        feeds = self.example_feeds()
        for _ in range(iterations):
            self.run_all(feeds)

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every input as contiguous float32, or ValueError naming a missing, extra or misshapen input."""
        if set(feeds) != set(self.input_shapes):
            raise ValueError(f"inputs {sorted(feeds)} != model inputs {sorted(self.input_shapes)}")
        checked = {}
        batch = None
        for name, shape in self.input_shapes.items():
            arr = np.ascontiguousarray(feeds[name], dtype=np.float32)
            fits = arr.ndim == len(shape) and all(
                d < 0 and a >= 1 or a == d for a, d in zip(arr.shape, shape, strict=True))
            if not fits:
                raise ValueError(f"input shape {arr.shape} != model input {shape} ({name})")
            if shape and shape[0] < 0:
                if batch is not None and arr.shape[0] != batch:
                    raise ValueError(f"inputs disagree on the batch size ({batch} vs {arr.shape[0]})")
                batch = arr.shape[0]
            checked[name] = arr
        return checked
