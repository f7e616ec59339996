"""The daemon's operational metrics, and the end-to-end latency of each message (receipt to last PUBACK)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from gateway.telemetry import Registry


@dataclass
class GatewayMetrics:
    """Every metric the daemon exports on `/metrics`; one instance per gateway."""

    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = r.counter("medshield_messages_received_total", "Inbound messages taken from the queue")
        self.protected = r.counter("medshield_messages_protected_total", "Messages protected and spooled")
        self.quarantined = r.counter("medshield_messages_quarantined_total", "Messages quarantined, by reason")
        self.duplicates = r.counter("medshield_messages_duplicate_total", "Redelivered messages already spooled")
        self.published = r.counter("medshield_rows_published_total", "Spool rows acknowledged by the cloud broker")
        self.faults = r.counter("medshield_processing_faults_total", "Unexpected errors, by stage")
        self.released = r.counter("medshield_inbound_released_total", "Inbound messages left for redelivery")
        self.stage = r.histogram("medshield_stage_seconds", "Per-stage latency")
        self.end_to_end = r.histogram(
            "medshield_end_to_end_seconds", "Inbound receipt to cloud PUBACK of the last part"
        )
        self.spool_depth = r.gauge("medshield_spool_rows", "Rows waiting in the spool")
        self.spool_bytes = r.gauge("medshield_spool_bytes", "Bytes waiting in the spool")
        self.queue_depth = r.gauge("medshield_queue_depth", "Messages waiting for a worker")
        self.queue_bytes = r.gauge("medshield_queue_bytes", "Payload bytes waiting for a worker")
        self.connected = r.gauge("medshield_broker_connected", "1 when the broker link is up")
        self.backpressure = r.gauge("medshield_intake_paused", "1 while intake is paused because the spool is full")


class EndToEnd:
    """Pairs each committed message with the PUBACK of its last row, for `medshield_end_to_end_seconds`."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._pending: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def started(self, message_id: str, received_mono: float, rows: int) -> None:
        with self._lock:
            self._pending[message_id] = (received_mono, rows)

    def cancelled(self, message_id: str) -> None:
        with self._lock:
            self._pending.pop(message_id, None)

    def row_delivered(self, message_id: str) -> None:
        with self._lock:
            pending = self._pending.get(message_id)
            if pending is None:
                return
            start, left = pending
            if left > 1:
                self._pending[message_id] = (start, left - 1)
                return
            del self._pending[message_id]
        self._metrics.end_to_end.observe(time.monotonic() - start)
