"""The demo's hospital loop: a modality (dcmtk's storescu) ─C-STORE─▶ gateway ─MQTT─▶ receiver ─C-STORE─▶ Orthanc.

Used by `medshield demo` when storescu and Orthanc are installed (the Makefile installs both): a private
Orthanc on free loopback ports, a `Delivery` of restored originals to it, storescu sending a CT series to the
gateway's C-STORE listener, and a check, through Orthanc's REST API, that every image Orthanc holds is the
one storescu sent (same data elements, same Pixel Data bytes).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.dicom.delivery import Delivery, Destination, key_opener
from gateway.dicom.orthanc import ORTHANC_AET, Orthanc, find_orthanc, same_elements

MODALITY_AE = "DEMO-CT"


def data_set_bytes(part10: bytes) -> bytes:
    """The data set of a Part 10 file: what follows the preamble, `DICM` and the file meta group."""
    (group_length,) = struct.unpack_from("<I", part10, 132 + 8)
    return part10[132 + 12 + group_length :]


def available() -> bool:
    """True when storescu and Orthanc are installed."""
    try:
        find_orthanc()
    except FileNotFoundError:
        return False
    return shutil.which("storescu") is not None


@dataclass
class HospitalResult:
    sent: int = 0
    answered_success: int = 0
    in_orthanc: int = 0
    identical: int = 0
    """Same data elements and Pixel Data bytes as sent."""
    bit_exact: int = 0
    """Moreover the same data set bytes (after the file meta group, which Orthanc writes itself)."""

    @property
    def ok(self) -> bool:
        return self.sent == self.answered_success == self.in_orthanc == self.identical


class HospitalLoop:
    """`start()` Orthanc and the delivery; `send(files, port)` with storescu; `check()`; `stop()`."""

    def __init__(self, root: Path, key_path: Path, gateways: Any) -> None:
        from gateway.crypto.recipients import PrivateKey

        self.orthanc = Orthanc(root / "orthanc")
        self.destination = Destination(
            name="orthanc", kind="cstore", what="original", host="127.0.0.1", port=self.orthanc.dicom_port,
            called_ae_title=ORTHANC_AET,
        )
        self.delivery = Delivery(
            [self.destination], root / "delivery.sqlite3", key_opener(PrivateKey.load(key_path), True, gateways)
        )
        self.result = HospitalResult()
        self._sent: dict[str, bytes] = {}

    def start(self) -> HospitalLoop:
        self.orthanc.start()
        self.delivery.start()
        return self

    def send(self, files: list[Path], port: int, called_ae_title: str) -> None:
        """One storescu association carrying `files` to the gateway; counts the Success responses."""
        import pydicom

        for path in files:
            self._sent[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path.read_bytes()
        done = subprocess.run(
            ["storescu", "-v", "-aet", MODALITY_AE, "-aec", called_ae_title, "127.0.0.1", str(port), *map(str, files)],
            capture_output=True, text=True, timeout=300,
        )
        self.result.sent += len(files)
        self.result.answered_success += (done.stdout + done.stderr).count("Received Store Response (Success)")

    def delivered(self) -> int:
        return self.delivery.delivered[self.destination.name]

    def check(self) -> HospitalResult:
        stored = self.orthanc.stored_by_sop_instance()
        self.result.in_orthanc = sum(1 for uid in self._sent if uid in stored)
        self.result.identical = sum(
            1 for uid, data in self._sent.items() if uid in stored and same_elements(stored[uid], data))
        self.result.bit_exact = sum(
            1 for uid, data in self._sent.items()
            if uid in stored and data_set_bytes(stored[uid]) == data_set_bytes(data)
        )
        return self.result

    def stop(self) -> None:
        self.delivery.stop()
        self.orthanc.stop()
