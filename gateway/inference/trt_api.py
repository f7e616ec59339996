"""Which TensorRT API generation a version speaks: pure functions, no TensorRT import.

The native runner supports the TensorRT releases deployments really have:

- 8.6, from JetPack 6.0 (L4T r36.2/36.3). Network creation: the explicit-batch flag is required (0 means
  implicit batch, which the ONNX parser refuses). I/O: binding indices (`get_binding_*`, `set_binding_shape`,
  `execute_async_v2(bindings)`).
- 9.x, never a JetPack or PyPI release: as 8.6 (both APIs are still present in 9.x).
- 10.x, from JetPack 6.1 / 6.2 (10.3) and on x86 (NGC containers, NVIDIA's pip index). Network creation:
  `create_network(0)`, explicit batch is the only mode. I/O: tensor names (`set_input_shape`,
  `set_tensor_address`, `execute_async_v3`).
- < 8.6 (JetPack 5 and older): refused with a clear error.
- ≥ 11: not yet supported, refused with a clear error (11 drops the weakly-typed precision flags the FP16
  build uses).

`api_for(version)` returns the generation; the runner picks its code path from it alone, so this table is
all there is to the dispatch and is unit-tested without a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

OLDEST_SUPPORTED = (8, 6)
FIRST_UNSUPPORTED = (11, 0)
SUPPORTED_RANGE = "8.6 to 10.x"


class UnsupportedTensorRT(ValueError):
    """The installed TensorRT is outside the versions the native runner supports."""


@dataclass(frozen=True)
class TensorRTApi:
    """The code path for one TensorRT version."""

    version: tuple[int, int]
    explicit_batch_flag: bool  # create_network needs 1 << EXPLICIT_BATCH (8.x/9.x); 10.x takes 0
    named_tensors: bool  # tensor-name API + execute_async_v3 (10.x); else binding indices + execute_async_v2

    @property
    def generation(self) -> str:
        return "tensor-names" if self.named_tensors else "binding-indices"


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string such as "10.3.0", "8.6.2.3" or "10.14.1.48.post1"."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if not match:
        raise UnsupportedTensorRT(f"cannot read the TensorRT version {text!r}")
    return int(match.group(1)), int(match.group(2))


def api_for(version: str) -> TensorRTApi:
    """The API generation for `version`, or UnsupportedTensorRT saying which versions are supported."""
    parsed = parse_version(version)
    if parsed < OLDEST_SUPPORTED:
        raise UnsupportedTensorRT(
            f"TensorRT {version} is too old: the native runner supports {SUPPORTED_RANGE} (JetPack 6.0 or later);"
            " use the cuda or cpu backend, or upgrade TensorRT")
    if parsed >= FIRST_UNSUPPORTED:
        raise UnsupportedTensorRT(
            f"TensorRT {version} is newer than the native runner supports ({SUPPORTED_RANGE});"
            " use the tensorrt-ep or cuda backend, or install TensorRT 10")
    if parsed[0] >= 10:
        return TensorRTApi(parsed, explicit_batch_flag=False, named_tensors=True)
    return TensorRTApi(parsed, explicit_batch_flag=True, named_tensors=False)


def network_flags(api: TensorRTApi, explicit_batch_bit: int) -> int:
    """The `create_network` flags: 1 << EXPLICIT_BATCH on 8.x/9.x (0 would mean implicit batch, which the
    ONNX parser refuses), 0 on 10.x where explicit batch is the only mode and the flag is deprecated."""
    return 1 << explicit_batch_bit if api.explicit_batch_flag else 0


def optimization_profile(shape: tuple[int, ...], max_batch: int, opt_batch: int
                         ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(min, opt, max) shapes for an input whose leading dimension may be dynamic (-1), or None when the
    shape is fixed. Only the batch dimension may vary: a model with another dynamic dimension is refused."""
    if all(d >= 0 for d in shape):
        return None
    if any(d < 0 for d in shape[1:]) or max_batch < 1:
        raise ValueError(f"only a dynamic batch dimension is supported, got shape {shape}")
    opt = min(max(1, opt_batch), max_batch)
    rest = tuple(shape[1:])
    return (1, *rest), (opt, *rest), (max_batch, *rest)


def profile_tag(profiles: Mapping[str, tuple[tuple[int, ...], ...] | None]) -> str:
    """A stable text for the engine cache key: "static" or each dynamic input's min/opt/max batch."""
    dynamic = {name: p for name, p in sorted(profiles.items()) if p is not None}
    if not dynamic:
        return "static"
    return ";".join(f"{name}:{p[0][0]}/{p[1][0]}/{p[2][0]}" for name, p in dynamic.items())
