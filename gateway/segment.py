"""Lesion segmentation of CT slices with the committed DS-Net ONNX model.

The pre- and post-processing here is the single definition used by training, evaluation and the gateway:
HU window -> area resize to the model size -> z-score (paper eq. 3) -> network -> bilinear resize of the
probability map back to the input resolution -> threshold. `models/dsnet` imports these functions so the
model is trained on exactly what the gateway feeds it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gateway.errors import ConfigError, InputError
from gateway.resources import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"
DEFAULT_MANIFEST = MODELS_DIR / "dsnet" / "manifest.json"
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)
MODEL_SIZE = 256
# Largest slice side accepted: beyond this a "slice" is not a CT slice and resizing it would waste memory.
MAX_SIDE = 8192


def preprocess_hu(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW, size: int = MODEL_SIZE,
                  ) -> np.ndarray:
    """HU slice (H, W) -> network input (size, size) float32: window, area resize, z-score (eq. 3)."""
    clipped = np.clip(np.asarray(hu, dtype=np.float32), window[0], window[1])
    if clipped.shape != (size, size):
        interp = cv2.INTER_AREA if min(clipped.shape) >= size else cv2.INTER_LINEAR
        clipped = cv2.resize(clipped, (size, size), interpolation=interp)
    mu = float(clipped.mean())
    sigma = float(clipped.std())
    return ((clipped - mu) / max(sigma, 1e-3)).astype(np.float32)


def resize_mask_to(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to `shape` by area (a pixel is set when at least half of it is covered)."""
    if mask.shape == shape:
        return mask.astype(bool)
    interp = cv2.INTER_AREA if shape[0] <= mask.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=interp) >= 0.5


def probability_to_mask(prob: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """Model-size probability map -> bool mask at `shape` (bilinear resize, then threshold)."""
    if prob.shape != shape:
        prob = cv2.resize(prob.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return prob >= threshold
