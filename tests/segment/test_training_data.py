"""Hard negatives of the training data (models.data.build) on a real lung1 slice with inserted lesions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.data.build import (
    LESION_EDGE_MM,
    NONCONTRAST_BLOOD_HU,
    PLAIN_POOL_SPREAD_HU,
    TRAIN_PATIENTS,
    VESSEL_LABEL,
    lung_border_tissue,
    real_slices,
    thick_slabs,
    training_patients,
    without_contrast,
)
from models.data.fetch import HEART_LABEL, place_crop
from models.data.lesions import insert_lesions, lung_region

SPACING = (0.5703, 0.5703)
BORDER_MM = 10.0


@pytest.fixture(scope="module")
def slice20(shared_data: Path) -> np.ndarray:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return d["image_hu"][20].astype(np.float32)


def disc(radius_px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)


def test_border_tissue_is_soft_tissue_near_the_lung_and_never_the_lesion_or_its_edge(slice20: np.ndarray) -> None:
    hu, mask, what = insert_lesions(np.random.default_rng(3), slice20, SPACING, 3, None)
    assert what and mask.any()
    region = lung_region(hu, SPACING)
    hard = lung_border_tissue(hu, SPACING, region, BORDER_MM, mask)
    assert hard.any()
    assert (hu[hard] > -400).all()
    # Nothing on the lesion or within its partial-volume edge is called "never lesion".
    edge = cv2.dilate(mask.astype(np.uint8), disc(round(LESION_EDGE_MM / SPACING[0]))) > 0
    assert not (hard & edge).any()
    # Nothing farther than the border from the lung region: the rest of the body stays ordinary background.
    near = cv2.dilate(region.astype(np.uint8), disc(round(BORDER_MM / SPACING[0]))) > 0
    assert not (hard & ~near).any()
    # ... but the mediastinum, the chest wall and the diaphragm next to the lung are.
    assert (hard & ~region).sum() > 1000
    # The vessels cut across inside the lung, away from the lesions, are hard negatives.
    vessels = region & (hu > -400) & ~edge
    assert vessels.sum() > 100
    assert (hard & vessels).sum() == vessels.sum()


def test_real_slices_add_border_tissue_only_when_asked(slice20: np.ndarray) -> None:
    patient = {"hu": slice20[None], "spacing_zyx_mm": np.array([5.0, *SPACING]),
               "organ": np.zeros((1,) + slice20.shape, np.uint8)}
    runs = {}
    for border in (0.0, BORDER_MM):
        xs, ys, hs, meta = real_slices(np.random.default_rng(5), patient, [], "test", 1.0, True, border_mm=border)
        assert len(xs) == 2 and meta[0]["lesions"] == [] and meta[1]["lesions"]
        runs[border] = (ys, hs)
    assert not any(h.any() for h in runs[0.0][1])  # no organ labels: no hard negatives at all
    ys, hs = runs[BORDER_MM]
    assert all(h.any() for h in hs)
    assert not any((h.astype(bool) & y.astype(bool)).any() for h, y in zip(hs, ys, strict=True))
    # The same lesions either way: the border rule reads the slice, not the random stream.
    assert all(np.array_equal(a, b) for a, b in zip(runs[0.0][0], ys, strict=True))


def _metaimage(vol: np.ndarray, spacing_xyz: tuple[float, float, float], orientation: str = "RAI",
               compressed: bool = False) -> bytes:
    import zlib

    body = vol.astype("<i2").tobytes()
    if compressed:
        body = zlib.compress(body)
    nz, ny, nx = vol.shape
    head = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"CompressedData = {compressed}\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
            f"AnatomicalOrientation = {orientation}\nElementSpacing = {' '.join(map(str, spacing_xyz))}\n"
            f"DimSize = {nx} {ny} {nz}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n")
    return head.encode() + body


@pytest.mark.parametrize("compressed", [False, True])
def test_metaimage_is_read_as_z_y_x_slices_with_its_spacing(compressed: bool) -> None:
    from models.data.fetch import read_metaimage

    vol = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 1000  # (z, y, x), x fastest in the file
    got, spacing = read_metaimage(_metaimage(vol, (1.366, 1.5, 2.5), compressed=compressed))
    assert got.dtype == np.int16 and np.array_equal(got, vol)
    assert np.allclose(spacing, [2.5, 1.5, 1.366])


def test_metaimage_in_another_orientation_is_refused() -> None:
    from models.data.fetch import read_metaimage

    with pytest.raises(SystemExit):
        read_metaimage(_metaimage(np.zeros((2, 3, 4), np.int16), (1, 1, 1), orientation="LPS"))


def test_right_half_is_cut_at_the_body_midline_and_keeps_the_patients_right() -> None:
    import io
    import tarfile

    from models.data.fetch import convert_right_half

    vol = np.full((2, 8, 24), -1000, np.int16)
    vol[:, 2:6, 4:17] = 40  # a body over columns 4..16, off the image centre (12): its midline is column 10
    vol[:, 3, 5] = 300  # a mark on the patient's right (low columns, as read_metaimage orients them)
    vol[:, 3, 11] = 900  # and one just left of the midline, which must go

    def tar_of(name: str, data: bytes, mode: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as t:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    inner = tar_of("tutorial/t0.mha", _metaimage(vol, (1.9, 1.9, 2.5)), "w:gz")
    with tarfile.open(fileobj=io.BytesIO(tar_of("pkg/tutorial.tar.gz", inner, "w")), mode="r") as outer:
        got = convert_right_half(outer, "pkg/tutorial.tar.gz", "tutorial/t0.mha")
        with pytest.raises(SystemExit):  # a pinned archive without the named scan is refused plainly
            convert_right_half(outer, "pkg/tutorial.tar.gz", "tutorial/t5.mha")
    assert got["hu"].shape == (2, 8, 10)
    assert (got["hu"] == 300).sum() == 2 and not (got["hu"] == 900).any()
    assert np.allclose(got["spacing_zyx_mm"], [2.5, 1.9, 1.9]) and not got["organ"].any()


def test_validation_patients_are_never_training_patients() -> None:
    assert training_patients(",".join(TRAIN_PATIENTS)) == TRAIN_PATIENTS
    assert training_patients("ts_chest, pm_right") == ("ts_chest", "pm_right")
    for spec in ("ts_chest,lung1", "ts_domes"):
        with pytest.raises(SystemExit, match="validation patients"):
            training_patients(spec)


def test_thick_slabs_average_consecutive_slices_in_hu_without_overlap() -> None:
    rng = np.random.default_rng(5)
    hu = rng.integers(-1000, 400, (7, 4, 5)).astype(np.int16)
    organ = np.zeros((7, 4, 5), np.uint8)
    organ[1, 0, 0] = 3  # an organ in the slab's first run, on one of its slices only
    lung = np.arange(7, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 5), np.uint8)
    patient = {"hu": hu, "organ": organ, "lung": lung, "spacing_zyx_mm": np.array([1.5, 0.8, 0.8])}
    slab = thick_slabs(patient, 5.0)
    assert slab is not None
    # round(5 / 1.5) = 3 slices a run: slices 0-2 and 3-5; the seventh is left over, not half a slab.
    assert slab["hu"].shape == (2, 4, 5)
    assert np.array_equal(slab["hu"], np.round(hu[:6].reshape(2, 3, 4, 5).astype(np.float64).mean(axis=1)))
    assert np.allclose(slab["spacing_zyx_mm"], [4.5, 0.8, 0.8])
    assert slab["organ"][0, 0, 0] == 3 and slab["organ"].sum() == 3
    assert np.array_equal(slab["lung"][:, 0, 0], [1, 4])


def test_thick_slabs_leave_thick_and_single_slice_patients_alone() -> None:
    one = {"hu": np.zeros((1, 4, 4), np.int16), "organ": np.zeros((1, 4, 4), np.uint8),
           "spacing_zyx_mm": np.array([1.0, 1.0, 1.0])}
    thick = {"hu": np.zeros((6, 4, 4), np.int16), "organ": np.zeros((6, 4, 4), np.uint8),
             "spacing_zyx_mm": np.array([5.0, 0.6, 0.6])}
    assert thick_slabs(one, 5.0) is None
    assert thick_slabs(thick, 5.0) is None


def angiogram_slice() -> dict[str, np.ndarray]:
    """Two lungs at parenchyma density, one with a 450 HU vessel inside, beside a 700 HU rib outside them."""
    hu = np.full((1, 120, 160), 40, np.int16)  # soft tissue
    hu[0, :3], hu[0, -3:], hu[0, :, :3], hu[0, :, -3:] = -1000, -1000, -1000, -1000  # air round the body
    hu[0, 20:100, 15:70] = -850
    hu[0, 20:100, 90:145] = -850
    hu[0, 55:63, 40:48] = 450  # the vessel, deep in the left lung
    hu[0, 50:70, 145:150] = 700  # a rib against the right lung's wall
    return {"hu": hu, "organ": np.zeros(hu.shape, np.uint8), "spacing_zyx_mm": np.array([1.5, 1.0, 1.0])}


def test_without_contrast_maps_lung_vessels_to_plain_blood_and_marks_them_never_lesion() -> None:
    patient = angiogram_slice()
    plain = without_contrast(patient)
    assert plain is not None
    hu, organ = plain["hu"][0], plain["organ"][0]
    assert np.all(hu[56:62, 41:47] == NONCONTRAST_BLOOD_HU)
    assert np.all(organ[56:62, 41:47] == VESSEL_LABEL)
    # The rib, the chest wall and the parenchyma away from the vessel keep their HU; nothing else is a vessel.
    assert np.all(hu[50:70, 145:150] == 700)
    assert np.all(hu[5:15, 5:150] == 40)
    assert np.all(hu[25:45, 20:65] == -850)
    assert organ.sum() == VESSEL_LABEL * int((organ > 0).sum()) and (organ > 0).sum() <= 100
    assert np.array_equal(patient["hu"], angiogram_slice()["hu"])  # the patient given is not changed


def test_without_contrast_leaves_a_plain_ct_alone() -> None:
    patient = angiogram_slice()
    patient["hu"][patient["hu"] == 450] = 45
    assert without_contrast(patient) is None


def test_without_contrast_brings_the_labelled_blood_pool_to_plain_density() -> None:
    # Between the lungs: a heart-labelled chamber of 450 HU blood in a 120 HU wall, a fat pad, a 700 HU
    # vertebra 6 px from the heart, and an unlabelled enhanced vein outside the lungs.
    patient = angiogram_slice()
    hu, organ = patient["hu"][0], patient["organ"][0]
    hu[30:60, 72:88] = -100  # mediastinal fat
    hu[34:50, 74:86], organ[34:50, 74:86] = 120, HEART_LABEL  # heart wall
    hu[37:47, 77:83] = 450  # its blood
    hu[56:60, 74:86] = 700  # vertebra
    hu[5:9, 75:85] = 450  # an unlabelled vein in the chest wall, away from the lungs
    plain = without_contrast(patient)
    assert plain is not None
    got = plain["hu"][0].astype(np.float32)
    blood, wall = got[38:46, 78:82], np.concatenate([got[35, 75:85], got[48, 75:85]])
    assert np.all(np.abs(blood - (NONCONTRAST_BLOOD_HU + PLAIN_POOL_SPREAD_HU)) <= 2)
    assert np.all((wall >= NONCONTRAST_BLOOD_HU) & (wall <= NONCONTRAST_BLOOD_HU + 6))
    assert np.all(got[30:33, 72:88] == -100)  # the fat keeps its HU
    assert np.all(got[56:60, 74:86] == 700) and np.all(got[5:9, 75:85] == 450)
    assert np.array_equal(plain["organ"][0][34:50, 74:86], organ[34:50, 74:86])  # still never lesion


def test_place_crop_puts_a_report_mask_where_its_affine_says() -> None:
    affine = np.diag([-1.5, -1.5, 1.5, 1.0])
    affine[:3, 3] = (100.0, 200.0, 300.0)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ np.array([3, 5, 7]) + affine[:3, 3]
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1, 2, 3] = 1
    placed = place_crop(mask, crop_affine, (10, 12, 14), affine, "m")
    assert placed.sum() == 1 and placed[4, 7, 10]
    for bad in (np.array([3.5, 5, 7]), np.array([8, 5, 7])):  # half a voxel off; or running off the volume
        shifted = affine.copy()
        shifted[:3, 3] = affine[:3, :3] @ bad + affine[:3, 3]
        with pytest.raises(SystemExit):
            place_crop(mask, shifted, (10, 12, 14), affine, "m")
    resampled = crop_affine.copy()
    resampled[:3, :3] *= 2
    with pytest.raises(SystemExit):
        place_crop(mask, resampled, (10, 12, 14), affine, "m")


@pytest.fixture(scope="module")
def lung1_chest(shared_data: Path) -> dict[str, np.ndarray]:
    """Six hilar slices of lung1, a plain (no contrast) chest CT, as a patient file of models.data.fetch."""
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        hu = d["image_hu"][10:16].astype(np.int16)
        return {"hu": hu, "organ": np.zeros(hu.shape, np.uint8),
                "spacing_zyx_mm": np.asarray(d["spacing_zyx_mm"], np.float64)}


def test_without_contrast_reads_real_plain_ct_as_plain(lung1_chest: dict[str, np.ndarray]) -> None:
    assert without_contrast(lung1_chest) is None


def test_without_contrast_finds_enhanced_vessels_in_real_lungs_and_leaves_the_ribs(
        lung1_chest: dict[str, np.ndarray]) -> None:
    # lung1's own lung vessels made 400 HU denser, as contrast agent would: the function must find those, and
    # leave the dense anatomy outside the lung fields (ribs, spine, sternum) as it is. (Calcifications inside
    # the lung fields, at lung1's right hilum, are taken for vessels: the docstring says so.)
    enhanced = dict(lung1_chest)
    enhanced["hu"] = lung1_chest["hu"].copy()
    sp = (float(lung1_chest["spacing_zyx_mm"][1]), float(lung1_chest["spacing_zyx_mm"][2]))
    vessels = np.zeros(enhanced["hu"].shape, bool)
    lungs = np.zeros(enhanced["hu"].shape, bool)
    for z in range(enhanced["hu"].shape[0]):
        hu = lung1_chest["hu"][z].astype(np.float32)
        lungs[z] = lung_region(hu, sp)
        vessels[z] = lungs[z] & (hu > 0) & (hu < 150)
    enhanced["hu"][vessels] += 400
    plain = without_contrast(enhanced)
    assert plain is not None
    assert np.abs(plain["hu"][vessels].astype(np.float32) - NONCONTRAST_BLOOD_HU).mean() < 60
    assert (plain["organ"][vessels] == VESSEL_LABEL).mean() > 0.9
    bone = (lung1_chest["hu"] > 300) & ~lungs
    assert bone.sum() > 10_000
    assert np.array_equal(plain["hu"][bone], enhanced["hu"][bone])
