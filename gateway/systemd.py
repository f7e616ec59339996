"""systemd readiness and watchdog notifications over $NOTIFY_SOCKET, without a dependency.

Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op, so the daemon calls them unconditionally.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def _socket_address(raw: str) -> str | bytes:
    # A leading "@" names a Linux abstract-namespace socket.
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram (e.g. "READY=1"); returns False when not under systemd or on failure."""
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET")
    if not target:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_socket_address(target))
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError:
        return False


def ready(status: str = "ready") -> bool:
    return notify(f"READY=1\nSTATUS={status}")


def stopping(status: str = "stopping") -> bool:
    return notify(f"STOPPING=1\nSTATUS={status}")


def watchdog_ping() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec (from $WATCHDOG_USEC, if meant for this process), else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
