"""Score statistics shared by training and evaluation (numpy only, so evaluation runs without torch)."""

from __future__ import annotations

import numpy as np


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate of similarity scores (higher = more alike)."""
    thr = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(np.sort(genuine), thr, side="left") / len(genuine)
    far = 1 - np.searchsorted(np.sort(impostor), thr, side="left") / len(impostor)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)
