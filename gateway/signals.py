"""Stopping on SIGTERM and SIGINT without taking a lock in a signal handler.

A Python signal handler runs on the main thread between two bytecodes, possibly while that thread holds the
lock inside `threading.Event.wait` on the very event the handler sets: `Event.set` then waits for a lock its
own thread holds, for ever, and every later SIGTERM queues behind it (a gateway caught so ignored SIGTERM
until SIGKILL). So the Python handlers do nothing; `signal.set_wakeup_fd` has the interpreter write each
signal's number to a pipe, and a watcher thread, which holds no lock the main thread could be inside, sets
the event.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler: its presence replaces the default action; the wakeup pipe carries the signal."""


def stop_on_signals(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> threading.Event:
    """An event set soon after one of `signals` arrives; call from the main thread (as `signal` requires)."""
    stop = threading.Event()
    wanted = {int(s) for s in signals}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the interpreter's write from the C handler must never block
    for signum in wanted:
        signal.signal(signum, _noted)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while not stop.is_set():
            data = os.read(read_fd, 64)
            if not data:
                return
            if wanted.intersection(data):
                stop.set()

    threading.Thread(target=watch, name="signals", daemon=True).start()
    return stop
