"""The lung-field gate: pure functions of the windowed slice, checked on the real lung1 CT."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.segment import gate_to_lung, lung_field, resize_mask_to, window_resize


@pytest.fixture(scope="module")
def slice33(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return window_resize(d["image_hu"][33]), resize_mask_to(d["lesion_mask"][33].astype(bool), (256, 256))


def test_lung_field_holds_the_juxta_mediastinal_nodule(slice33: tuple[np.ndarray, np.ndarray]) -> None:
    windowed, nodule = slice33
    field = lung_field(windowed)
    assert nodule.sum() > 0
    assert (field & nodule).sum() >= 0.9 * nodule.sum()
    # The field is the lungs, not the body or the air around it.
    assert 0.05 < field.mean() < 0.35
    assert not field[0, 0] and not field[128, 0]


def test_gate_keeps_lung_components_and_drops_soft_tissue_ones(slice33: tuple[np.ndarray, np.ndarray]) -> None:
    windowed, nodule = slice33
    field = lung_field(windowed)
    body_not_lung = (windowed > -200) & ~cv2.dilate(field.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    ys, xs = np.nonzero(body_not_lung)
    k = ys.size // 2  # a soft-tissue pixel well away from the lungs
    disc = np.zeros(nodule.shape, np.uint8)
    cv2.circle(disc, (int(xs[k]), int(ys[k])), 4, 1, -1)
    decoy = disc.astype(bool) & body_not_lung
    assert decoy.sum() > 10
    kept = gate_to_lung(nodule | decoy, field)
    assert np.array_equal(kept, nodule)


def test_gate_on_empty_prediction_is_empty() -> None:
    field = np.zeros((32, 32), bool)
    assert not gate_to_lung(np.zeros((32, 32), bool), field).any()


def test_gate_keeps_a_lesion_growing_from_the_chest_wall(slice33: tuple[np.ndarray, np.ndarray]) -> None:
    windowed, _ = slice33
    field = lung_field(windowed)
    # The lateral edge of the right lung (image left) on a row through its middle, and a disc centred 3 px
    # into the chest wall: most of it lies outside the air-defined lung field, as a pleural-based mass does.
    ys, _ = np.nonzero(field[:, :128])
    y = int(np.median(ys))
    edge_x = int(np.flatnonzero(field[y]).min())
    disc = np.zeros(field.shape, np.uint8)
    cv2.circle(disc, (edge_x - 3, y), 6, 1, -1)
    lesion = disc.astype(bool)
    assert (field & lesion).sum() < 0.5 * lesion.sum()
    assert np.array_equal(gate_to_lung(lesion, field), lesion)
    # A gate that looks only at the inside fraction (the session-1 rule) drops it.
    assert not gate_to_lung(lesion, field, min_border_in_lung=1.01).any()
