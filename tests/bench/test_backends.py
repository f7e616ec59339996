"""The harness measures every inference backend the machine has, GPU ones included where present."""

from __future__ import annotations

import pytest

from medshield_tools.bench.harness import available_backends, load_segmenter
from tests.conftest import gpu_available


def test_cpu_always_listed_and_gpu_only_with_a_gpu() -> None:
    backends = available_backends()
    assert "cpu" in backends and backends[-1] == "cpu"  # fastest first, CPU last
    if not gpu_available():
        assert not {"cuda", "tensorrt-ep", "tensorrt"} & set(backends)


@pytest.mark.gpu
def test_gpu_backends_detected() -> None:
    assert {"cuda", "tensorrt-ep", "tensorrt"} & set(available_backends())


def test_unknown_backend_is_reported_not_raised() -> None:
    segment, why = load_segmenter("no-such-backend")
    assert segment is None and why
