"""A throw-away Debian machine with systemd as PID 1 (systemd-nspawn --boot), for testing the units for real.

The cached root (tests/deploy/make_root.sh, `make systemd-root`) stays untouched: each machine runs on an
overlay whose upper layer is a temporary directory. The machine has its own network namespace (loopback
only), so nothing in it can collide with the host's ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/medshield-test")


def cache_dir() -> Path:
    return Path(os.environ.get("MEDSHIELD_TEST_ROOT", str(DEFAULT_CACHE)))


def nspawn_unavailable() -> str | None:
    """Why a machine cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, overlay mounts)"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn missing (apt-get install systemd-container; make systemd-root)"
    if not (cache_dir() / "rootfs" / "usr" / "lib" / "systemd" / "systemd").exists():
        return f"no cached root at {cache_dir()} (make systemd-root)"
    return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


class Machine:
    """One booted container. `run()` executes a command inside it (nsenter into its namespaces)."""

    def __init__(self, workdir: Path, binds_ro: dict[Path, str] | None = None) -> None:
        self.workdir = workdir
        self.lower = cache_dir() / "rootfs"
        self.root = workdir / "merged"
        self._binds = binds_ro or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.console = workdir / "console.log"
        self.name = f"medshield-test-{os.getpid()}"

    def mount(self) -> Machine:
        for sub in ("upper", "work", "merged"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.lower},upperdir={self.workdir / 'upper'},workdir={self.workdir / 'work'}",
                str(self.root),
            ],
            check=True,
        )
        return self

    def _bind_args(self) -> list[str]:
        return [f"--bind-ro={src}:{dst}" for src, dst in self._binds.items()]

    def chroot_run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a command in the (not booted) root, as an admin would before the first boot."""
        return subprocess.run(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network", f"--machine={self.name}",
             "-D", str(self.root),
             *self._bind_args(), "--", *argv],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def boot(self, timeout: float = 120) -> Machine:
        log = self.console.open("wb")
        self._proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--private-network",
                f"--machine={self.name}",
                "--boot",
                "-D",
                str(self.root),
                *self._bind_args(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.leader is None:
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.console.read_text(errors='replace')[-3000:]}")
            for child in _children(self._proc.pid):
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    self.leader = child
            time.sleep(0.2)
        if self.leader is None:
            raise TimeoutError("no systemd in the container")
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return self
            time.sleep(0.5)
        raise TimeoutError(f"the container did not finish booting: {state}")

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.leader is not None, "boot() first"
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--", *argv],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "--property=" + ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            if self.leader is not None:
                self.run("systemctl", "poweroff", "--no-block")
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        subprocess.run(["umount", str(self.root)], check=False, capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Machine:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.close()
