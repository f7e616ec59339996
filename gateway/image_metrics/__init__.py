"""Image-security, image-quality and segmentation metrics: pure functions of numpy arrays (DESIGN §11)."""

from __future__ import annotations

from gateway.image_metrics.cipher import (
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
from gateway.image_metrics.quality import ber, compression_ratio, mse, nc, psnr, ssim
from gateway.image_metrics.segmentation import (
    ConfusionCounts,
    SegmentationScores,
    component_sizes,
    confusion_counts,
    segmentation_scores,
)
from gateway.image_metrics.stats import chi2_critical, chi2_sf, gammainc_lower, gammainc_upper

__all__ = [
    "DIRECTIONS",
    "ChiSquared",
    "ConfusionCounts",
    "CriticalValues",
    "SegmentationScores",
    "adjacent_correlation",
    "adjacent_correlations",
    "ber",
    "chi2_critical",
    "chi2_histogram",
    "chi2_sf",
    "component_sizes",
    "compression_ratio",
    "confusion_counts",
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
