"""An embedded mosquitto on 127.0.0.1, for the quickstart (no broker configured), the demo and tests."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.errors import ConfigError

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str:
    """Path of the mosquitto binary ($MEDSHIELD_MOSQUITTO, PATH, or the usual sbin locations)."""
    override = os.environ.get("MEDSHIELD_MOSQUITTO")
    candidates = ([override] if override else []) + [shutil.which("mosquitto") or ""] + list(MOSQUITTO_CANDIDATES)
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ConfigError("no broker configured and mosquitto is not installed (apt-get install mosquitto)")


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A mosquitto child process listening only on loopback.

    With `persistence_dir`, sessions and queued QoS 1 messages survive `stop()`/`start()` (mosquitto saves on
    clean shutdown and every `autosave_s`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        persistence_dir: Path | None = None,
        host: str = "127.0.0.1",
        max_inflight: int = 20,
        autosave_s: int = 1,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.persistence_dir = persistence_dir
        self._workdir = Path(tempfile.mkdtemp(prefix="medshield-broker-"))
        self.log_path = log_path or self._workdir / "mosquitto.log"
        self._max_inflight = max_inflight
        self._autosave_s = autosave_s
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        lines = [
            # Run as the current user: mosquitto started as root would otherwise switch to "mosquitto",
            # which cannot reach a 0700 state directory.
            f"user {current_user()}",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"max_inflight_messages {self._max_inflight}",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.persistence_dir is not None:
            self.persistence_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lines += [
                "persistence true",
                f"persistence_location {self.persistence_dir}/",
                f"autosave_interval {self._autosave_s}",
            ]
        else:
            lines.append("persistence false")
        path = self._workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        if self.running:
            return self
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                raise ConfigError(f"mosquitto exited at start (port {self.port}): {log}")
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it hangs."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
