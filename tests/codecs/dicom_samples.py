"""Real DICOM inputs for the codec tests: files bundled with pydicom, and the real CT wrapped as DICOM."""

from __future__ import annotations

import io
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
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Phantom^Lung"
    ds.PatientID = "LUNG1"
    ds.PixelSpacing = [0.5703, 0.5703]
    ds.SliceThickness = 5.0
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.RescaleSlope = 1
    if signed:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept = 0
        ds.PixelData = hu.astype("<i2").tobytes()
    else:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept = -1024
        ds.PixelData = (hu.astype(np.int32) + 1024).astype("<u2").tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def lung1_slice(shared_data: Path, index: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """One slice of the real CT (int16 HU) and its lesion mask (bool); slice 33 has the nodule."""
    with np.load(shared_data / "ct" / "lung1.npz") as data:
        return data["image_hu"][index].copy(), data["lesion_mask"][index].astype(bool)
