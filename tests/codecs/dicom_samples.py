"""Real DICOM inputs for the codec tests: files bundled with pydicom, and the real CT wrapped as DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def bundled(name: str) -> bytes:
    """A file bundled in pydicom's wheel (looked up by exact name, so nothing is downloaded)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path).read_bytes()


def ct_dataset_bytes(hu: np.ndarray, *, signed: bool) -> bytes:
    """A CT Image Storage file holding `hu` (int16 HU): unsigned 12-bit with intercept -1024, or signed."""
    from medshield_tools.scanner_sim import dicom_from_hu

    return dicom_from_hu(hu, instance=1, spacing_mm=(0.5703, 0.5703), thickness_mm=5.0, signed=signed)


def lung1_slice(shared_data: Path, index: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """One slice of the real CT (int16 HU) and its lesion mask (bool); slice 33 has the nodule."""
    with np.load(shared_data / "ct" / "lung1.npz") as data:
        return data["image_hu"][index].copy(), data["lesion_mask"][index].astype(bool)
