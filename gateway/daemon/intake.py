"""Intake: the one place where an inbound message becomes a spooled item.

`Intake.accept(message)` takes one `Inbound` (the payload and where it came from) and returns only once the
message is durable: protected and committed to the spool, quarantined with a reason, or recognised as a
redelivery of a message already committed. Every intake source implements the same contract:

1. Build an `Inbound` per message. `topic` is the routing key the message id is computed over, so a
   redelivery of the same payload by the same source maps to the same id (MQTT: the topic; DICOM C-STORE:
   a stable name for the sending AE and the SOP instance).
2. While `accepting` is False (spool full, stopping), take nothing new: hold it at the sender (MQTT: leave
   it queued at the broker; C-STORE: answer "out of resources" so the modality retries).
3. Call `accept` on a thread the source owns (protection takes seconds; never on a network thread).
4. Answer success to the sender (MQTT PUBACK; C-STORE status 0x0000) only after `accept` returned, whatever
   the `Outcome`: all three mean the spool committed.
5. If `accept` raises, answer failure or nothing at all, so the sender retries later: nothing was
   committed, and the next try of the same message is handled as if it were the first.

`MqttIntake` is the first source: paho's thread only buffers (bounded by bytes, never blocking), workers call
`accept`, then acknowledge on the connection that delivered the message. Its workers protect in parallel but
commit in arrival order (`ArrivalOrder`), so the cloud sees each scanner's images in the order it sent them
whatever the number of workers. `InboxIntake` feeds messages an
operator released from quarantine (`medshield quarantine release` queues them in the spool's inbox).
"""

from __future__ import annotations

import collections
import enum
import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from gateway.config import BrokerConfig, CloudSection, GatewayConfig
from gateway.errors import InputError
from gateway.ledger import LedgerItem, LedgerWriter
from gateway.logging import get_logger
from gateway.mqtt_link import InboundMessage, MqttLink
from gateway.quarantine import Quarantine
from gateway.reasons import Reason
from gateway.rng import Clock
from gateway.spool import Attempts, Spool
from gateway.topics import scanner_of

from .ids import MessageIds
from .metrics import EndToEnd, GatewayMetrics

POLL_S = 0.2


class ProtectedLike(Protocol):
    """What a protection step returns (`gateway.pipeline.Protected` fits)."""

    @property
    def message_id(self) -> str: ...

    @property
    def envelope(self) -> bytes: ...

    @property
    def timings(self) -> Mapping[str, float]: ...


class ProtectFn(Protocol):
    """Protect one inbound payload: one result per recipient. Raise `InputError` for bad input."""

    def __call__(self, data: bytes, *, message_id: str, source: Mapping[str, str]) -> Sequence[ProtectedLike]: ...


Splitter = Callable[[bytes, int], list[bytes]]
"""Cuts an envelope into parts of at most `max_bytes` (`gateway.crypto.parts.split`)."""


@dataclass(frozen=True)
class Inbound:
    """One message from any intake source."""

    topic: str
    payload: bytes
    received_ns: int
    received_mono: float


class Outcome(enum.Enum):
    """How `Intake.accept` settled a message; each one is committed, so the sender may be told success."""

    PROTECTED = "protected"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class _Rejected:
    reason: Reason
    detail: str


