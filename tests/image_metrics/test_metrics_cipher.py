"""NPCR, UACI, Wu–Noonan–Agaian critical values, entropy, chi-squared and adjacent correlation on known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.image_metrics import (
    adjacent_correlation,
    adjacent_correlations,
    chi2_critical,
    chi2_histogram,
    chi2_sf,
    entropy,
    gammainc_lower,
    gammainc_upper,
    histogram,
    npcr,
    uaci,
    wna_critical_values,
)


def test_npcr_and_uaci_by_hand() -> None:
    a = np.array([[0, 1], [2, 3]], np.uint8)
    b = np.array([[0, 0], [2, 4]], np.uint8)
    assert npcr(a, b) == 50.0
    assert uaci(a, b) == pytest.approx(100 * 0.5 / 255)
    assert uaci(a.astype(np.uint16), b.astype(np.uint16)) == pytest.approx(100 * 0.5 / 65535)
    assert uaci(a.astype(np.uint16), b.astype(np.uint16), bits=12) == pytest.approx(100 * 0.5 / 4095)
    full = np.full((4, 4), 255, np.uint8)
    assert uaci(full, np.zeros_like(full)) == 100.0 and npcr(full, np.zeros_like(full)) == 100.0
    assert npcr(a, a) == 0.0 and uaci(a, a) == 0.0
    with pytest.raises(ValueError):
        npcr(a, b[:1])


@pytest.mark.parametrize(
    ("side", "alpha", "npcr_star", "low", "high"),
    [
        # Wu, Noonan & Agaian, "NPCR and UACI randomness tests for image encryption" (2011), 8-bit images
        (512, 0.05, 99.5893, 33.3730, 33.5541),
        (512, 0.001, 99.5717, 33.3115, 33.6156),
        (256, 0.05, 99.5693, 33.2824, 33.6447),
        (1024, 0.05, 99.5994, 33.4183, 33.5088),
    ],
)
def test_wu_noonan_agaian_critical_values(side: int, alpha: float, npcr_star: float, low: float, high: float) -> None:
    values = wna_critical_values(side * side, bits=8, alpha=alpha)
    assert round(values.npcr, 4) == npcr_star
    assert round(values.uaci_low, 4) == low
    assert round(values.uaci_high, 4) == high
    assert values.npcr_expected == pytest.approx(100 * 255 / 256)
    assert values.uaci_expected == pytest.approx(100 * 257 / 768)


def test_16_bit_critical_values_are_tighter_and_centred_on_their_ideal() -> None:
    v8, v16 = wna_critical_values(512 * 512, 8), wna_critical_values(512 * 512, 16)
    assert v16.npcr_expected == pytest.approx(100 * 65535 / 65536)
    assert v16.npcr < v16.npcr_expected and v16.npcr > v8.npcr
    assert v16.uaci_low < v16.uaci_expected < v16.uaci_high
    assert v16.uaci_expected == pytest.approx(100 * 65537 / (3 * 65536))


def test_independent_uniform_images_pass_the_tests() -> None:
    rng = np.random.default_rng(2024)
    a = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    b = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    values = wna_critical_values(a.size)
    assert npcr(a, b) > values.npcr
    assert values.uaci_low < uaci(a, b) < values.uaci_high


def test_entropy_of_known_histograms() -> None:
    assert entropy(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)
    assert entropy(np.zeros((8, 8), np.uint8)) == 0.0
    assert entropy(np.array([[0, 255], [0, 255]], np.uint8)) == pytest.approx(1.0)
    assert entropy(np.arange(65536, dtype=np.uint16).reshape(256, 256)) == pytest.approx(16.0)
    assert entropy(np.array([[0, 0, 0, 1]], np.uint16)) == pytest.approx(
        -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    )
    random = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
    assert 7.999 < entropy(random) <= 8.0


def test_histogram_checks_the_bit_depth() -> None:
    assert histogram(np.array([[0, 3, 3]], np.uint16), bits=2).tolist() == [1, 0, 0, 2]
    with pytest.raises(ValueError):
        histogram(np.array([[4]], np.uint16), bits=2)
    with pytest.raises(ValueError):
        entropy(np.zeros((2, 2), np.float32))


def test_incomplete_gamma_closed_forms() -> None:
    for x in (0.01, 0.5, 1.0, 3.0, 10.0, 40.0):
        assert gammainc_lower(1.0, x) == pytest.approx(1 - math.exp(-x), rel=1e-12)
        assert gammainc_lower(0.5, x) == pytest.approx(math.erf(math.sqrt(x)), rel=1e-12)
        assert gammainc_upper(0.5, x) == pytest.approx(math.erfc(math.sqrt(x)), rel=1e-10)
        # P(2, x) = 1 - (1 + x) e^-x
        assert gammainc_lower(2.0, x) == pytest.approx(1 - (1 + x) * math.exp(-x), rel=1e-10, abs=1e-15)
    assert gammainc_lower(3.0, 0.0) == 0.0 and gammainc_upper(3.0, 0.0) == 1.0


def test_chi_squared_tail_and_critical_values() -> None:
    assert round(chi2_critical(255, 0.05), 2) == 293.25
    assert chi2_critical(1, 0.05) == pytest.approx(3.841458820694124, rel=1e-9)
    assert chi2_critical(1, 0.01) == pytest.approx(6.634896601021214, rel=1e-9)
    assert chi2_critical(10, 0.05) == pytest.approx(18.307038053275146, rel=1e-9)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    for x in (0.5, 2.0, 9.0):
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    assert chi2_sf(293.2478350808, 255) == pytest.approx(0.05, rel=1e-6)
    # 65535 degrees of freedom (16-bit): Wilson–Hilferty is accurate to a few parts per million here
    k, z = 65535, 1.6448536269514722
    wilson_hilferty = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    assert chi2_critical(k, 0.05) == pytest.approx(wilson_hilferty, rel=1e-6)


def test_chi_squared_histogram_statistic() -> None:
    flat = np.repeat(np.arange(256, dtype=np.uint8), 2).reshape(16, 32)
    result = chi2_histogram(flat)
    assert result.statistic == 0.0 and result.dof == 255 and result.p_value == 1.0
    peaked = np.zeros((16, 32), np.uint8)
    result = chi2_histogram(peaked)
    assert result.statistic == pytest.approx((512 - 2) ** 2 / 2 + 255 * 2**2 / 2)
    assert result.p_value < 1e-100
    random = np.random.default_rng(7).integers(0, 256, (512, 512), dtype=np.uint8)
    assert chi2_histogram(random).p_value > 0.001
    assert chi2_histogram(np.arange(65536, dtype=np.uint16).reshape(256, 256)).dof == 65535


def test_adjacent_correlation_of_known_patterns() -> None:
    ramp = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    assert adjacent_correlation(ramp, "horizontal") == pytest.approx(1.0)
    assert adjacent_correlation(ramp, "vertical") == pytest.approx(1.0)  # neighbours are equal
    assert math.isnan(adjacent_correlation(np.full((8, 8), 3, np.uint8), "horizontal"))  # undefined
    with pytest.raises(ValueError):
        adjacent_correlation(ramp, "sideways")  # type: ignore[arg-type]
    assert adjacent_correlation(ramp, "diagonal") == pytest.approx(1.0)
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    values = adjacent_correlations(board)
    assert values["horizontal"] == pytest.approx(-1.0)
    assert values["vertical"] == pytest.approx(-1.0)
    assert values["diagonal"] == pytest.approx(1.0)
    random = np.random.default_rng(11).integers(0, 65536, (512, 512), dtype=np.uint16)
    for value in adjacent_correlations(random).values():
        assert abs(value) < 0.01


def test_sampled_correlation_is_reproducible_and_close_to_the_full_one() -> None:
    y, x = np.mgrid[:256, :256]
    smooth = ((np.sin(x / 9) + np.cos(y / 13)) * 60 + 128).astype(np.uint8)
    full = adjacent_correlation(smooth, "horizontal")
    sampled = adjacent_correlation(smooth, "horizontal", pairs=3000, seed=5)
    assert sampled == adjacent_correlation(smooth, "horizontal", pairs=3000, seed=5)
    assert sampled != adjacent_correlation(smooth, "horizontal", pairs=3000, seed=6)
    assert full > 0.9 and abs(sampled - full) < 0.02
