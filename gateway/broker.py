"""An embedded mosquitto on 127.0.0.1, for the quickstart (no broker configured), the demo and tests.

The daemon's embedded broker listens on a fixed, documented port (`embedded_broker.port`, default
`EMBEDDED_BROKER_PORT`) so that a scanner on the same host can find it; it is supervised (`ensure_running`
restarts it after it died, with backoff); it dies with the gateway (parent-death signal); and its
configuration and log live in the state directory, or in a temporary directory removed when it stops.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.errors import ConfigError

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
# Not 1883: Debian's and Ubuntu's mosquitto package starts its own broker there.
EMBEDDED_BROKER_PORT = 11883
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


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


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` owns a listening TCP socket on `port` (Linux /proc), so a port that someone else
    holds is not mistaken for our broker being up. True where /proc cannot tell."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(fields[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, StopIteration, IndexError, ValueError):
        return True
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


# Runs in the child before mosquitto: asks the kernel for SIGTERM when the parent (the gateway's thread that
# started it) dies, even by SIGKILL, then becomes mosquitto (the setting survives exec). A fresh interpreter,
# not a preexec_fn, because forking a threaded process and running Python before exec is not safe.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0); "  # 1: PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or os._exit(1); "  # the parent already died: do not start
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def _die_with_parent() -> list[str]:
    """A prefix that makes the child get SIGTERM when the gateway dies, so no mosquitto is left orphaned
    (Linux; elsewhere the broker is stopped by the gateway's own shutdown only)."""
    if not sys.platform.startswith("linux"):
        return []
    return [sys.executable, "-c", _PDEATHSIG_EXEC, str(os.getpid())]


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
        self._log_path = log_path
        self._workdir: Path | None = None
        self._max_inflight = max_inflight
        self._autosave_s = autosave_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._listening = False  # set once `start` saw our mosquitto listen, so a starting one is not "running"
        self.restarts = 0
        self._failures = 0
        self._next_attempt = 0.0

    @property
    def log_path(self) -> Path:
        if self._log_path is not None:
            return self._log_path
        return (self._workdir or self.persistence_dir or Path(tempfile.gettempdir())) / "mosquitto.log"

    def _make_workdir(self) -> Path:
        """Where mosquitto.conf (and by default the log) go: the persistence directory, else a temporary one."""
        if self._workdir is None:
            if self.persistence_dir is not None:
                self.persistence_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._workdir = self.persistence_dir
            else:
                self._workdir = Path(tempfile.mkdtemp(prefix="medshield-broker-"))
        return self._workdir

    def _remove_workdir(self) -> None:
        if self._workdir is not None and self._workdir != self.persistence_dir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def _write_config(self) -> Path:
        self._make_workdir()
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
        path = self._make_workdir() / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._listening and self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        if self.running:
            return self
        self._listening = False
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [*_die_with_parent(), find_mosquitto(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                self._proc = None
                raise ConfigError(
                    f"embedded_broker.port: mosquitto could not start on {self.host}:{self.port}: {log.strip()}")
            if _port_open(self.host, self.port) and _listens(self._proc.pid, self.port):
                self._listening = True
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it hangs."""
        self._listening = False
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        self._remove_workdir()

    def close(self) -> None:
        self.stop()

    def ensure_running(self, now: float | None = None) -> bool:
        """Supervision, called from the daemon's main loop: restart a broker that died, retrying with backoff.
        Returns whether it is running now."""
        if self.running:
            self._failures = 0
            return True
        now = time.monotonic() if now is None else now
        if now < self._next_attempt:
            return False
        try:
            self.start(timeout=5.0)
        except ConfigError:
            self._failures += 1
            self._next_attempt = now + RESTART_BACKOFF_S[min(self._failures, len(RESTART_BACKOFF_S)) - 1]
            return False
        self.restarts += 1
        self._failures = 0
        return True

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
