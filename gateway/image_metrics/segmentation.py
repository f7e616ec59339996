"""Segmentation metrics from boolean masks (paper 000, Table III)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SegmentationScores:
    """Confusion counts and the ratios built from them, each in [0, 1].

    A ratio whose denominator is zero (e.g. precision when nothing is predicted) is 1.0 when the prediction
    equals the truth and 0.0 otherwise: an empty prediction of an empty truth is perfect, an empty
    prediction of a lesion is not.
    """

    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    dice: float


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a predicted mask against the truth; `+` pools them over slices (the model card's
    figures are pooled counts, not means of per-slice ratios)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def scores(self) -> SegmentationScores:
        """The Table III ratios of these counts (see `SegmentationScores` for empty denominators)."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        total = tp + fp + fn + tn
        if total == 0:
            raise ValueError("no pixels counted")
        perfect = fp == 0 and fn == 0

        def ratio(numerator: int, denominator: int) -> float:
            if denominator == 0:
                return 1.0 if perfect else 0.0
            return numerator / denominator

        f1 = ratio(2 * tp, 2 * tp + fp + fn)
        return SegmentationScores(
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
            accuracy=(tp + tn) / total,
            precision=ratio(tp, tp + fp),
            recall=ratio(tp, tp + fn),
            specificity=ratio(tn, tn + fp),
            f1=f1,
            # Dice equals F1 for binary masks; both are reported because the papers print both.
            dice=f1,
        )

    def percentages(self) -> dict[str, float]:
        """Accuracy, precision, recall, specificity, F1 and Dice in percent, as the model card prints them."""
        s = self.scores()
        return {name: 100.0 * getattr(s, name)
                for name in ("accuracy", "precision", "recall", "specificity", "f1", "dice")}

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def confusion_counts(predicted: np.ndarray, truth: np.ndarray) -> ConfusionCounts:
    """Pixel counts of a predicted mask against the true one (nonzero = lesion). Shapes must match."""
    p, t = np.asarray(predicted) != 0, np.asarray(truth) != 0
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"need two non-empty masks of one shape, got {p.shape} and {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return ConfusionCounts(tp, fp, fn, p.size - tp - fp - fn)


def segmentation_scores(predicted: np.ndarray, truth: np.ndarray) -> SegmentationScores:
    """Scores of a predicted mask against the true one (nonzero = lesion). Shapes must match."""
    return confusion_counts(predicted, truth).scores()


def component_sizes(mask: np.ndarray) -> list[int]:
    """Sizes in pixels of the 8-connected components of a mask, largest first (false lesions are counted
    by component: one stray 30-pixel blob matters more than 30 scattered pixels)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((np.asarray(mask) != 0).astype(np.uint8), connectivity=8)
    return sorted((int(a) for a in stats[1:n, cv2.CC_STAT_AREA]), reverse=True)
