"""Test images for benchmarks and reports: real CT resampled to any size, generated slices, DICOM wrapping.

Every image comes with its lesion mask (the reference one for real CT, the drawn one for generated slices) so
a run can use the DS-Net segmenter or, where no model is available, the known mask.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from gateway.resources import shared_data_dir

# Hounsfield window used for 8-bit renderings of CT (lung/mediastinum compromise).
HU_WINDOW = (-1000.0, 400.0)
# 16-bit stored value = HU + 1024 (the usual CT rescale intercept), kept within 12 bits like most scanners.
HU_OFFSET = 1024
STORED_MAX = 4095
# The lung1.npz slice with the largest nodule cross-section.
LUNG1_LESION_SLICE = 33


@dataclass(frozen=True)
class BenchImage:
    """One input image: its file bytes, what format they are in, the stored pixels and its lesion mask."""

    name: str
    data: bytes
    format: str
    pixels: np.ndarray
    lesion_mask: np.ndarray
    origin: str

    @property
    def bits(self) -> int:
        return 8 * self.pixels.dtype.itemsize


def lung1_path() -> Path:
    return shared_data_dir() / "ct" / "lung1.npz"


def load_lung1() -> tuple[np.ndarray, np.ndarray]:
    """The real CT volume (HU, int16, z×y×x) and its lesion mask; `FileNotFoundError` if the data is absent."""
    path = lung1_path()
    if not path.is_file():
        raise FileNotFoundError(f"reference CT not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        return npz["image_hu"], npz["lesion_mask"].astype(bool)


def phantom_slice(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A generated chest-CT-like slice in HU (float32) with one round lesion, and that lesion's mask.

    Body ellipse (soft tissue), two lungs (air with texture), spine (bone), a nodule in the right lung, and
    scanner-like noise; enough structure that compression and segmentation behave as on real CT.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.52) / 0.33) ** 2 <= 1
    hu[body] = 40.0
    for cx in (0.33, 0.67):
        lung = ((xx - cx) / 0.13) ** 2 + ((yy - 0.48) / 0.2) ** 2 <= 1
        hu[lung] = -850.0
    spine = ((xx - 0.5) / 0.05) ** 2 + ((yy - 0.76) / 0.05) ** 2 <= 1
    hu[spine] = 700.0
    cx, cy, r = 0.3 + 0.04 * rng.random(), 0.45 + 0.05 * rng.random(), 0.025 + 0.01 * rng.random()
    lesion = ((xx - cx) ** 2 + (yy - cy) ** 2) <= r**2
    hu[lesion] = 30.0
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), max(1.0, size / 256))
    hu += 25.0 * texture / max(float(texture.std()), 1e-6) + rng.normal(0, 12, (size, size)).astype(np.float32)
    return hu, lesion


def resample(hu: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """HU slice and mask resized to size×size (area averaging down, cubic up; nearest for the mask)."""
    interp = cv2.INTER_AREA if size < hu.shape[0] else cv2.INTER_CUBIC
    out = cv2.resize(hu.astype(np.float32), (size, size), interpolation=interp)
    out_mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out, out_mask


def hu_to_stored(hu: np.ndarray, bits: int) -> np.ndarray:
    """HU → stored pixel values: 8-bit windowed rendering, or 16-bit with the CT rescale intercept."""
    if bits == 8:
        lo, hi = HU_WINDOW
        return np.clip(np.rint((hu - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    if bits == 16:
        stored: np.ndarray = np.clip(np.rint(hu + HU_OFFSET), 0, STORED_MAX).astype(np.uint16)
        return stored
    raise ValueError(f"bits must be 8 or 16, not {bits}")


def encode_png(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_npy(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, pixels, allow_pickle=False)
    return buf.getvalue()


def wrap_dicom(
    pixels: np.ndarray, *, hu_intercept: float | None = None, uid_seed: int = 0, description: str = ""
) -> bytes:
    """A minimal but complete CT Image Storage DICOM file (explicit VR little endian) holding `pixels`.

    16-bit pixels carry the rescale intercept (stored = HU − intercept); 8-bit ones are a secondary capture
    style rendering without rescale. UIDs are derived from `uid_seed` so files are reproducible.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError("wrap_dicom needs a 2-D uint8 or uint16 array")
    sop_uid = generate_uid(entropy_srcs=[f"medshield-bench/{uid_seed}/sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"medshield-bench/{uid_seed}/study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"medshield-bench/{uid_seed}/series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[f"medshield-bench/{uid_seed}/for"])
    ds.Modality = "CT"
    ds.PatientName = "BENCH^PHANTOM"
    ds.PatientID = f"BENCH{uid_seed:06d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesDescription = description or "MedShield benchmark input"
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if hu_intercept is not None:
        ds.RescaleIntercept = hu_intercept
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ct_image(
    size: int, bits: int, *, fmt: str | None = None, slice_index: int = LUNG1_LESION_SLICE, seed: int = 0
) -> BenchImage:
    """A CT slice of size×size at 8 or 16 bits: the real lung1 CT when present and at least that large
    (area-averaged down, never up), else a slice generated at its own resolution (`phantom_slice`): an
    upsampled slice holds no detail its size implies and would flatter compression.

    `fmt` defaults to DICOM for 16-bit (what scanners send) and PNG for 8-bit renderings.
    """
    try:
        real: tuple[np.ndarray, np.ndarray] | None = load_lung1()
    except FileNotFoundError:
        real = None
    if real is not None and size <= max(real[0].shape[1:]):
        hu, mask = real[0][slice_index].astype(np.float32), real[1][slice_index]
        origin = f"lung1.npz slice {slice_index}"
        if hu.shape != (size, size):
            hu, mask = resample(hu, mask, size)
            origin += f", area-averaged to {size}x{size}"
    else:
        hu, mask = phantom_slice(size, seed)
        origin = f"generated phantom at {size}x{size} (seed {seed})"
    pixels = hu_to_stored(hu, bits)
    fmt = fmt or ("dicom" if bits == 16 else "png")
    if fmt == "dicom":
        data = wrap_dicom(pixels, hu_intercept=-HU_OFFSET if bits == 16 else None, uid_seed=seed * 10_000 + size)
    elif fmt == "png":
        data = encode_png(pixels)
    elif fmt == "npy":
        data = encode_npy(pixels)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return BenchImage(name=f"ct{size}_{bits}bit", data=data, format=fmt, pixels=pixels, lesion_mask=mask, origin=origin)
