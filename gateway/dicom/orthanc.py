"""A private Orthanc PACS (Debian packages `orthanc`, `orthanc-dicomweb`) for the demo and the delivery tests:
its own configuration and storage directory, free loopback ports, read back through its REST API.

Optionally as a hospital would run it: DICOM TLS and HTTPS with a given certificate, and every HTTP request
(REST and DICOMweb) refused unless it carries `Authorization: Bearer <token>` (an Orthanc Lua filter). HTTPS
is terminated by stunnel (Debian `stunnel4`) in front of Orthanc's loopback HTTP port, as a TLS reverse proxy
would: the embedded web server of Debian 12's Orthanc 1.10.1 resets every HTTPS connection after the TLS
handshake (its civetweb against OpenSSL 3), so its own `SslEnabled` cannot be used."""

from __future__ import annotations

import json
import re
import shutil
import ssl
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

    def __init__(self, directory: Path, *, tls: tuple[Path, Path] | None = None, token: str | None = None) -> None:
        """`tls`: (certificate, private key) PEM files for HTTPS and DICOM TLS; `token`: the bearer token every
        HTTP request must carry ([A-Za-z0-9._-], it is written into a Lua script)."""
        self.directory = directory
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.https_port = free_port() if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        self._proxy: subprocess.Popen[bytes] | None = None
        self._tls = tls
        self.token = token
        self._context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
        directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
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
        if tls is not None:
            cert, key = tls
            config.update({
                "DicomTlsEnabled": True, "DicomTlsCertificate": str(cert), "DicomTlsPrivateKey": str(key),
                "DicomTlsTrustedCertificates": str(cert), "DicomTlsRemoteCertificateRequired": False,
            })
        if token is not None:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", token):
                raise ValueError("the token may hold only [A-Za-z0-9._-]")
            script = directory / "bearer.lua"
            script.write_text(
                "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
                f"  return httpHeaders['authorization'] == 'Bearer {token}'\n"
                "end\n"
            )
            config["LuaScripts"] = [str(script)]
        self.config_path = directory / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        if self.https_port is not None:
            return f"https://127.0.0.1:{self.https_port}"
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout: float = 30.0) -> Orthanc:
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen([find_orthanc(), str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        if self._tls is not None and self.https_port is not None:
            stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
            if stunnel is None:
                raise FileNotFoundError("stunnel is not installed (`make test` installs stunnel4 with apt-get)")
            conf = self.directory / "stunnel.conf"
            conf.write_text(
                f"foreground = yes\npid =\n[https]\naccept = 127.0.0.1:{self.https_port}\n"
                f"connect = 127.0.0.1:{self.http_port}\ncert = {self._tls[0]}\nkey = {self._tls[1]}\n"
            )
            self._proxy = subprocess.Popen([stunnel, str(conf)], stdout=log, stderr=subprocess.STDOUT)
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
        for process in (self._proxy, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.process = self._proxy = None

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=10, context=self._context) as response:
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
