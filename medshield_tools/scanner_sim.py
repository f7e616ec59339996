"""A scanner simulator: real CT slices wrapped as DICOM, pydicom's bundled CT, generated PNG/NPY images,
and a few malformed inputs, published over MQTT like a modality (or a DICOM router) would.

Used by `medshield demo`, the broker tests and the end-to-end benchmark. Demo DICOMs carry an obviously
synthetic patient (no real person's data).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway import topics
from gateway.resources import shared_data_dir


@dataclass(frozen=True)
class SimImage:
    """One input to publish; `expect` is 'protected' or the quarantine reason family the demo expects."""

    name: str
    data: bytes
    kind: str
    expect: str = "protected"


def dicom_from_hu(
    hu: np.ndarray,
    *,
    instance: int,
    spacing_mm: Sequence[float] = (1.0, 1.0),
    thickness_mm: float = 1.0,
    series_seed: str = "medshield-demo",
    signed: bool = True,
) -> bytes:
    """A CT Image Storage DICOM (explicit VR little endian) holding the HU slice `hu`, valid for its IOD
    (dciodvfy finds no error): one study, series and frame of reference per `series_seed`, the slice placed
    at z = −instance × thickness in a head-first supine patient.

    `signed`: signed 16-bit stored values with rescale 1/0 (as many scanners write); otherwise unsigned 12-bit
    stored values with rescale intercept −1024 (the other common layout). Both decode to the same HU.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    if hu.ndim != 2:
        raise ValueError("one 2-D slice expected")
    if signed:
        pixels = np.clip(hu, -32768, 32767).astype("<i2")
    else:
        pixels = (np.clip(hu, -1024, 3071).astype(np.int32) + 1024).astype("<u2")
    series_uid = generate_uid(entropy_srcs=[series_seed, "series"])
    sop_uid = generate_uid(entropy_srcs=[series_seed, "instance", str(instance)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[series_seed, "study"])
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_seed, "frame-of-reference"])
    ds.Modality = "CT"
    ds.PatientName = "Demo^Synthetic"
    ds.PatientID = "DEMO-0001"
    # Type 2 attributes: present, and empty where a synthetic patient has nothing to say.
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesNumber = 1
    ds.Laterality = ""
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "MedShield scanner simulator"
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    rows, cols = int(pixels.shape[0]), int(pixels.shape[1])
    z = -float(instance) * float(thickness_mm)
    ds.ImagePositionPatient = [-cols / 2 * float(spacing_mm[1]), -rows / 2 * float(spacing_mm[0]), z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = 0 if signed else -1024
    ds.RescaleSlope = 1
    ds.PixelSpacing = [float(spacing_mm[0]), float(spacing_mm[1])]
    ds.SliceThickness = float(thickness_mm)
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def lung_ct_slices(indices: Iterable[int], npz: Path | None = None) -> list[SimImage]:
    """Slices of the real chest CT (shared/data/ct/lung1.npz) as DICOM; slices 32–34 hold the nodule."""
    path = npz or shared_data_dir() / "ct" / "lung1.npz"
    with np.load(path) as data:
        volume = data["image_hu"]
        spacing = [float(v) for v in data["spacing_zyx_mm"]]
    out = []
    for i in indices:
        dcm = dicom_from_hu(volume[i], instance=int(i) + 1, spacing_mm=spacing[1:], thickness_mm=spacing[0])
        out.append(SimImage(f"lung1 slice {i}", dcm, "dicom"))
    return out


def ct_small() -> SimImage:
    """pydicom's bundled real CT_small.dcm (128×128 16-bit CT). It is cropped around the spine, with lung in
    its corners and no air around the body, so the default carrier rule (air outside the body only) leaves it
    no room: the gateway quarantines it (no_capacity) rather than write into the lungs."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    return SimImage("pydicom CT_small.dcm", Path(str(path)).read_bytes(), "dicom", "quarantined")


def generated_ct(side: int, seed: int) -> np.ndarray:
    """A quick synthetic axial CT slice in HU: air, body ellipse, lungs, a nodule; int16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    hu = np.full((side, side), -1000.0, np.float32)
    hu[(xx / 0.45) ** 2 + (yy / 0.35) ** 2 < 1] = 40.0
    for cx in (-0.18, 0.18):
        hu[((xx - cx) / 0.14) ** 2 + (yy / 0.24) ** 2 < 1] = -850.0
    nx, ny = rng.uniform(-0.22, -0.14), rng.uniform(-0.1, 0.1)
    hu[(xx - nx) ** 2 + (yy - ny) ** 2 < 0.03**2] = 30.0
    hu += rng.normal(0, 12, hu.shape).astype(np.float32)
    return hu.astype(np.int16)


def generated_png(side: int, seed: int) -> SimImage:
    """An 8-bit grayscale PNG of a generated slice (window −1000…400 HU)."""
    import cv2

    hu = generated_ct(side, seed).astype(np.float32)
    img = np.clip((hu + 1000) / 1400 * 255, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return SimImage(f"generated PNG {side}x{side}", buf.tobytes(), "png")


def generated_npy(side: int, seed: int) -> SimImage:
    """A uint16 NPY of a generated slice (stored values = HU + 1024)."""
    hu = generated_ct(side, seed).astype(np.int32)
    buf = io.BytesIO()
    np.save(buf, np.clip(hu + 1024, 0, 65535).astype(np.uint16), allow_pickle=False)
    return SimImage(f"generated NPY {side}x{side} uint16", buf.getvalue(), "npy")


def png_bomb(side: int = 30000) -> bytes:
    """A tiny PNG that declares a huge image (decompression bomb): valid signature, IHDR, an IDAT of zeros."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * (side + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_inputs(seed: int = 7) -> list[SimImage]:
    """Inputs a gateway must quarantine: random bytes, a truncated DICOM, a PNG bomb, 0 bytes, a wrong dtype."""
    rng = np.random.default_rng(seed)
    dcm = ct_small().data
    buf = io.BytesIO()
    np.save(buf, rng.random((64, 64)).astype(np.float64), allow_pickle=False)
    return [
        SimImage("random bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "bad", "quarantined"),
        SimImage("truncated DICOM", dcm[: len(dcm) // 2], "bad", "quarantined"),
        SimImage("PNG bomb", png_bomb(), "bad", "quarantined"),
        SimImage("empty message", b"", "bad", "quarantined"),
        SimImage("float64 NPY (wrong dtype)", buf.getvalue(), "bad", "quarantined"),
    ]


def demo_feed(n_lung: int = 4, generated: int = 2, with_bad: bool = True) -> list[SimImage]:
    """The demo's mix: real lung CT slices (incl. the nodule slice 33), CT_small, generated PNG/NPY, bad ones."""
    lung_idx = sorted({33, *range(20, 20 + max(0, n_lung - 1))})[:n_lung]
    images = (lung_ct_slices(lung_idx) if lung_idx else []) + [ct_small()]
    for i in range(generated):
        images.append(generated_png(256, seed=100 + i))
        images.append(generated_npy(256, seed=200 + i))
    if with_bad:
        images += bad_inputs()
    return images


class ScannerSimulator:
    """Publishes images at QoS 1 on `medshield/scanners/<scanner>/images` and waits for the broker's PUBACKs."""

    def __init__(self, host: str, port: int, scanner: str = "ct-sim-1") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topics.scanner_images(scanner)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"scanner-{scanner}", protocol=paho.MQTTv5)
        self._client.connect(host, port)
        self._client.loop_start()

    def publish(self, data: bytes, timeout: float = 10.0) -> None:
        info = self._client.publish(self.topic, data, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError("scanner broker did not acknowledge the image")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
