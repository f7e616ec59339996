"""The daemon's operational metrics, and the end-to-end latency of each message (receipt to last PUBACK)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.telemetry import Registry, build_info


@dataclass
class GatewayMetrics:
    """Every metric the daemon exports on `/metrics`; one instance per gateway."""

    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        r.info("medshield_build", "The running gateway's version and runtime", build_info())
        self.received = r.counter("medshield_messages_received_total", "Inbound messages taken from the queue")
        self.protected = r.counter("medshield_messages_protected_total", "Messages protected and spooled")
        self.quarantined = r.counter(
            "medshield_messages_quarantined_total", "Messages quarantined, by reason", labels=("reason",)
        )
        self.duplicates = r.counter("medshield_messages_duplicate_total", "Redelivered messages already spooled")
        self.published = r.counter(
            "medshield_rows_published_total", "Spool rows acknowledged by the cloud broker", labels=("kind",)
        )
        self.faults = r.counter("medshield_processing_faults_total", "Unexpected errors, by stage", labels=("stage",))
        self.released = r.counter(
            "medshield_inbound_released_total", "Inbound messages left for redelivery", labels=("why",)
        )
        # Disjoint parts only, so that summing over `stage` means something: the whole protection step has
        # its own histogram, and the parts of `seal` theirs.
        self.protect = r.histogram("medshield_protect_seconds", "The whole protection step of one message")
        self.stage = r.histogram(
            "medshield_stage_seconds",
            "Latency of each pipeline stage (decode, segment, keys, hide, pack, seal, spool)",
            labels=("stage",),
        )
        self.seal_part = r.histogram(
            "medshield_seal_part_seconds", "Parts of the seal stage (search, encrypt)", labels=("part",)
        )
        self.end_to_end = r.histogram(
            "medshield_end_to_end_seconds", "Inbound receipt to cloud PUBACK of the last part"
        )
        self.spool_depth = r.gauge("medshield_spool_rows", "Rows waiting in the spool")
        self.spool_bytes = r.gauge("medshield_spool_bytes", "Bytes waiting in the spool")
        self.queue_depth = r.gauge("medshield_queue_depth", "Messages waiting for a worker")
        self.queue_bytes = r.gauge("medshield_queue_bytes", "Payload bytes waiting for a worker")
        self.connected = r.gauge("medshield_broker_connected", "1 when the broker link is up", labels=("link",))
        self.backpressure = r.gauge("medshield_intake_paused", "1 while intake is paused because the spool is full")
        self.inference_backend = r.gauge(
            "medshield_inference_backend",
            "1 for the backend serving segmentation (`requested` is the configured one: auto may fall back to cpu)",
            labels=("requested", "backend"),
        )

    def observe_timings(self, timings: Mapping[str, float]) -> None:
        """One protection's pipeline timings: `seal.<part>` entries are parts of `seal`, the rest stages."""
        for name, seconds in timings.items():
            stage, _, part = name.partition(".")
            if part:
                self.seal_part.observe(float(seconds), part=part)
            else:
                self.stage.observe(float(seconds), stage=stage)


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
