"""Image quality of a marked image against its original: PSNR and SSIM; bit-string fidelity: BER and NC."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gateway.image_metrics.cipher import bit_depth

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def peak_value(pixels: np.ndarray, given: float | None = None) -> float:
    """`given` when set, else the dtype's full range (255 for uint8, 65535 for uint16)."""
    if given is not None:
        if not given > 0:
            raise ValueError("data_range must be positive")
        return float(given)
    try:
        return float((1 << bit_depth(pixels)) - 1)
    except ValueError:
        raise ValueError(f"give data_range for {pixels.dtype} images") from None


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two 2-D images of one shape, got {a.shape} and {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error."""
    a, b = _pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float((diff * diff).mean())


def psnr(original: np.ndarray, other: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(range² / MSE); infinite for identical images."""
    value = mse(original, other)
    peak = peak_value(np.asarray(original), data_range)
    if value == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / value)


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g: np.ndarray = np.exp(-(x * x) / (2 * sigma * sigma))
    normalised: np.ndarray = g / g.sum()
    return normalised


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable weighted mean over every full window (the 'valid' region)."""
    rows = sliding_window_view(image, kernel.size, axis=0) @ kernel
    out: np.ndarray = sliding_window_view(rows, kernel.size, axis=1) @ kernel
    return out


def ssim(original: np.ndarray, other: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004).

    11x11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03, L = the data range; the SSIM map is averaged
    over every position where the window fits inside the image (no padding).
    """
    a, b = _pair(original, other)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}")
    peak = peak_value(a, data_range)
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    kernel = _gaussian(SSIM_WINDOW, SSIM_SIGMA)
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    mu_x, mu_y = _filter(x, kernel), _filter(y, kernel)
    var_x = _filter(x * x, kernel) - mu_x * mu_x
    var_y = _filter(y * y, kernel) - mu_y * mu_y
    cov = _filter(x * y, kernel) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float((numerator / denominator).mean())


def _bits(value: bytes | np.ndarray) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.unpackbits(np.frombuffer(bytes(value), dtype=np.uint8))
    array = np.asarray(value).ravel()
    if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
        raise ValueError("bit arrays must hold only 0 and 1")
    return array.astype(np.uint8)


def ber(sent: bytes | np.ndarray, received: bytes | np.ndarray) -> float:
    """Bit error rate: the share of differing bits. Bytes are compared bit by bit (MSB first)."""
    a, b = _bits(sent), _bits(received)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"need two non-empty bit strings of one length, got {a.size} and {b.size}")
    return float(np.count_nonzero(a != b)) / a.size


def nc(sent: bytes | np.ndarray, received: bytes | np.ndarray) -> float:
    """Normalised correlation Σ w·w' / √(Σ w² · Σ w'²) of two {0, 1} bit strings.

    1 for identical strings; defined as 1 when both are all zeros and 0 when only one is.
    """
    a, b = _bits(sent).astype(np.float64), _bits(received).astype(np.float64)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"need two non-empty bit strings of one length, got {a.size} and {b.size}")
    energy = float((a * a).sum()) * float((b * b).sum())
    if energy == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float((a * b).sum()) / math.sqrt(energy)


def compression_ratio(original_bytes: int, compressed_bytes: int) -> float:
    """original size / compressed size."""
    if original_bytes < 0 or compressed_bytes <= 0:
        raise ValueError("sizes must be positive")
    return original_bytes / compressed_bytes
