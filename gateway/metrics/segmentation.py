"""Segmentation metrics from boolean masks (paper 000, Table III)."""

from __future__ import annotations

from dataclasses import dataclass

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


def segmentation_scores(predicted: np.ndarray, truth: np.ndarray) -> SegmentationScores:
    """Scores of a predicted mask against the true one (nonzero = lesion). Shapes must match."""
    p, t = np.asarray(predicted) != 0, np.asarray(truth) != 0
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"need two non-empty masks of one shape, got {p.shape} and {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = p.size - tp - fp - fn
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
        accuracy=(tp + tn) / p.size,
        precision=ratio(tp, tp + fp),
        recall=ratio(tp, tp + fn),
        specificity=ratio(tn, tn + fp),
        f1=f1,
        # Dice equals F1 for binary masks; both are reported because the papers print both.
        dice=f1,
    )
