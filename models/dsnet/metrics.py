"""Evaluation-local segmentation metrics (paper Table III), kept here so training and evaluation agree.

`gateway.metrics` is being written in parallel for the gateway's own reports; these functions only serve the
model scripts and have no dependency beyond numpy and OpenCV.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of a binary segmentation against ground truth."""

    tp: int
    fp: int
    tn: int
    fn: int

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    def scores(self) -> dict[str, float]:
        """Accuracy, precision, recall, specificity, F1 and Dice in percent (0 where undefined)."""

        def ratio(a: float, b: float) -> float:
            return 100.0 * a / b if b else 0.0

        precision = ratio(self.tp, self.tp + self.fp)
        recall = ratio(self.tp, self.tp + self.fn)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "accuracy": ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn),
            "precision": precision,
            "recall": recall,
            "specificity": ratio(self.tn, self.tn + self.fp),
            "f1": f1,
            "dice": ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        }

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """Pixel confusion counts of bool arrays of the same shape."""
    p = pred.astype(bool)
    t = truth.astype(bool)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return Confusion(tp, fp, int(p.size) - tp - fp - fn, fn)


def component_sizes(mask: np.ndarray) -> list[int]:
    """Sizes (pixels, 8-connected) of the connected components of a bool mask, largest first."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return sorted((int(a) for a in stats[1:n, cv2.CC_STAT_AREA]), reverse=True)
