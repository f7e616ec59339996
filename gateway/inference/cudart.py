"""A minimal ctypes binding to the CUDA runtime (libcudart): device buffers, copies, a stream, the GPU name.

The native TensorRT runner needs device memory; binding the handful of runtime calls it uses avoids a
dependency on pycuda / cuda-python / torch. libcudart comes with the CUDA toolkit, the JetPack image, or the
`nvidia-cuda-runtime-cu12` wheel that the TensorRT wheels pull in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from pathlib import Path

import numpy as np

_MEMCPY_HOST_TO_DEVICE = 1
_MEMCPY_DEVICE_TO_HOST = 2
_ATTR_CC_MAJOR = 75  # cudaDevAttrComputeCapabilityMajor (stable across CUDA releases)
_ATTR_CC_MINOR = 76  # cudaDevAttrComputeCapabilityMinor


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and the error code."""


def wheel_library_dirs() -> list[str]:
    """lib folders of the CUDA/cuDNN/TensorRT pip wheels (nvidia-cuda-runtime-cu12 → nvidia/cuda_runtime/lib,
    the CUDA 13 wheels → nvidia/cu13/lib, tensorrt-cu1x-libs → tensorrt_libs), for the loader to search."""
    dirs: list[str] = []
    try:
        import nvidia  # namespace package of NVIDIA's wheels

        for base in getattr(nvidia, "__path__", []):
            dirs.extend(sorted(d for d in glob.glob(os.path.join(base, "*", "lib")) if os.path.isdir(d)))
    except ImportError:
        pass
    try:
        import tensorrt_libs

        dirs.extend(str(p) for p in getattr(tensorrt_libs, "__path__", []))
    except ImportError:
        pass
    return dirs


def _candidates() -> list[str]:
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.insert(0, found)
    for base in reversed(wheel_library_dirs()):
        names[:0] = sorted(glob.glob(os.path.join(base, "libcudart.so*")))
    for root in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib"):
        names.extend(sorted(glob.glob(os.path.join(root, "libcudart.so*"))))
    return names


def load_cudart() -> ctypes.CDLL:
    """The CUDA runtime library, or CudaError listing where it was looked for."""
    tried = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError:
            tried.append(Path(name).name)
    raise CudaError(f"libcudart not found (tried {', '.join(dict.fromkeys(tried))})")


class CudaRuntime:
    """The few CUDA runtime calls an inference needs, on device 0."""

    def __init__(self, device: int = 0) -> None:
        self.lib = load_cudart()
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                             ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]
        count = ctypes.c_int(0)
        self._check(self.lib.cudaGetDeviceCount(ctypes.byref(count)), "cudaGetDeviceCount")
        if count.value <= device:
            raise CudaError(f"no CUDA device {device} (found {count.value})")
        self._check(self.lib.cudaSetDevice(ctypes.c_int(device)), "cudaSetDevice")
        self.device = device

    def _check(self, code: int, call: str) -> None:
        if code != 0:
            raise CudaError(f"{call} failed with CUDA error {code} ({self._error_text(code)})")

    def _error_text(self, code: int) -> str:
        """The runtime's own words for an error code, e.g. 35: "CUDA driver version is insufficient..."."""
        fn = getattr(self.lib, "cudaGetErrorString", None)
        if fn is None:
            return "no description"
        fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_int]
        text = fn(code)
        return text.decode("ascii", "replace") if text else "no description"

    def device_name(self) -> str:
        """The GPU's marketing name (first field of cudaDeviceProp, the same in every CUDA version)."""
        props = ctypes.create_string_buffer(4096)  # larger than cudaDeviceProp in any CUDA release
        fn = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or self.lib.cudaGetDeviceProperties
        self._check(fn(props, ctypes.c_int(self.device)), "cudaGetDeviceProperties")
        return props.raw[:256].split(b"\0", 1)[0].decode("ascii", "replace")

    def versions(self) -> dict[str, str]:
        """The CUDA driver's and this runtime's versions, e.g. {"driver": "13.0", "runtime": "12.9"}."""
        out = {}
        for key, call in (("driver", "cudaDriverGetVersion"), ("runtime", "cudaRuntimeGetVersion")):
            value = ctypes.c_int(0)
            self._check(getattr(self.lib, call)(ctypes.byref(value)), call)
            out[key] = f"{value.value // 1000}.{value.value % 1000 // 10}"
        return out

    def compute_capability(self) -> tuple[int, int]:
        """(major, minor) of the GPU, e.g. (9, 0) for Hopper, (8, 7) for Jetson Orin."""
        values = []
        for attribute in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR):
            value = ctypes.c_int(0)
            self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(value), ctypes.c_int(attribute),
                                                        ctypes.c_int(self.device)), "cudaDeviceGetAttribute")
            values.append(value.value)
        return values[0], values[1]

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_destroy(self, stream: int) -> None:
        self._check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def copy_to_device(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src.ctypes.data),
                                             ctypes.c_size_t(src.nbytes), _MEMCPY_HOST_TO_DEVICE,
                                             ctypes.c_void_p(stream)), "cudaMemcpyAsync(H2D)")

    def copy_to_host(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst.ctypes.data), ctypes.c_void_p(src),
                                             ctypes.c_size_t(dst.nbytes), _MEMCPY_DEVICE_TO_HOST,
                                             ctypes.c_void_p(stream)), "cudaMemcpyAsync(D2H)")

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")
