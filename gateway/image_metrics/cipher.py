"""Image-cipher metrics: NPCR and UACI with Wu–Noonan–Agaian critical values, entropy, chi-squared
histogram test, adjacent-pixel correlation (DESIGN §11; papers 000, 002, 003)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from gateway.image_metrics.stats import chi2_sf

Direction = Literal["horizontal", "vertical", "diagonal"]
DIRECTIONS: tuple[Direction, ...] = ("horizontal", "vertical", "diagonal")


def bit_depth(pixels: np.ndarray, bits: int | None = None) -> int:
    """`bits` when given, else 8 for uint8 and 16 for uint16 pixels."""
    if bits is not None:
        if not 1 <= bits <= 16:
            raise ValueError("bits must be between 1 and 16")
        return bits
    if pixels.dtype == np.uint8:
        return 8
    if pixels.dtype == np.uint16:
        return 16
    raise ValueError(f"give bits for {pixels.dtype} pixels (uint8 and uint16 imply 8 and 16)")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"the two images must have one non-empty shape, got {a.shape} and {b.shape}")
    return a, b


def npcr(a: np.ndarray, b: np.ndarray) -> float:
    """Number of Pixels Change Rate, in percent: the share of positions where the two images differ."""
    a, b = _pair(a, b)
    return 100.0 * float(np.count_nonzero(a != b)) / a.size


def uaci(a: np.ndarray, b: np.ndarray, bits: int | None = None) -> float:
    """Unified Average Changing Intensity, in percent: mean |a - b| over the largest value (2**bits - 1)."""
    a, b = _pair(a, b)
    largest = (1 << bit_depth(a, bits)) - 1
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return 100.0 * float(diff.mean()) / largest


@dataclass(frozen=True)
class CriticalValues:
    """Wu, Noonan & Agaian (2011) critical values, in percent, for one image size, bit depth and alpha.

    An NPCR below `npcr` fails the test; a UACI outside [`uaci_low`, `uaci_high`] fails it.
    `npcr_expected` and `uaci_expected` are the values of an ideal cipher.
    """

    npcr: float
    uaci_low: float
    uaci_high: float
    npcr_expected: float
    uaci_expected: float


def wna_critical_values(pixels: int, bits: int = 8, alpha: float = 0.05) -> CriticalValues:
    """Critical NPCR and UACI values for `pixels` = M·N pixels of `bits` bits at significance `alpha`.

    With F = 2**bits - 1: NPCR* = (F - Φ⁻¹(1-α)·√(F/MN)) / (F + 1); UACI mean μ = (F + 2) / (3F + 3),
    variance σ² = (F + 2)(F² + 2F + 3) / (18 (F + 1)² MN F), interval μ ± Φ⁻¹(1-α/2)·σ.
    """
    if pixels <= 0 or not 1 <= bits <= 16 or not 0 < alpha < 1:
        raise ValueError("need pixels > 0, 1 <= bits <= 16 and 0 < alpha < 1")
    f = (1 << bits) - 1
    normal = NormalDist()
    z_one = normal.inv_cdf(1 - alpha)
    z_two = normal.inv_cdf(1 - alpha / 2)
    npcr_star = (f - z_one * math.sqrt(f / pixels)) / (f + 1)
    mu = (f + 2) / (3 * f + 3)
    sigma = math.sqrt((f + 2) * (f * f + 2 * f + 3) / (18 * (f + 1) ** 2 * pixels * f))
    return CriticalValues(
        npcr=100 * npcr_star,
        uaci_low=100 * (mu - z_two * sigma),
        uaci_high=100 * (mu + z_two * sigma),
        npcr_expected=100 * f / (f + 1),
        uaci_expected=100 * mu,
    )


def histogram(pixels: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Counts of every value 0 .. 2**bits - 1 (int64)."""
    pixels = np.asarray(pixels)
    depth = bit_depth(pixels, bits)
    flat = pixels.reshape(-1)
    if flat.size and int(flat.max()) >= 1 << depth:
        raise ValueError(f"pixel values exceed {depth} bits")
    return np.bincount(flat, minlength=1 << depth).astype(np.int64)


def entropy(pixels: np.ndarray, bits: int | None = None) -> float:
    """Shannon entropy of the value histogram, in bits per pixel (at most `bits`)."""
    counts = histogram(pixels, bits)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


@dataclass(frozen=True)
class ChiSquared:
    """Chi-squared test of a histogram against the uniform one."""

    statistic: float
    dof: int
    p_value: float


def chi2_histogram(pixels: np.ndarray, bits: int | None = None) -> ChiSquared:
    """χ² = Σ (observed - expected)² / expected over all 2**bits values, with 2**bits - 1 degrees of freedom."""
    counts = histogram(pixels, bits).astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("the image is empty")
    expected = counts.sum() / counts.size
    statistic = float(((counts - expected) ** 2).sum() / expected)
    dof = counts.size - 1
    return ChiSquared(statistic=statistic, dof=dof, p_value=chi2_sf(statistic, dof))


def adjacent_correlation(pixels: np.ndarray, direction: Direction, *, pairs: int | None = None, seed: int = 0) -> float:
    """Pearson correlation of horizontally, vertically or diagonally (down-right) adjacent pixels.

    With `pairs=None` every adjacent pair is used; otherwise `pairs` pairs are drawn at random (with
    replacement) from a numpy Generator seeded with `seed`, as the papers do. NaN when either side of the
    pairs has no variance (e.g. a constant image), where correlation is undefined.
    """
    image = np.asarray(pixels)
    if image.ndim != 2:
        raise ValueError("pixels must be a 2-D array")
    steps = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}
    if direction not in steps:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    dy, dx = steps[direction]
    rows, cols = image.shape[0] - dy, image.shape[1] - dx
    if rows <= 0 or cols <= 0:
        raise ValueError("the image is too small to have adjacent pairs")
    first = image[:rows, :cols]
    second = image[dy : dy + rows, dx : dx + cols]
    if pairs is None:
        x, y = first.astype(np.float64).ravel(), second.astype(np.float64).ravel()
    else:
        if pairs < 2:
            raise ValueError("need at least 2 pairs")
        rng = np.random.default_rng(seed)
        r = rng.integers(0, rows, pairs)
        c = rng.integers(0, cols, pairs)
        x, y = first[r, c].astype(np.float64), second[r, c].astype(np.float64)
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denominator == 0:
        return math.nan
    return float((x * y).sum()) / denominator


def adjacent_correlations(pixels: np.ndarray, *, pairs: int | None = None, seed: int = 0) -> dict[str, float]:
    """`adjacent_correlation` in all three directions."""
    return {d: adjacent_correlation(pixels, d, pairs=pairs, seed=seed) for d in DIRECTIONS}