class Intake:
    """Turns inbound messages into spool commits (see the module docstring for the contract)."""

    def __init__(
        self,
        config: GatewayConfig,
        protect: ProtectFn,
        *,
        spool: Spool,
        quarantine: Quarantine,
        ledger: LedgerWriter | None,
        ids: MessageIds,
        splitter: Splitter,
        metrics: GatewayMetrics,
        end_to_end: EndToEnd,
        committed: Callable[[], None],
    ) -> None:
        self._protect_fn = protect
        self._spool = spool
        self._quarantine = quarantine
        self._ledger = ledger
        self._ids = ids
        self._split = splitter
        self._metrics = metrics
        self._e2e = end_to_end
        self._committed = committed
        self._max_attempts = config.limits.max_attempts
        self._max_interrupted = config.limits.max_interrupted
        self._errors_topic = config.errors_topic
        self._cloud_topic = config.cloud_topic
        # Fixed for the daemon's life: an envelope larger than this is sent as parts.
        self._envelope_limit = (config.cloud or CloudSection()).max_message_bytes
        self._log = get_logger("intake")

    @property
    def accepting(self) -> bool:
        """False while the spool is at its cap: take nothing new until the publisher made room."""
        return not self._spool.full()

    def message_id(self, message: Inbound) -> str:
        return self._ids.for_message(message.topic, message.payload)

    def accept(self, message: Inbound, *, commit_turn: AbstractContextManager[object] | None = None) -> Outcome:
        """Protect, quarantine or recognise `message`; returns once the spool committed (raises otherwise).

        `commit_turn`, when given, is entered around the spool commit alone: a source with several workers
        passes its `ArrivalOrder` turn so that protection runs in parallel and commits keep arrival order.
        """
        turn = commit_turn if commit_turn is not None else nullcontext()
        m = self._metrics
        m.received.inc()
        message_id = self.message_id(message)
        if self._spool.is_processed(message_id):
            m.duplicates.inc()
            return Outcome.DUPLICATE
        attempts = self._spool.start_attempt(message_id)
        poison = self._poison(attempts)
        if poison is not None:
            return self._reject(message, message_id, poison, turn)
        result = self._protect(message, message_id, attempts)
        if isinstance(result, _Rejected):
            return self._reject(message, message_id, result, turn)
        return self._commit(message, message_id, result, turn)

    def _poison(self, attempts: Attempts) -> _Rejected | None:
        """Earlier starts of this message that never finished: too many faults, or too many deaths."""
        if attempts.faults >= self._max_attempts:
            return _Rejected(Reason.REPEATED_FAULTS, f"{attempts.faults} attempts ended in a fault")
        if attempts.interrupted >= self._max_interrupted:
            return _Rejected(Reason.REPEATED_CRASHES, f"the process died during {attempts.interrupted} attempts")
        return None

    def _protect(self, message: Inbound, message_id: str, attempts: Attempts) -> Sequence[ProtectedLike] | _Rejected:
        """Run the protection step; an unexpected fault is retried until `max_attempts` faults in all."""
        source = {"topic": message.topic, "scanner_id": scanner_of(message.topic)}
        while True:
            try:
                return self._protect_once(message, message_id, source)
            except InputError as exc:
                return _Rejected(exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - a fault on one message must not stop the daemon
                self._metrics.faults.inc(stage="protect")
                attempts = self._spool.record_fault(message_id)
                self._log.error(
                    "protect_fault", error=type(exc).__name__, message_id=message_id, faults=attempts.faults
                )
                if attempts.faults >= self._max_attempts:
                    return _Rejected(Reason.REPEATED_FAULTS, f"{type(exc).__name__} on {attempts.faults} attempts")
                attempts = self._spool.start_attempt(message_id)

    def _protect_once(self, message: Inbound, message_id: str, source: Mapping[str, str]) -> Sequence[ProtectedLike]:
        t0 = time.perf_counter()
        results = self._protect_fn(message.payload, message_id=message_id, source=source)
        self._metrics.protect.observe(time.perf_counter() - t0)
        return results

    def _rows(self, results: Sequence[ProtectedLike]) -> tuple[list[tuple[str, str, bytes]], list[LedgerItem]]:
        rows: list[tuple[str, str, bytes]] = []
        items: list[LedgerItem] = []
        limit, topic = self._envelope_limit, self._cloud_topic
        for result in results:
            self._metrics.observe_timings(result.timings)
            envelope = bytes(result.envelope)
            items.append(LedgerItem(result.message_id, hashlib.sha256(envelope).hexdigest(), topic))
            pieces = [envelope] if len(envelope) <= limit else self._split(envelope, limit)
            kind = "envelope" if len(pieces) == 1 else "part"
            rows.extend((kind, topic, piece) for piece in pieces)
        return rows, items

    def _commit(
        self,
        message: Inbound,
        message_id: str,
        results: Sequence[ProtectedLike],
        turn: AbstractContextManager[object],
    ) -> Outcome:
        t1 = time.perf_counter()
        rows, items = self._rows(results)
        self._e2e.started(message_id, message.received_mono, len(rows))
        ledger = (self._ledger, items) if self._ledger is not None else None
        try:
            with turn:
                fresh = self._spool.commit(message_id, "protected", rows, ledger=ledger)
        except BaseException:
            self._e2e.cancelled(message_id)
            raise
        self._metrics.stage.observe(time.perf_counter() - t1, stage="spool")
        if not fresh:
            self._e2e.cancelled(message_id)
            self._metrics.duplicates.inc()
            return Outcome.DUPLICATE
        self._metrics.protected.inc()
        self._committed()
        return Outcome.PROTECTED

    def _reject(
        self, message: Inbound, message_id: str, rejected: _Rejected, turn: AbstractContextManager[object]
    ) -> Outcome:
        record = self._quarantine.put(
            message_id, message.topic, message.payload, rejected.reason, rejected.detail, message.received_ns
        )
        with turn:
            self._spool.commit(message_id, "quarantined", [("error", self._errors_topic, record.event())])
        self._metrics.quarantined.inc(reason=rejected.reason)
        self._log.warning(
            "quarantined", message_id=message_id, reason=rejected.reason, topic=message.topic, size=len(message.payload)
        )
        self._committed()
        return Outcome.QUARANTINED


class ArrivalOrder:
    """Tickets in arrival order, and turns that let each ticket's commit go only after every earlier one.

    A worker takes its ticket together with the message (under the buffer's lock), enters `turn(ticket)`
    around its commit, and calls `Turn.close()` when done with the message, committed or not: a message that
    commits nothing (a duplicate, a failure left for redelivery) still gives up its place, or every later
    commit would wait for ever. Each ticket is held by a running worker, so every wait ends.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0

    def next_ticket(self) -> int:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            return ticket

    def turn(self, ticket: int) -> Turn:
        return Turn(self, ticket)

    def _wait_for(self, ticket: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._serving == ticket)

    def _advance(self, ticket: int) -> None:
        with self._cond:
            self._serving = ticket + 1
            self._cond.notify_all()


class Turn:
    """One ticket's place in an `ArrivalOrder`: a context manager around the commit, closed exactly once."""

    def __init__(self, order: ArrivalOrder, ticket: int) -> None:
        self._order = order
        self._ticket = ticket
        self._closed = False

    def __enter__(self) -> Turn:
        self._order._wait_for(self._ticket)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._order._wait_for(self._ticket)
            self._order._advance(self._ticket)


@dataclass(frozen=True)
class _Buffered:
    message: InboundMessage
    inbound: Inbound


class MqttIntake:
    """MQTT source: QoS 1 subscriptions on the scanner broker; acknowledgement after `Intake.accept`.

    paho's thread only appends to a buffer bounded by bytes (`limits.queue_bytes`) and by the broker's flow
    control (Receive Maximum = `limits.queue_size`); it never blocks. A message that does not fit is let go
    unacknowledged, and once the buffer has drained the connection is dropped so that the broker redelivers
    it (the session is persistent). Messages buffered from an earlier connection are still committed (a
    broker that lost its state would never redeliver them) but not acknowledged: their packet ids mean other
    messages on the new connection.
    """

    def __init__(
        self,
        intake: Intake,
        broker: BrokerConfig,
        config: GatewayConfig,
        *,
        metrics: GatewayMetrics,
        clock: Clock,
    ) -> None:
        self._intake = intake
        self._metrics = metrics
        self._clock = clock
        self._max_bytes = config.limits.queue_bytes
        self._workers = config.limits.workers
        self._buffer: collections.deque[_Buffered] = collections.deque()
        self._order = ArrivalOrder()
        self._bytes = 0
        self._cond = threading.Condition()
        self._released = False  # a message was let go unacknowledged: resync once the buffer drained
        self._stop = threading.Event()
        self._paused = False
        self._log = get_logger("intake.mqtt")
        self.link = MqttLink(
            "inbound",
            broker,
            f"medshield-{config.gateway.device_id}-in",
            persistent=True,
            subscriptions=config.inbound_filters(),
            on_message=self._on_message,
            manual_ack=True,
            receive_maximum=config.limits.queue_size,
        )
        self.heartbeats: dict[str, float] = {}
        self.threads = [
            threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True) for i in range(self._workers)
        ]

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self.threads:
            self.heartbeats[thread.name] = time.monotonic()
            thread.start()
        self.link.start()

    def stop(self) -> None:
        """Take nothing more, let each worker finish its message, then disconnect (queued acks go first)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self.threads:
            if thread.is_alive():
                thread.join()
        self.link.stop()

    @property
    def depth(self) -> int:
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- paho thread -------------------------------------------------------------------------------------
    def _on_message(self, message: InboundMessage) -> None:
        if self._stop.is_set():
            return  # unacknowledged: the broker redelivers it to the next session
        size = len(message.payload)
        with self._cond:
            if self._buffer and self._bytes + size > self._max_bytes:
                self._released = True
                self._metrics.released.inc(why="buffer_full")
                return
            inbound = Inbound(message.topic, message.payload, self._clock(), time.monotonic())
            self._buffer.append(_Buffered(message, inbound))
            self._bytes += size
            self._cond.notify()

    # -- workers -----------------------------------------------------------------------------------------
    def _take(self) -> tuple[_Buffered, Turn] | None:
        with self._cond:
            if not self._buffer:
                self._cond.wait(POLL_S)
            if not self._buffer or self._stop.is_set():
                return None
            item = self._buffer.popleft()
            self._bytes -= len(item.message.payload)
            # Taken under the buffer's lock, so ticket order is buffer order.
            return item, self._order.turn(self._order.next_ticket())

    def _resync_if_released(self) -> None:
        with self._cond:
            due = self._released and not self._buffer
            if due:
                self._released = False
        if due:
            self._log.info("inbound_resync")
            self.link.resync()

    def _worker(self) -> None:
        name = threading.current_thread().name
        while not self._stop.is_set():
            self.heartbeats[name] = time.monotonic()
            if not self._intake.accepting:
                self._pause()
                self._stop.wait(POLL_S)
                continue
            self._resume()
            taken = self._take()
            if taken is None:
                self._resync_if_released()
                continue
            self._handle(*taken)

    def _handle(self, item: _Buffered, turn: Turn) -> None:
        try:
            self._intake.accept(item.inbound, commit_turn=turn)
        except Exception as exc:  # noqa: BLE001 - a worker must survive; the message stays unacknowledged
            turn.close()  # before the pause below: later messages need not wait for it
            self._metrics.faults.inc(stage="intake")
            self._log.error("intake_failed", error=type(exc).__name__, topic=item.message.topic)
            with self._cond:
                self._released = True  # redelivered after a resync, once the buffer drained
            self._stop.wait(1.0)
            return
        finally:
            turn.close()
        self.link.ack(item.message)

    def _pause(self) -> None:
        self._metrics.backpressure.set(1)
        if not self._paused:
            self._paused = True
            self._log.warning("intake_paused_spool_full")

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._log.info("intake_resumed")
        self._metrics.backpressure.set(0)


class InboxIntake:
    """Source for released quarantine items: the spool's inbox, oldest first; a row leaves the inbox only
    after `accept` returned (a crash in between re-offers it, and it is then a duplicate)."""

    def __init__(self, intake: Intake, spool: Spool) -> None:
        self._intake = intake
        self._spool = spool
        self._stop = threading.Event()
        self._log = get_logger("intake.inbox")
        self.heartbeat = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="inbox", daemon=True)

    def start(self) -> None:
        self.heartbeat = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the row stays in the inbox and is offered again
                self._log.error("inbox_failed", error=type(exc).__name__)
                self._stop.wait(1.0)
            self._stop.wait(1.0)

    def _step(self) -> None:
        while not self._stop.is_set() and self._intake.accepting:
            self.heartbeat = time.monotonic()
            items = self._spool.inbox(1)
            if not items:
                return
            item = items[0]
            outcome = self._intake.accept(Inbound(item.topic, item.payload, item.received_ns, time.monotonic()))
            self._spool.take_from_inbox(item.seq)
            self._log.info("released_message_processed", outcome=outcome.value)
