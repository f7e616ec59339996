"""PSNR, SSIM, BER, NC and segmentation scores on known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.image_metrics import (
    ConfusionCounts,
    ber,
    component_sizes,
    compression_ratio,
    confusion_counts,
    mse,
    nc,
    psnr,
    segmentation_scores,
    ssim,
)
from gateway.image_metrics.quality import SSIM_K1, SSIM_K2


def test_psnr_known_values() -> None:
    a = np.full((8, 8), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE 1: 48.1308 dB
    assert psnr(a.astype(np.uint16), a.astype(np.uint16) + 1) == pytest.approx(20 * math.log10(65535))
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 2, data_range=4095) == pytest.approx(10 * math.log10(4095**2 / 4))
    assert mse(a, a + 3) == 9.0
    with pytest.raises(ValueError):
        psnr(a.astype(np.float32), a.astype(np.float32))


def gradient_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:64, 0:48]
    a = ((x * 7 + y * 13 + (x * y) % 29) % 256).astype(np.uint8)
    b = np.clip(a.astype(int) + ((x * x + 3 * y) % 17) - 8, 0, 255).astype(np.uint8)
    a16 = (a.astype(np.uint32) * 257).astype(np.uint16)
    b16 = (b.astype(np.uint32) * 251 + 40).astype(np.uint16)
    return a, b, a16, b16


def test_ssim_identical_is_one() -> None:
    a, _, a16, _ = gradient_pair()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a16, a16) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    a = np.full((20, 20), 100, np.uint8)
    b = np.full((20, 20), 140, np.uint8)
    c1 = (SSIM_K1 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), rel=1e-12)


def test_ssim_one_window_by_the_formula() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (11, 11)).astype(np.uint8)
    b = rng.integers(0, 256, (11, 11)).astype(np.uint8)
    g = np.array([math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)])
    w = np.outer(g, g) / np.outer(g, g).sum()
    x, y = a.astype(float), b.astype(float)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    assert ssim(a, b) == pytest.approx(expected, rel=1e-10)


def test_ssim_and_psnr_match_scikit_image() -> None:
    # reference values from scikit-image 0.26.0: structural_similarity(gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=255 or 65535) and peak_signal_noise_ratio on these images
    a, b, a16, b16 = gradient_pair()
    assert ssim(a, b) == pytest.approx(0.9872491368222981, rel=1e-12)
    assert ssim(a16, b16) == pytest.approx(0.9870134661037101, rel=1e-12)
    assert psnr(a, b) == pytest.approx(34.38280718378736, rel=1e-12)
    assert psnr(a16, b16) == pytest.approx(32.79859084240449, rel=1e-12)


def test_ssim_needs_a_full_window() -> None:
    with pytest.raises(ValueError):
        ssim(np.zeros((10, 40), np.uint8), np.zeros((10, 40), np.uint8))


def test_ber_and_nc() -> None:
    assert ber(b"\x00", b"\x01") == 1 / 8
    assert ber(b"hello", b"hello") == 0.0
    assert ber(np.array([1, 0, 1, 1]), np.array([0, 0, 1, 0])) == 0.5
    assert nc(b"hello", b"hello") == pytest.approx(1.0)
    assert nc(np.array([1, 0, 1, 1]), np.array([1, 1, 0, 1])) == pytest.approx(2 / 3)
    assert nc(np.zeros(8, bool), np.zeros(8, bool)) == 1.0
    assert nc(np.zeros(8, bool), np.ones(8, bool)) == 0.0
    with pytest.raises(ValueError):
        ber(b"ab", b"a")
    with pytest.raises(ValueError):
        nc(np.array([0, 2]), np.array([0, 1]))
    assert compression_ratio(1000, 250) == 4.0


def test_segmentation_scores_by_hand() -> None:
    s = segmentation_scores(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 0, 1, 1], bool))
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 1, 1)
    assert s.accuracy == pytest.approx(3 / 5)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.specificity == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 / 3) and s.dice == s.f1


def test_segmentation_scores_on_empty_masks() -> None:
    empty = np.zeros((4, 4), bool)
    lesion = empty.copy()
    lesion[1, 1] = True
    perfect_empty = segmentation_scores(empty, empty)
    scores = (perfect_empty.precision, perfect_empty.recall, perfect_empty.dice, perfect_empty.specificity)
    assert scores == (1.0, 1.0, 1.0, 1.0)
    missed = segmentation_scores(empty, lesion)
    assert (missed.precision, missed.recall, missed.dice) == (0.0, 0.0, 0.0)
    assert missed.specificity == 1.0 and missed.accuracy == 15 / 16
    false_alarm = segmentation_scores(lesion, empty)
    assert (false_alarm.precision, false_alarm.recall, false_alarm.dice) == (0.0, 0.0, 0.0)
    assert false_alarm.specificity == 15 / 16
    full = np.ones((4, 4), bool)
    assert segmentation_scores(full, full).specificity == 1.0
    assert segmentation_scores(lesion, full).specificity == 0.0
    with pytest.raises(ValueError):
        segmentation_scores(empty, empty[:2])


def test_confusion_counts_pool_over_slices() -> None:
    a = confusion_counts(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]))
    b = confusion_counts(np.array([[0, 0], [0, 0]]), np.array([[0, 1], [0, 0]]))
    pooled = ConfusionCounts() + a + b
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == (1, 1, 1, 5)
    # Pooled Dice is 2*1 / (2*1 + 1 + 1), not the mean of the slices' Dice (2/3 and 0).
    assert pooled.percentages()["dice"] == pytest.approx(50.0)
    assert pooled.percentages()["specificity"] == pytest.approx(100 * 5 / 6)
    with pytest.raises(ValueError):
        ConfusionCounts().scores()


def test_component_sizes_counts_8_connected_blobs() -> None:
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[2, 2] = True  # diagonal neighbour: joins the first blob under 8-connectivity
    mask[5:8, 5:8] = True  # 9 px
    assert component_sizes(mask) == [9, 5]
    assert component_sizes(np.zeros((4, 4), bool)) == []
