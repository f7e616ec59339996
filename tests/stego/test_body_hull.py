"""`body_hull` takes the hull of the dense components' outer contours: the same polygon as the hull of every
dense pixel, checked on every real lung1 slice and on generated slices up to 2048²."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.stego.carriers import BODY_HU, body_hull
from medshield_tools.bench.images import phantom_slice


def _hull_of_every_pixel(hu: np.ndarray) -> np.ndarray:
    dense = (hu > BODY_HU).astype(np.uint8)
    _n, labels, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= 16
    keep[0] = False
    hull = np.zeros(dense.shape, np.uint8)
    if keep.any():
        ys, xs = np.nonzero(keep[labels])
        cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32)), 1)
    return hull.astype(bool)


def test_contour_hull_equals_every_pixel_hull_on_real_ct(shared_data: Path) -> None:
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        volume = npz["image_hu"].astype(np.float32)
    for z in range(volume.shape[0]):
        assert np.array_equal(body_hull(volume[z]), _hull_of_every_pixel(volume[z])), z


@pytest.mark.parametrize("size", [128, 1024, 2048])
def test_contour_hull_equals_every_pixel_hull_on_generated_slices(size: int) -> None:
    hu, _ = phantom_slice(size, seed=size)
    hu[: size // 8, : size // 8] = 200.0  # a second component in a corner
    assert np.array_equal(body_hull(hu), _hull_of_every_pixel(hu))
    assert not body_hull(np.full((64, 64), -1000.0, np.float32)).any()
