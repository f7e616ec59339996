"""SIGTERM stops a process whose main thread waits on the stop event, however the signal falls."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The main thread spends nearly all its time inside Event.wait's lock: a handler that set the event there
# would wait on its own thread for ever.
WAITER = """
from gateway.signals import stop_on_signals
stop = stop_on_signals()
print("waiting", flush=True)
while not stop.is_set():
    stop.wait(0)
print("stopped", flush=True)
"""


def test_sigterm_always_stops_a_main_thread_that_waits_on_the_event() -> None:
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WAITER], cwd=REPO, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"waiting\n"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert out == b"stopped\n" and proc.returncode == 0
