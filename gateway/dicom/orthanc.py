"""A private Orthanc PACS (Debian packages `orthanc`, `orthanc-dicomweb`) for the demo and the delivery tests:
its own configuration and storage directory, free loopback ports, read back through its REST API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.broker import free_port

ORTHANC_AET = "ORTHANC"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def find_orthanc() -> str:
    for candidate in (shutil.which("Orthanc"), "/usr/sbin/Orthanc"):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("Orthanc is not installed (`make test` installs it with apt-get)")


class Orthanc:
    """`start()` / `stop()`; `instances()` and `file(id)` read what it stores over REST."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "medshield-test",
            "StorageDirectory": str(directory / "storage"),
            "IndexDirectory": str(directory / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "StorageCompression": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.config_path = directory / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout: float = 30.0) -> Orthanc:
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen([find_orthanc(), str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.directory}/orthanc.log")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            body: bytes = response.read()
            return body

    def instances(self) -> list[str]:
        return list(json.loads(self.get("/instances")))

    def file(self, instance: str) -> bytes:
        return self.get(f"/instances/{instance}/file")

    def tags(self, instance: str) -> dict[str, Any]:
        return dict(json.loads(self.get(f"/instances/{instance}/simplified-tags")))

    def stored_by_sop_instance(self) -> dict[str, bytes]:
        """Every stored file, keyed by its SOP Instance UID."""
        return {str(self.tags(i)["SOPInstanceUID"]): self.file(i) for i in self.instances()}


def same_elements(stored: bytes, sent: bytes) -> bool:
    """The same transfer syntax, the same data elements (tag, VR, value) in order and the same Pixel Data bytes.

    Orthanc stores through dcmtk, which may re-encode sequence lengths; this is the comparison that holds
    for what a PACS keeps of an image."""
    import io

    import pydicom

    a, b = (pydicom.dcmread(io.BytesIO(x)) for x in (stored, sent))

    def elements(ds: Any) -> list[tuple[Any, str, Any]]:
        return [(el.tag, el.VR, el.value) for el in ds]

    return bool(
        a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
        and elements(a) == elements(b)
        and a.get("PixelData") == b.get("PixelData")
    )
