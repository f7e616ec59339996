"""Image-security, image-quality and segmentation metrics: pure numpy functions (DESIGN §11)."""

from __future__ import annotations

from gateway.metrics.cipher import (
    DIRECTIONS,
    ChiSquared,
    CriticalValues,
    adjacent_correlation,
    adjacent_correlations,
    chi2_histogram,
    entropy,
    histogram,
    npcr,
    uaci,
    wna_critical_values,
)
from gateway.metrics.quality import ber, compression_ratio, mse, nc, psnr, ssim
from gateway.metrics.segmentation import SegmentationScores, segmentation_scores
from gateway.metrics.stats import chi2_critical, chi2_sf, gammainc_lower, gammainc_upper

__all__ = [
    "DIRECTIONS",
    "ChiSquared",
    "CriticalValues",
    "SegmentationScores",
    "adjacent_correlation",
    "adjacent_correlations",
    "ber",
    "chi2_critical",
    "chi2_histogram",
    "chi2_sf",
    "compression_ratio",
    "entropy",
    "gammainc_lower",
    "gammainc_upper",
    "histogram",
    "mse",
    "nc",
    "npcr",
    "psnr",
    "segmentation_scores",
    "ssim",
    "uaci",
    "wna_critical_values",
]
