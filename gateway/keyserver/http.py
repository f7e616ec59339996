"""HTTPS shell of the key-release service, and the client the workstation uses to talk to it.

Endpoints (JSON bodies, bytes as base64url, at most 4 KiB):

    POST /v1/enrol    {"account", "token", "share", "bio_key"}          → 200 {} | 403 {"error": "refused"}
    POST /v1/release  {"account", "code", "nonce", "proof"}            → 200 {"share"} | 403 {"error": "refused"}
    GET  /healthz                                                       → 200 {"ok": true}

Every refusal is the same 403 body whatever the reason (wrong code, replay, biometric mismatch, lock-out, rate
limit, unknown account): the reason goes to the audit log only. TLS 1.2+ only; the client pins the service's
certificate (the PEM stored in the profile at enrolment) instead of trusting the system store.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import structlog

from gateway.encoding import b64url_decode, b64url_encode
from gateway.keyserver.service import KeyService

log = structlog.get_logger("gateway.keyserver")

MAX_BODY = 4096
TIMEOUT_S = 10


class _Handler(BaseHTTPRequestHandler):
    server_version = "medshield-keyserver"
    sys_version = ""
    timeout = TIMEOUT_S  # a slow or silent client holds one thread for at most this long
    service: KeyService

    def log_message(self, fmt: str, *args: object) -> None:  # the audit log records decisions; no access log
        return

    def _reply(self, status: int, doc: dict) -> None:  # type: ignore[type-arg]
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._reply(413 if length > MAX_BODY else 411, {"error": "refused"})
            return
        address = self.client_address[0]
        try:
            doc = json.loads(self.rfile.read(length))
            account = str(doc["account"])
            if self.path == "/v1/enrol":
                ok = self.service.enrol(account, str(doc["token"]), b64url_decode(doc["share"]),
                                        b64url_decode(doc["bio_key"]), address)
                if ok:
                    self._reply(200, {})
                    return
            elif self.path == "/v1/release":
                share = self.service.release(account, str(doc["code"]), b64url_decode(doc["nonce"]),
                                             b64url_decode(doc["proof"]), address)
                if share is not None:
                    self._reply(200, {"share": b64url_encode(share)})
                    return
            else:
                self._reply(404, {"error": "not found"})
                return
        except (ValueError, KeyError, TypeError):
            pass
        self._reply(403, {"error": "refused"})


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server TLS context: TLS 1.2+, the operator's certificate and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class KeyServer:
    """The service on an HTTPS socket; `start()` serves in a background thread, `stop()` shuts it down."""

    def __init__(self, service: KeyService, cert: Path, key: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"service": service})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = tls_context(cert, key).wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False)  # handshake in the handler thread
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"https://{host!s}:{port}"

    def serve_forever(self) -> None:
        log.info("keyserver listening", url=self.url)
        self._httpd.serve_forever()

    def start(self) -> KeyServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="keyserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)


class KeyServerClient:
    """Talks to one service, trusting only the pinned certificate `ca_pem` (PEM text)."""

    def __init__(self, url: str, ca_pem: str, *, timeout_s: float = TIMEOUT_S) -> None:
        if not url.startswith("https://"):
            raise ValueError("the key-release service must be reached over https://")
        self.url = url.rstrip("/")
        self._ctx = ssl.create_default_context(cadata=ca_pem)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._timeout = timeout_s

    def _post(self, path: str, doc: dict) -> dict | None:  # type: ignore[type-arg]
        req = urllib.request.Request(self.url + path, data=json.dumps(doc).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._ctx) as resp:
                out = json.loads(resp.read(MAX_BODY))
                return out if isinstance(out, dict) else None
        except urllib.error.HTTPError:
            return None

    def enrol(self, account: str, token: str, share: bytes, bio_key: bytes) -> bool:
        """Register the service's share and the biometric verifier (True when accepted). Network errors raise
        OSError (urllib.error.URLError)."""
        return self._post("/v1/enrol", {"account": account, "token": token, "share": b64url_encode(share),
                                        "bio_key": b64url_encode(bio_key)}) is not None

    def release(self, account: str, code: str, nonce: bytes, proof: bytes) -> bytes | None:
        """The padded share, or None when refused. Network errors raise OSError."""
        out = self._post("/v1/release", {"account": account, "code": code, "nonce": b64url_encode(nonce),
                                         "proof": b64url_encode(proof)})
        if out is None or not isinstance(out.get("share"), str):
            return None
        return b64url_decode(out["share"])
