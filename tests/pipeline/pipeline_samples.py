"""Sample inputs for pipeline tests: CT slices as DICOM, PNG and NPY bytes."""

from __future__ import annotations

import io

import cv2
import numpy as np

from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.rng import SeededRandom
from medshield_tools.scanner_sim import dicom_from_hu

GATEWAY = GatewayKey.generate("gw-pipeline", SeededRandom(b"pipeline-tests-gateway"))
PINNED = TrustedGateways([GATEWAY.card])


def ct_slice_as_dicom(hu: np.ndarray, *, seed: int = 0) -> bytes:
    """One HU slice as a CT DICOM file (unsigned 12-bit, intercept −1024)."""
    return dicom_from_hu(hu, instance=seed + 1, spacing_mm=(0.5703, 0.5703), thickness_mm=5.0, signed=False)


def png_bytes(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def npy_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, pixels, allow_pickle=False)
    return buffer.getvalue()
