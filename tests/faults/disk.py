"""A small real file system for disk-full faults: a tmpfs (root only), and a way to fill it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType


class DiskUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, or no mount permission)."""


class TmpfsDisk:
    """`with TmpfsDisk(path, size) as disk:` mounts a tmpfs of `size` bytes at `path`, unmounts after."""

    def __init__(self, where: Path, size_bytes: int) -> None:
        self.where = where
        self.size_bytes = size_bytes

    def __enter__(self) -> Path:
        self.where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0700", "tmpfs", str(self.where)],
            capture_output=True,
        )
        if done.returncode != 0:
            raise DiskUnavailable(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
        return self.where

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        subprocess.run(["umount", "-l", str(self.where)], check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Write to `disk` until it is full (as another program would); returns the file to delete."""
    path = disk / name
    with path.open("wb", buffering=0) as fh:
        try:
            while True:
                if not fh.write(b"\0" * 65536):
                    break
        except OSError:
            pass
    return path
