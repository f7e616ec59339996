"""Physical scale in the segmenter's pre-processing: pure functions of the slice and its pixel spacing."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gateway import codecs
from gateway.segment import (
    DEFAULT_MANIFEST,
    DEFAULT_MODEL,
    MODEL_SIZE,
    Segmenter,
    canvas_to_mask,
    make_canvas,
    mask_to_canvas,
    pixel_spacing_of,
    resampled_shape,
    run_tiled,
    tile_origins,
    window_resize,
)
from medshield_tools.scanner_sim import dicom_from_hu

TARGET = 1.15


def phantom(side: int, spacing: float, radius_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """A 300 mm wide 'body' (0 HU) in air with a disk of `radius_mm` at its centre (60 HU)."""
    yy, xx = (np.mgrid[0:side, 0:side] - (side - 1) / 2) * spacing
    hu = np.full((side, side), -1000.0, np.float32)
    hu[(yy / 110) ** 2 + (xx / 150) ** 2 <= 1] = 0.0
    disk = yy ** 2 + xx ** 2 <= radius_mm ** 2
    hu[disk] = 60.0
    return hu, disk


def test_resampled_shape_follows_the_pixel_spacing() -> None:
    assert resampled_shape((512, 512), (0.5703, 0.5703), TARGET) == (254, 254)
    assert resampled_shape((512, 512), (0.9766, 0.9766), TARGET) == (435, 435)
    assert resampled_shape((233, 167), (1.5, 1.5), TARGET) == (304, 218)


@pytest.mark.parametrize("side,spacing", [(512, 0.5703), (512, 0.9766), (240, 1.5)])
def test_the_same_lesion_covers_the_same_network_pixels_at_any_spacing(side: int, spacing: float) -> None:
    hu, disk = phantom(side, spacing)
    canvas = make_canvas(hu, (spacing, spacing), TARGET)
    area = mask_to_canvas(disk, canvas).sum()
    expected = np.pi * (10.0 / TARGET) ** 2  # ~238 network pixels for a 20 mm lesion
    assert abs(area - expected) < 0.12 * expected
    assert min(canvas.windowed.shape) >= MODEL_SIZE


def test_the_canvas_is_cropped_to_the_body() -> None:
    hu, _ = phantom(512, 0.9766)
    canvas = make_canvas(hu, (0.9766, 0.9766), TARGET)
    # 300 x 220 mm of body at 1.15 mm: about 261 x 191 px, plus margins, grown to one tile where smaller.
    assert canvas.windowed.shape[0] == MODEL_SIZE
    assert 261 <= canvas.windowed.shape[1] <= 261 + 2 * 8 + 2


@pytest.mark.parametrize("side,spacing", [(512, 0.5703), (512, 0.9766), (96, 0.7)])
def test_a_mask_taken_to_the_canvas_and_back_is_the_same_mask(side: int, spacing: float) -> None:
    hu, disk = phantom(side, spacing, radius_mm=15.0 if side > 100 else 8.0)
    canvas = make_canvas(hu, (spacing, spacing), TARGET)
    back = canvas_to_mask(mask_to_canvas(disk, canvas).astype(np.float32), canvas, 0.5)
    assert back.shape == disk.shape
    iou = (back & disk).sum() / (back | disk).sum()
    assert iou > 0.9


def test_tiles_cover_the_canvas_with_overlap() -> None:
    assert tile_origins(200, MODEL_SIZE) == [0]
    assert tile_origins(MODEL_SIZE, MODEL_SIZE) == [0]
    for length in (257, 300, 435, 700):
        starts = tile_origins(length, MODEL_SIZE)
        assert starts[0] == 0 and starts[-1] == length - MODEL_SIZE
        assert all(b - a <= MODEL_SIZE - 32 for a, b in itertools.pairwise(starts))


def test_tiled_run_of_an_identity_network_returns_its_input() -> None:
    rng = np.random.default_rng(0)
    canvas = rng.standard_normal((300, 435)).astype(np.float32)
    calls = []

    def net(x: np.ndarray) -> np.ndarray:
        assert x.shape == (1, 1, MODEL_SIZE, MODEL_SIZE)
        calls.append(1)
        return x

    np.testing.assert_allclose(run_tiled(net, canvas, MODEL_SIZE), canvas, rtol=1e-6)
    assert len(calls) == 4


def test_without_a_physical_size_the_whole_slice_is_resized() -> None:
    hu, _ = phantom(512, 0.5703)
    canvas = make_canvas(hu, (0.5703, 0.5703), None)
    np.testing.assert_array_equal(canvas.windowed, window_resize(hu))


def test_dicom_pixel_spacing_reaches_the_segmenter() -> None:
    hu, _ = phantom(64, 0.8)
    image = codecs.decode(dicom_from_hu(hu.astype(np.int16), instance=1, spacing_mm=(0.8, 0.7)))
    assert pixel_spacing_of(image) == pytest.approx((0.8, 0.7))
    assert pixel_spacing_of(np.zeros((4, 4))) is None


def wide_body(side: int = 512, spacing: float = 0.9766, width_mm: float = 420.0) -> tuple[np.ndarray, np.ndarray]:
    """A body `width_mm` wide (wider than one 256 px tile at 1.15 mm) with a 20 mm disk right of centre."""
    yy, xx = (np.mgrid[0:side, 0:side] - (side - 1) / 2) * spacing
    hu = np.full((side, side), -1000.0, np.float32)
    hu[(yy / 120) ** 2 + (xx / (width_mm / 2)) ** 2 <= 1] = 0.0
    disk = yy ** 2 + (xx - 100.0) ** 2 <= 10.0 ** 2
    hu[disk] = 60.0
    return hu, disk


def test_a_body_wider_than_one_tile_is_fitted_into_one_tile() -> None:
    hu, disk = wide_body()
    tiled = make_canvas(hu, (0.9766, 0.9766), TARGET)
    assert tiled.windowed.shape[1] > MODEL_SIZE  # 420 mm at 1.15 mm: two tiles across without fitting
    fitted = make_canvas(hu, (0.9766, 0.9766), TARGET, fit=True)
    assert fitted.windowed.shape == (MODEL_SIZE, MODEL_SIZE)
    # The whole body is on the canvas: nothing denser than air was cut at its left and right edges.
    assert (fitted.windowed[:, :4] < -900).all() and (fitted.windowed[:, -4:] < -900).all()
    # The lesion keeps its shape at the coarser pixel (about 420 / 239 = 1.76 mm) and maps back in place.
    area = mask_to_canvas(disk, fitted).sum()
    px_mm = 420.0 / (MODEL_SIZE - 2 * 8 - 1)
    assert abs(area - np.pi * (10.0 / px_mm) ** 2) < 0.15 * np.pi * (10.0 / px_mm) ** 2
    back = canvas_to_mask(mask_to_canvas(disk, fitted).astype(np.float32), fitted, 0.5)
    assert (back & disk).sum() / (back | disk).sum() > 0.85


def test_fitting_leaves_a_body_that_fits_at_the_physical_size() -> None:
    hu, _ = phantom(300, 0.7)  # a 210 mm field of view: 183 px at 1.15 mm
    np.testing.assert_array_equal(make_canvas(hu, (0.7, 0.7), TARGET, fit=True).windowed,
                                  make_canvas(hu, (0.7, 0.7), TARGET).windowed)


@pytest.mark.parametrize("fit,runs", [(False, 2), (True, 1)])  # 420 x 240 mm: 2 x 1 tiles at 1.15 mm
def test_the_served_segmenter_runs_the_network_once_on_a_wide_body_when_its_manifest_fits(
        tmp_path: Path, fit: bool, runs: int) -> None:
    shutil.copy(DEFAULT_MODEL, tmp_path / "dsnet.onnx")
    manifest = json.loads(DEFAULT_MANIFEST.read_text())
    manifest["preprocessing"].update(pixel_spacing_mm=TARGET, fit_body_to_input=fit)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    seg = Segmenter(tmp_path / "dsnet.onnx", backend="cpu", threads=1)
    assert seg.manifest.fit_body_to_input is fit
    calls = []
    network = seg.runner.run

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return network(x)

    seg.runner.run = counted  # type: ignore[method-assign]
    hu, _ = wide_body(width_mm=420.0)
    assert seg.predict_hu(hu, (0.9766, 0.9766)).shape == hu.shape
    assert len(calls) == runs
