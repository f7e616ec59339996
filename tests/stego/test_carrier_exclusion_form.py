"""`carrier_exclusion('outside-body', ...)` computes the rule's documented form faster (one growth of
hull | not-air instead of a dilation of the hull and an edge-replicated erosion of the air): the same pixels,
checked against that form on every lung1 slice, on generated slices with specks and a field of view that
cuts the body, and on random speckle that puts specks of every size in the holes of other specks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.stego import exclusion_mask, grow
from gateway.stego.carriers import AIR_HU, body_hull, body_margin_px, carrier_exclusion
from medshield_tools.bench.images import phantom_slice


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ((yy * yy + xx * xx) <= radius * radius).astype(np.uint8)


def _documented_form(lesion: np.ndarray, margin_px: int, hu: np.ndarray) -> np.ndarray:
    """The rule as the module docstring states it: lesion margin | hull grown by the Euclidean disk | not all
    air within the disk (image edge replicated)."""
    hu = np.asarray(hu, np.float32)
    disk = _disk(body_margin_px(hu.shape))
    body = cv2.dilate(body_hull(hu).astype(np.uint8), disk) > 0
    smooth = cv2.GaussianBlur(hu, (0, 0), 1.5)
    air = cv2.erode((smooth < AIR_HU).astype(np.uint8), disk, borderType=cv2.BORDER_REPLICATE) > 0
    return np.asarray(exclusion_mask(lesion, margin_px) | body | ~air, dtype=bool)


def _check(hu: np.ndarray, lesion: np.ndarray, margin_px: int = 3) -> None:
    got = carrier_exclusion("outside-body", lesion, margin_px, hu)
    want = _documented_form(lesion, margin_px, hu)
    assert got.dtype == np.bool_ and got.shape == want.shape
    assert np.array_equal(got, want), int((got != want).sum())


def test_same_pixels_as_the_documented_form_on_real_ct(shared_data: Path) -> None:
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        volume, lesions = npz["image_hu"].astype(np.float32), npz["lesion_mask"].astype(bool)
    for z in range(volume.shape[0]):
        _check(volume[z], lesions[z])
        # A field of view cropped through the body: the hull is open at the edge, the air test decides.
        _check(volume[z][100:420, 60:300], lesions[z][100:420, 60:300])


@pytest.mark.parametrize("size", [64, 512, 1024, 2048])
def test_same_pixels_as_the_documented_form_on_generated_slices(size: int) -> None:
    hu, lesion = phantom_slice(size, seed=size)
    rng = np.random.default_rng(size)
    ys, xs = rng.integers(0, size, 40), rng.integers(0, size, 40)
    for y, x, side in zip(ys, xs, rng.integers(1, 6, 40), strict=True):
        hu[y : y + side, x : x + side] = 300.0  # specks in the air, some at the edge, some of 16 px and more
    _check(hu, lesion)
    _check(np.full((size, size), -1000.0, np.float32), np.zeros((size, size), bool))
    _check(np.full((size, size), 40.0, np.float32), np.zeros((size, size), bool))


def test_same_pixels_as_the_documented_form_on_random_speckle() -> None:
    rng = np.random.default_rng(16)
    for _ in range(150):
        n = int(rng.integers(16, 72))
        hu = np.where(rng.random((n, n)) < rng.uniform(0.02, 0.5), 100.0, -1000.0).astype(np.float32)
        _check(hu, rng.random((n, n)) < 0.01, int(rng.integers(0, 4)))


@pytest.mark.parametrize("radius", [1, 2, 8, 15, 16, 17, 32, 64])
def test_grow_is_the_dilation_by_the_euclidean_disk(radius: int) -> None:
    # Above a radius grow thresholds a distance transform instead of dilating: the same set either way.
    rng = np.random.default_rng(radius)
    mask = rng.random((300, 260)) < 0.002
    mask[0, 5] = mask[299, 259] = mask[150, 0] = True  # marked pixels on the edges
    want = cv2.dilate(mask.astype(np.uint8), _disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    assert np.array_equal(grow(mask, radius), want)
    assert not grow(np.zeros((40, 30), bool), radius).any()
