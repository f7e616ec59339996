"""The gateway daemon: MQTT in → bounded queue → protect → spool → MQTT out, losing nothing.

    scanner broker ──▶ intake (paho thread: enqueue only) ──▶ queue ──▶ worker(s): protect ▸ spool commit ▸ ack
                                                                                 │
    cloud broker ◀── publisher: rows in order, QoS 1, row deleted on PUBACK ◀── spool (SQLite WAL, FULL sync)

Guarantees: an inbound message is acknowledged only after its envelope(s) or its quarantine record are
committed; a redelivery maps to the same message id and is not protected twice; a spool row is deleted only
after the cloud broker acknowledged it; a full spool stops intake (nothing is dropped; the local broker keeps
queuing because unacknowledged messages hold its in-flight window). Protection is injected (`ProtectFn`), so
the machinery is independent of the cryptographic pipeline.
"""

from __future__ import annotations

import collections
import hashlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from gateway import systemd
from gateway.broker import EmbeddedBroker
from gateway.config import BrokerConfig, CloudSection, GatewayConfig
from gateway.errors import InputError
from gateway.ledger import LedgerItem, LedgerKey, LedgerWriter
from gateway.logging import get_logger
from gateway.mqtt import MqttLink, Will
from gateway.quarantine import Quarantine
from gateway.rng import Clock, system_clock
from gateway.spool import OutRow, Spool, message_id_for
from gateway.telemetry import Registry, TelemetryServer

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


def default_splitter(envelope: bytes, max_bytes: int) -> list[bytes]:
    from gateway.crypto.parts import split

    return list(split(envelope, max_bytes))


