"""Atomic file writes (the one way the gateway replaces a file it owns) and bounded reads of small files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gateway.errors import ConfigError


def read_small(path: Path, limit: int, what: str) -> bytes:
    """The whole of a small file the operator names (a card, a key list), reading at most `limit` + 1 bytes;
    ConfigError naming `what` and the path if it cannot be read or is larger than `limit`."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is too large")
    return data


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = False) -> None:
    """Replace `path` with `data` so that readers and crashes see the old file or the new one, never a part.

    The temporary file is created 0600 (a secret is never readable by others, even briefly), flushed to disk,
    given `mode` and renamed over `path`; it is removed if anything fails. `sync_dir` also flushes the
    directory entry, for files that must survive a power cut once this returns (quarantine, received
    envelopes).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` holding `data`, never replacing an existing file: FileExistsError if it exists.

    For secrets made once (keys): the exclusive create means two starts never race to two keys, and a write
    that fails (a full disk) removes the file, so no half-written key is ever left to be loaded later.
    """
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what was asked for
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
