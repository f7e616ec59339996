"""The publisher: drains the spool in order to the cloud broker at QoS 1; a row is deleted only on its PUBACK.

Up to `spool.publish_window` rows are in flight. Each publish carries a completion bound to its row and to
the publish itself (a token), so only the PUBACK for that very publish can settle the row. Settled rows are
deleted from the head of the window in order. Nothing here may end the thread: a failed delete (a full
disk) or any other error is logged and retried after a pause; rows are never lost, at worst re-sent (the
receiver de-duplicates by message id).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.logging import get_logger
from gateway.mqtt_link import MqttLink
from gateway.spool import OutRow, Spool

from .metrics import EndToEnd, GatewayMetrics

POLL_S = 0.2
FAULT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class _InFlight:
    row: OutRow
    token: int = 0  # the publish that may settle this row; 0: not (or no longer) published, send it again
    acked: bool = False


class Publisher:
    """One thread; `start()`, `wake()` after each commit, `stop(deadline)` to flush and end."""

    def __init__(
        self,
        spool: Spool,
        cloud: MqttLink,
        *,
        window: int,
        metrics: GatewayMetrics,
        end_to_end: EndToEnd,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._tick = tick  # called once per loop (the ledger's periodic checkpoint)
        self._spool = spool
        self._cloud = cloud
        self._window = window
        self._metrics = metrics
        self._e2e = end_to_end
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._inflight: dict[int, _InFlight] = {}  # seq -> row, in seq order (dicts keep insertion order)
        self._settled: queue.SimpleQueue[tuple[int, int, bool]] = queue.SimpleQueue()
        self._tokens = itertools.count(1)
        self._last_seq = 0
        self._faults = 0
        self.heartbeat = time.monotonic()
        self._log = get_logger("publisher")
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> None:
        self.heartbeat = time.monotonic()
        self.thread.start()

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self, flush_timeout_s: float) -> None:
        """Flush what the cloud accepts within `flush_timeout_s`, then end the thread (rows left stay spooled)."""
        self._deadline = time.monotonic() + flush_timeout_s
        self._stop.set()
        self._wakeup.set()
        if self.thread.is_alive():
            self.thread.join()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- the thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            flushed = self._spool.depth == 0 and not self._inflight
            if self._stop.is_set() and (flushed or time.monotonic() >= self._deadline):
                return
            try:
                self._step()
                self._faults = 0
            except Exception as exc:  # noqa: BLE001 - the publisher must outlive any fault; rows stay spooled
                self._metrics.faults.inc(stage="publish")
                pause = FAULT_BACKOFF_S[min(self._faults, len(FAULT_BACKOFF_S) - 1)]
                self._faults += 1
                self._log.error("publisher_fault", error=type(exc).__name__, detail=str(exc)[:200], retry_in_s=pause)
                self._wakeup.wait(pause)
                continue
            self._wakeup.wait(0.05 if self._inflight else POLL_S)
            self._wakeup.clear()

    def _step(self) -> None:
        self._metrics.connected.set(1 if self._cloud.connected else 0, link="cloud")
        self._tick()
        self._collect()
        self._delete_settled_head()
        self._fill_window()

    def _collect(self) -> None:
        """Apply the PUBACK verdicts paho's thread reported; a refused row is published again."""
        while True:
            try:
                seq, token, ok = self._settled.get_nowait()
            except queue.Empty:
                return
            entry = self._inflight.get(seq)
            if entry is None or entry.token != token:
                continue  # settles an earlier publish of a row already handled
            if ok:
                entry.acked = True
            else:
                entry.token = 0

    def _delete_settled_head(self) -> None:
        done: list[_InFlight] = []
        for entry in self._inflight.values():
            if not entry.acked:
                break
            done.append(entry)
        if not done:
            return
        self._spool.delete([e.row.seq for e in done])  # raises on a full disk: the entries stay, retried
        for entry in done:
            del self._inflight[entry.row.seq]
            self._metrics.published.inc(kind=entry.row.kind)
            if entry.row.kind in ("envelope", "part"):
                self._e2e.row_delivered(entry.row.message_id)

    def _fill_window(self) -> None:
        for entry in self._inflight.values():
            if entry.token == 0 and not self._publish(entry):
                return
        room = self._window - len(self._inflight)
        if room <= 0:
            return
        for row in self._spool.head(room, after_seq=self._last_seq):
            entry = _InFlight(row)
            self._inflight[row.seq] = entry
            self._last_seq = row.seq
            if not self._publish(entry):
                return

    def _publish(self, entry: _InFlight) -> bool:
        """Hand `entry` to the link; False when it was refused (it stays in the window, sent again later)."""
        token = next(self._tokens)
        settled, wakeup, seq = self._settled, self._wakeup, entry.row.seq

        def on_done(ok: bool) -> None:
            settled.put((seq, token, ok))  # paho's thread: never blocks
            wakeup.set()

        entry.token = token
        if not self._cloud.publish(entry.row.topic, entry.row.payload, qos=1, on_done=on_done):
            entry.token = 0
            return False
        return True