@dataclass(frozen=True)
class Inbound:
    """One message from the scanner broker, as the paho callback saw it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ns: int
    received_mono: float


def scanner_of(topic: str) -> str:
    """The scanner id in `medshield/scanners/<id>/images`-shaped topics (the level after 'scanners')."""
    parts = topic.split("/")
    if "scanners" in parts[:-1]:
        return parts[parts.index("scanners") + 1]
    return parts[-2] if len(parts) >= 2 else ""


@dataclass
class GatewayMetrics:
    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = r.counter("medshield_messages_received_total", "Inbound messages taken from the queue")
        self.protected = r.counter("medshield_messages_protected_total", "Messages protected and spooled")
        self.quarantined = r.counter("medshield_messages_quarantined_total", "Messages quarantined, by reason")
        self.duplicates = r.counter("medshield_messages_duplicate_total", "Redelivered messages already spooled")
        self.published = r.counter("medshield_rows_published_total", "Spool rows acknowledged by the cloud broker")
        self.faults = r.counter("medshield_processing_faults_total", "Unexpected errors while protecting")
        self.stage = r.histogram("medshield_stage_seconds", "Per-stage latency")
        self.end_to_end = r.histogram(
            "medshield_end_to_end_seconds", "Inbound receipt to cloud PUBACK of the last part"
        )
        self.spool_depth = r.gauge("medshield_spool_rows", "Rows waiting in the spool")
        self.spool_bytes = r.gauge("medshield_spool_bytes", "Bytes waiting in the spool")
        self.queue_depth = r.gauge("medshield_queue_depth", "Messages waiting for a worker")
        self.connected = r.gauge("medshield_broker_connected", "1 when the broker link is up")
        self.backpressure = r.gauge("medshield_intake_paused", "1 while intake is paused because the spool is full")


class Gateway:
    """The daemon's moving parts; `start()`, then `shutdown()` (or `run()` for the signal-driven main loop)."""

    def __init__(
        self,
        config: GatewayConfig,
        protect: ProtectFn,
        *,
        splitter: Splitter = default_splitter,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config = config
        self._protect = protect
        self._split = splitter
        self._clock = clock
        self.metrics = metrics or GatewayMetrics()
        # Fixed for the daemon's life: an envelope larger than this is sent as parts.
        self._envelope_limit = (config.cloud or CloudSection()).max_message_bytes
        self._log = get_logger("daemon")
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=config.limits.queue_size)
        self._stop_intake = threading.Event()
        self._stop_publisher = threading.Event()
        self._flush_deadline = float("inf")
        self._publish_wakeup = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeats: dict[str, float] = {}
        self._pending_e2e: dict[str, tuple[float, int]] = {}
        self._pending_lock = threading.Lock()
        self._acked_mids: set[int] = set()
        self._acked_lock = threading.Lock()
        self._paused_logged = False
        self._broker: EmbeddedBroker | None = None
        self._telemetry: TelemetryServer | None = None
        self.spool: Spool | None = None
        self._ledger: LedgerWriter | None = None
        self.quarantine: Quarantine | None = None
        self.inbound: MqttLink | None = None
        self.cloud: MqttLink | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def _embedded_broker(self) -> BrokerConfig:
        if self._broker is None:
            self._broker = EmbeddedBroker(persistence_dir=self.config.gateway.state_dir / "broker").start()
            self._log.info("embedded_broker_started", port=self._broker.port)
        return BrokerConfig(host=self._broker.host, port=self._broker.port)

    def start(self) -> None:
        """Open the spool, connect both brokers (in the background), start workers and the publisher."""
        cfg = self.config
        cfg.gateway.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool = Spool(cfg.spool_path, cfg.spool.max_bytes)
        if cfg.ledger.enabled:
            key = LedgerKey.load_or_create(cfg.ledger_key_path)
            self._ledger = LedgerWriter(key, cfg.gateway.device_id, cfg.ledger_topic)
        self.quarantine = Quarantine(cfg.quarantine_dir, cfg.gateway.device_id)
        m = self.metrics
        spool = self.spool
        m.spool_depth.bind(lambda: spool.depth)
        m.spool_bytes.bind(lambda: spool.size_bytes)
        m.queue_depth.bind(self._queue.qsize)
        inbound_cfg = cfg.inbound or self._embedded_broker()
        cloud_cfg: BrokerConfig = cfg.cloud or self._embedded_broker()
        device = cfg.gateway.device_id
        self.cloud = MqttLink(
            "cloud",
            cloud_cfg,
            f"medshield-{device}-cloud",
            persistent=False,
            will=Will(cfg.status_topic, b"offline"),
            online=Will(cfg.status_topic, b"online"),
        )
        self.cloud.client.max_inflight_messages_set(cfg.spool.publish_window)
        self.cloud.client.on_publish = self._on_cloud_publish
        self.inbound = MqttLink(
            "inbound",
            inbound_cfg,
            f"medshield-{device}-in",
            persistent=True,
            subscriptions=cfg.inbound_filters(),
            on_message=self._on_inbound,
            manual_ack=True,
            receive_maximum=cfg.limits.queue_size,
        )
        self._spawn("publisher", self._publisher_loop)
        for i in range(cfg.limits.workers):
            self._spawn(f"worker-{i}", self._worker_loop)
        self.cloud.start()
        self.inbound.start()
        if cfg.telemetry.port is not None:
            self._telemetry = TelemetryServer(m.registry, self.health, cfg.telemetry.host, cfg.telemetry.port).start()
            self._log.info("telemetry_listening", port=self._telemetry.port)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        self._heartbeats[name] = time.monotonic()
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once both broker links are up (the systemd READY condition, with warm models)."""
        deadline = time.monotonic() + timeout
        assert self.inbound is not None and self.cloud is not None
        return self.inbound.wait_connected(max(0.0, deadline - time.monotonic())) and self.cloud.wait_connected(
            max(0.0, deadline - time.monotonic())
        )

    @property
    def telemetry_port(self) -> int | None:
        return self._telemetry.port if self._telemetry else None

    def alive(self, max_stall_s: float = 30.0) -> bool:
        """Every worker and the publisher looped recently (what the systemd watchdog vouches for)."""
        now = time.monotonic()
        return all(t.is_alive() for t in self._threads) and all(
            now - hb < max_stall_s for hb in self._heartbeats.values()
        )

    def health(self) -> tuple[bool, dict[str, object]]:
        inbound_up = bool(self.inbound and self.inbound.connected)
        cloud_up = bool(self.cloud and self.cloud.connected)
        spool = self.spool
        detail: dict[str, object] = {
            "inbound_connected": inbound_up,
            "cloud_connected": cloud_up,
            "spool_rows": spool.depth if spool else 0,
            "intake_paused": bool(spool and spool.full()),
            "threads_alive": self.alive(),
        }
        return (inbound_up and self.alive() and not self._stop_intake.is_set()), detail

    def shutdown(self, flush_timeout_s: float | None = None) -> None:
        """Ordered stop: intake off, in-flight work finished, spool flushed (bounded), `offline`, disconnect."""
        self._log.info("stopping")
        systemd.stopping()
        self._stop_intake.set()
        for thread in self._threads:
            if thread.name.startswith("worker"):
                thread.join()
        if self.inbound is not None:
            self.inbound.stop()  # PUBACKs already queued leave before DISCONNECT
        timeout = self.config.spool.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        self._flush_deadline = time.monotonic() + timeout
        self._stop_publisher.set()
        self._publish_wakeup.set()
        for thread in self._threads:
            if thread.name == "publisher":
                thread.join()
        if self.cloud is not None:
            if self.cloud.connected:
                info = self.cloud.publish(self.config.status_topic, b"offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError):
                    self._log.warning("offline_status_not_sent")
            self.cloud.stop()
        if self._telemetry is not None:
            self._telemetry.stop()
        left = self.spool.depth if self.spool else 0
        if self.spool is not None:
            self.spool.close()
        if self._broker is not None:
            self._broker.stop()
        self._log.info("stopped", spool_rows_left=left)

    def run(self, ready_timeout_s: float = 60.0) -> int:
        """Main loop for `medshield run`: signals, READY when connected, watchdog pings; returns the exit code."""
        stop = threading.Event()

        def _on_signal(signum: int, _frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        self.start()
        ready = False
        deadline = time.monotonic() + ready_timeout_s
        watchdog = systemd.watchdog_interval_s()
        while not stop.is_set():
            if not ready and self.wait_connected(0.0):
                ready = True
                systemd.ready("protecting")
                self._log.info("ready", device_id=self.config.gateway.device_id)
            elif not ready and time.monotonic() > deadline:
                self._log.warning("brokers_not_connected_yet", waited_s=ready_timeout_s)
                deadline = float("inf")
            if watchdog is not None and self.alive():
                systemd.watchdog_ping()
            stop.wait(min(watchdog or 1.0, 1.0) if watchdog else 0.5)
        self.shutdown()
        return 0

    # -- intake ------------------------------------------------------------------------------------------
    def _on_inbound(self, link: MqttLink, message: paho.MQTTMessage, generation: int) -> None:
        """paho thread: enqueue only. Once intake stops, messages stay unacknowledged for redelivery."""
        if self._stop_intake.is_set():
            return
        # Blocking put only happens if a broker ignores Receive Maximum; it then pauses reading, which is
        # the back-pressure we want (unacknowledged messages stay queued at the broker).
        self._queue.put(
            Inbound(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                generation,
                self._clock(),
                time.monotonic(),
            )
        )

    def _worker_loop(self) -> None:
        name = threading.current_thread().name
        assert self.spool is not None
        while not self._stop_intake.is_set():
            self._heartbeats[name] = time.monotonic()
            if self.spool.full():
                self._pause_intake()
                self._stop_intake.wait(POLL_S)
                continue
            self._resume_intake()
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - a worker must survive; the message stays unacked
                self.metrics.faults.inc(stage="handle")
                self._log.error("handle_failed", error=type(exc).__name__, topic=item.topic)

    def _pause_intake(self) -> None:
        self.metrics.backpressure.set(1)
        if not self._paused_logged:
            self._paused_logged = True
            assert self.spool is not None
            self._log.warning("intake_paused_spool_full", spool_bytes=self.spool.size_bytes, cap=self.spool.max_bytes)

    def _resume_intake(self) -> None:
        if self._paused_logged:
            self._paused_logged = False
            self._log.info("intake_resumed")
        self.metrics.backpressure.set(0)

    def _ack(self, item: Inbound) -> None:
        if self.inbound is not None:
            self.inbound.ack(item.mid, item.qos, item.generation)

    def _handle(self, item: Inbound) -> None:
        assert self.spool is not None
        m = self.metrics
        m.received.inc()
        message_id = message_id_for(item.topic, item.payload)
        if self.spool.is_processed(message_id):
            m.duplicates.inc()
            self._ack(item)
            return
        max_attempts = self.config.limits.max_attempts
        attempts = self.spool.record_attempt(message_id)
        if attempts > max_attempts:
            # It was tried before and never committed (the process died mid-way): a poison message.
            self._quarantine(item, message_id, "repeated_faults", f"{attempts - 1} attempts did not finish")
            return
        source = {"topic": item.topic, "scanner_id": scanner_of(item.topic)}
        while True:
            t0 = time.perf_counter()
            try:
                results = self._protect(item.payload, message_id=message_id, source=source)
            except InputError as exc:
                self._quarantine(item, message_id, exc.reason, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - an unexpected fault on one message must not stop the daemon
                m.faults.inc(stage="protect")
                self._log.error("protect_fault", error=type(exc).__name__, message_id=message_id, attempt=attempts)
                if attempts >= max_attempts:
                    self._quarantine(
                        item, message_id, "repeated_faults", f"{type(exc).__name__} on {attempts} attempts"
                    )
                    return
                attempts = self.spool.record_attempt(message_id)
                continue
            m.stage.observe(time.perf_counter() - t0, stage="protect")
            break
        for result in results:
            for stage, seconds in result.timings.items():
                m.stage.observe(float(seconds), stage=stage)
        t1 = time.perf_counter()
        rows: list[tuple[str, str, bytes]] = []
        items: list[LedgerItem] = []
        limit, topic = self._envelope_limit, self.config.cloud_topic
        for result in results:
            envelope = bytes(result.envelope)
            items.append(LedgerItem(result.message_id, hashlib.sha256(envelope).hexdigest(), topic))
            pieces = [envelope] if len(envelope) <= limit else self._split(envelope, limit)
            kind = "envelope" if len(pieces) == 1 else "part"
            rows.extend((kind, topic, piece) for piece in pieces)
        with self._pending_lock:
            self._pending_e2e[message_id] = (item.received_mono, len(rows))
        ledger = (self._ledger, items) if self._ledger is not None else None
        if self.spool.commit(message_id, "protected", rows, ledger=ledger):
            m.protected.inc()
        else:
            with self._pending_lock:
                self._pending_e2e.pop(message_id, None)
            m.duplicates.inc()
        m.stage.observe(time.perf_counter() - t1, stage="spool")
        self._ack(item)
        self._publish_wakeup.set()

    def _quarantine(self, item: Inbound, message_id: str, reason: str, detail: str) -> None:
        assert self.spool is not None and self.quarantine is not None
        record = self.quarantine.put(message_id, item.topic, item.payload, reason, detail, item.received_ns)
        self.spool.commit(message_id, "quarantined", [("error", self.config.errors_topic, record.event())])
        self.metrics.quarantined.inc(reason=reason)
        self._log.warning("quarantined", message_id=message_id, reason=reason, topic=item.topic, size=len(item.payload))
        self._ack(item)
        self._publish_wakeup.set()

    # -- publisher ---------------------------------------------------------------------------------------
    def _on_cloud_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        # paho thread: record the PUBACK only. (MQTTMessageInfo.is_published() raises for a message queued
        # while disconnected even after paho re-sent it, so the publisher matches mids itself.)
        with self._acked_lock:
            self._acked_mids.add(mid)
        self._publish_wakeup.set()

    def _take_ack(self, mid: int) -> bool:
        with self._acked_lock:
            if mid in self._acked_mids:
                self._acked_mids.discard(mid)
                return True
            return False

    def _publisher_loop(self) -> None:
        """Drain the spool in order; keep up to `publish_window` rows in flight; delete each on PUBACK."""
        assert self.spool is not None and self.cloud is not None
        spool, cloud, m = self.spool, self.cloud, self.metrics
        window = self.config.spool.publish_window
        inflight: collections.deque[tuple[OutRow, paho.MQTTMessageInfo]] = collections.deque()
        last_seq = 0
        while True:
            self._heartbeats["publisher"] = time.monotonic()
            m.connected.set(1 if cloud.connected else 0, link="cloud")
            m.connected.set(1 if self.inbound and self.inbound.connected else 0, link="inbound")
            flushed = spool.depth == 0 and not inflight
            if self._stop_publisher.is_set() and (flushed or time.monotonic() >= self._flush_deadline):
                return
            done: list[OutRow] = []
            while inflight and self._take_ack(inflight[0][1].mid):
                done.append(inflight.popleft()[0])
            if done:
                spool.delete([row.seq for row in done])
                for row in done:
                    m.published.inc(kind=row.kind)
                    self._finish_e2e(row)
            if len(inflight) < window:
                for row in spool.head(window - len(inflight), after_seq=last_seq):
                    info = cloud.publish(row.topic, row.payload, qos=1)
                    # NO_CONN: paho queued it and sends it after reconnecting; anything else was not queued.
                    if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                        self._log.warning("publish_not_queued", rc=paho.error_string(info.rc), seq=row.seq)
                        break
                    inflight.append((row, info))
                    last_seq = row.seq
            self._publish_wakeup.wait(0.05 if inflight else POLL_S)
            self._publish_wakeup.clear()

    def _finish_e2e(self, row: OutRow) -> None:
        if row.kind not in ("envelope", "part"):
            return
        with self._pending_lock:
            pending = self._pending_e2e.get(row.message_id)
            if pending is None:
                return
            start, left = pending
            if left > 1:
                self._pending_e2e[row.message_id] = (start, left - 1)
                return
            del self._pending_e2e[row.message_id]
        self.metrics.end_to_end.observe(time.monotonic() - start)


def pipeline_protect_fn(config: GatewayConfig) -> ProtectFn:
    """The real protection step: `gateway.pipeline.protect` once per configured recipient card.

    Loads the recipient cards and the segmentation model (warmed up by its runner) now, so that the daemon
    reports READY only once the model is warm. The daemon's deterministic message id becomes the envelope's.
    """
    from gateway import codecs, pipeline
    from gateway.crypto.recipients import RecipientCard
    from gateway.crypto.sbbe import SearchParams
    from gateway.errors import ConfigError
    from gateway.recipients_store import installed_cards
    from gateway.segment import Segmenter

    # Recipients: the cards named in the configuration, then those an administrator installed with
    # `medshield recipients add` (admin TOTP gated) into the state directory; read once at start-up.
    cards: list[RecipientCard] = []
    for card in [RecipientCard.load(path) for path in config.protection.recipients] + installed_cards(
        config.gateway.state_dir
    ):
        if all(card.key_id != known.key_id for known in cards):
            cards.append(card)
    if not cards:
        raise ConfigError(
            "protection.recipients: at least one recipient card is needed (in the configuration, or installed"
            " with `medshield recipients add`)"
        )
    seg = config.segmentation
    model_args = (seg.model,) if seg.model is not None else ()
    # Loading verifies the model against its manifest and warms the runner up; TensorRT engines are cached
    # under the state directory.
    segmenter = Segmenter(*model_args, backend=seg.backend, threads=seg.threads, state_dir=config.gateway.state_dir)
    limits = codecs.Limits(
        max_bytes=config.limits.max_bytes, max_pixels=config.limits.max_pixels, max_side=config.limits.max_side
    )
    params = SearchParams(**config.protection.sbbe.model_dump(exclude_none=True))
    suite, margin, device = config.protection.suite, config.protection.stego_margin_px, config.gateway.device_id

    def protect(data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[ProtectedLike]:
        # With several recipients each envelope needs its own id (ids must be unique per envelope); the
        # first keeps the deterministic one so redeliveries stay recognisable downstream.
        return [
            pipeline.protect(
                data,
                card,
                suite=suite,
                segmenter=segmenter.predict,
                limits=limits,
                sbbe_params=params,
                margin_px=margin,
                device_id=device,
                source=source,
                message_id=message_id if i == 0 else message_id_for(f"{message_id}/{card.key_id}", data),
            )
            for i, card in enumerate(cards)
        ]

    return protect
