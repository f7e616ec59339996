"""The gateway application: builds every part, then `start`, `shutdown`, or `run` (signals, READY, watchdog).

Everything is built in the constructor (spool opened, links and threads created, telemetry bound), so nothing
is optional once the gateway runs. READY (systemd `Type=notify`) is sent once `start` returned: the models
were warmed before the gateway was built, the spool is open and the intake is listening. Broker links connect
in the background; a cloud or scanner-broker outage is normal operation (rows wait, messages wait at the
broker) and is reported in `/healthz` and metrics, never by withholding READY or failing health. The watchdog
is pinged only while every part is alive: worker and publisher threads (with a recent heartbeat), both MQTT
network loops, and the embedded broker when there is one.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from collections.abc import Callable

from gateway import systemd
from gateway.broker import EmbeddedBroker
from gateway.config import BrokerConfig, GatewayConfig
from gateway.crypto.origin import GatewayKey
from gateway.crypto.parts import split
from gateway.ledger import LedgerWriter
from gateway.logging import get_logger, native_stderr_as_log
from gateway.mqtt_link import MqttLink, Will
from gateway.quarantine import Quarantine
from gateway.rng import Clock, system_clock
from gateway.signals import stop_on_signals
from gateway.spool import Spool, free_bytes
from gateway.telemetry import TelemetryServer

from .ids import MessageIds
from .intake import InboxIntake, Intake, MqttIntake, ProtectFn, Splitter
from .metrics import EndToEnd, GatewayMetrics
from .publisher import Publisher

MAX_STALL_S = 30.0
OFFLINE_STATUS_TIMEOUT_S = 2.0
DISK_RETRY_S = 5.0


def log_stray_errors() -> None:
    """Route what would otherwise reach stderr as plain text into the JSON log: uncaught exceptions in any
    thread, and Python warnings (pydicom's among them)."""
    log = get_logger("daemon")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        log.error("thread_died", thread=name, error=args.exc_type.__name__,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = thread_hook
    logging.captureWarnings(True)


def build_when_there_is_room(
    config: GatewayConfig, protect: ProtectFn, stop: threading.Event, metrics: GatewayMetrics | None = None
) -> Gateway | None:
    """Build the gateway; while the state disk has no room even to open the spool, say so in one log line,
    keep systemd from timing the start out, and try again every few seconds (no crash loop). None when `stop`
    was set meanwhile."""
    told = False
    while True:
        try:
            return Gateway(config, protect, metrics=metrics)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            if not told:
                told = True
                get_logger("daemon").error(
                    "state_disk_full",
                    path=str(config.gateway.state_dir),
                    free_bytes=free_bytes(config.gateway.state_dir),
                    detail="no space on the state disk to open the spool; waiting for space",
                )
            systemd.notify(
                f"STATUS=waiting for space on {config.gateway.state_dir}\n"
                f"EXTEND_TIMEOUT_USEC={int(3 * DISK_RETRY_S * 1e6)}"
            )
        if stop.wait(DISK_RETRY_S):
            return None


def serve(config: GatewayConfig, make_protect: Callable[[GatewayMetrics], ProtectFn]) -> int:
    """`medshield run`: warm the models, build the gateway (waiting for disk space), run until SIGTERM.
    `make_protect` gets the gateway's metrics (e.g. to export the inference backend in use)."""
    log_stray_errors()
    stop = stop_on_signals()
    metrics = GatewayMetrics()
    protect = make_protect(metrics)  # loads and warms the models before READY
    gateway = build_when_there_is_room(config, protect, stop, metrics)
    if gateway is None:
        return 0
    return gateway.run(stop)


class Gateway:
    """The daemon's parts, wired: MQTT intake → `Intake` → spool → `Publisher` → cloud."""

    def __init__(
        self,
        config: GatewayConfig,
        protect: ProtectFn,
        *,
        splitter: Splitter | None = None,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        cfg = config
        self.config = cfg
        self.metrics = metrics or GatewayMetrics()
        self._log = get_logger("daemon")
        cfg.gateway.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The spool and the secrets first: on a state disk without room they raise before anything else
        # (an embedded broker, threads) exists.
        self.spool = Spool(cfg.spool_path, cfg.spool.max_bytes, cfg.spool_min_free_bytes)
        self.message_ids = MessageIds.load_or_create(cfg.message_key_path)
        self._broker: EmbeddedBroker | None = None
        inbound_broker: BrokerConfig
        cloud_broker: BrokerConfig
        if cfg.inbound is not None and cfg.cloud is not None:
            inbound_broker, cloud_broker = cfg.inbound, cfg.cloud
        else:
            embedded = cfg.embedded_broker
            self._broker = EmbeddedBroker(
                embedded.port or None, host=embedded.host, persistence_dir=cfg.state.broker
            )
            local = BrokerConfig(host=self._broker.host, port=self._broker.port)
            inbound_broker, cloud_broker = cfg.inbound or local, cfg.cloud or local
        self.quarantine = Quarantine(cfg.quarantine_dir, cfg.gateway.device_id)
        # One device key signs envelopes (the protect step loads it too), part manifests and the ledger; its
        # public card is what receivers and recipients pin.
        key = GatewayKey.load_or_create(cfg.ledger_key_path, cfg.gateway.device_id)
        key.card.save(cfg.state.gateway_card(key.device_id))
        ledger = LedgerWriter(key, cfg.ledger_topic) if cfg.ledger.enabled else None
        self._ledger = ledger
        self._next_checkpoint = time.monotonic() + cfg.ledger.checkpoint_interval_s
        end_to_end = EndToEnd(self.metrics)
        device = cfg.gateway.device_id
        self.cloud = MqttLink(
            "cloud",
            cloud_broker,
            f"medshield-{device}-cloud",
            persistent=False,
            will=Will(cfg.status_topic, b"offline"),
            online=Will(cfg.status_topic, b"online"),
            max_inflight=cfg.spool.publish_window,
        )
        self.publisher = Publisher(
            self.spool, self.cloud, window=cfg.spool.publish_window, metrics=self.metrics, end_to_end=end_to_end,
            tick=self._checkpoint_when_due,
        )
        self.intake = Intake(
            cfg,
            protect,
            spool=self.spool,
            quarantine=self.quarantine,
            ledger=ledger,
            ids=self.message_ids,
            splitter=splitter or functools.partial(split, signer=key),
            metrics=self.metrics,
            end_to_end=end_to_end,
            committed=self.publisher.wake,
        )
        self.mqtt_intake = MqttIntake(self.intake, inbound_broker, cfg, metrics=self.metrics, clock=clock)
        self.inbox_intake = InboxIntake(self.intake, self.spool)
        self.dicom_intake = None
        if cfg.dicom.port is not None:
            from gateway.dicom.listener import CStoreIntake

            self.dicom_intake = CStoreIntake(
                self.intake, cfg.dicom, workers=cfg.limits.workers, metrics=self.metrics, clock=clock,
                quarantine=self.quarantine,
            )
        self._telemetry = (
            TelemetryServer(self.metrics.registry, self.health, cfg.telemetry.host, cfg.telemetry.port)
            if cfg.telemetry.port is not None
            else None
        )
        m, spool, intake = self.metrics, self.spool, self.mqtt_intake
        m.spool_depth.bind(lambda: spool.depth)
        m.spool_bytes.bind(lambda: spool.size_bytes)
        m.queue_depth.bind(lambda: intake.depth)
        m.queue_bytes.bind(lambda: intake.buffered_bytes)
        self._started = False
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the embedded broker (if any), the publisher, the intake and telemetry; links connect in the
        background."""
        if self._broker is not None:
            self._broker.start()
            self._log.info("embedded_broker_started", port=self._broker.port)
        try:
            self.publisher.start()
            self.cloud.start()
            self.mqtt_intake.start()
            self.inbox_intake.start()
            if self.dicom_intake is not None:
                self.dicom_intake.start()
            if self._telemetry is not None:
                self._telemetry.start()
                self._log.info("telemetry_listening", port=self._telemetry.port)
        except BaseException:
            if self._broker is not None:  # a failed start leaves no mosquitto behind
                self._broker.stop()
            raise
        self._started = True

    def shutdown(self, flush_timeout_s: float | None = None) -> None:
        """Ordered stop: intake off, in-flight work finished, spool flushed (bounded), `offline`, disconnect."""
        if self._stopping:
            return
        self._stopping = True
        self._log.info("stopping")
        systemd.stopping()
        if self.dicom_intake is not None:
            self.dicom_intake.stop()  # new stores answered "out of resources", in-flight ones committed
        self.mqtt_intake.stop()  # acknowledgements already queued leave before DISCONNECT
        self.inbox_intake.stop()
        if self._ledger is not None:
            self.spool.queue_checkpoint(self._ledger)  # the final count, flushed with everything else
        timeout = self.config.spool.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        self.publisher.stop(timeout)
        self._publish_offline()
        self.cloud.stop()
        if self._telemetry is not None:
            self._telemetry.stop()
        left = self.spool.depth
        self.spool.close()
        if self._broker is not None:
            self._broker.stop()
        self._log.info("stopped", spool_rows_left=left)

    def _checkpoint_when_due(self) -> None:
        """Publisher thread: every `ledger.checkpoint_interval_s`, a signed checkpoint if entries were added."""
        if self._ledger is None or time.monotonic() < self._next_checkpoint:
            return
        self._next_checkpoint = time.monotonic() + self.config.ledger.checkpoint_interval_s
        self.spool.queue_checkpoint(self._ledger)

    def _publish_offline(self) -> None:
        if not self.cloud.connected:
            return
        sent = threading.Event()
        queued = self.cloud.publish(
            self.config.status_topic, b"offline", qos=1, retain=True, on_done=lambda _ok: sent.set())
        if not queued or not sent.wait(OFFLINE_STATUS_TIMEOUT_S):
            self._log.warning("offline_status_not_sent")

    def run(self, stop: threading.Event | None = None) -> int:
        """Main loop for `medshield run`: READY once started, watchdog pings, ordered stop when `stop` is set
        (by default on SIGTERM or SIGINT); returns the exit code."""
        stop = stop or stop_on_signals()
        self.start()
        with native_stderr_as_log():
            systemd.ready("protecting")
            self._log.info("ready", device_id=self.config.gateway.device_id)
            watchdog = systemd.watchdog_interval_s()
            reported_dead: list[str] = []
            while not stop.is_set():
                self._supervise_broker()
                dead = self.dead_parts()
                if not dead and watchdog is not None:
                    systemd.watchdog_ping()
                if dead != reported_dead:
                    reported_dead = dead
                    if dead:
                        self._log.error("parts_dead", parts=dead)
                stop.wait(min(watchdog, 1.0) if watchdog else 0.5)
            self.shutdown()
        return 0

    def _supervise_broker(self) -> None:
        """Restart the embedded broker if it died (with backoff); until it runs again it counts as a dead part."""
        broker = self._broker
        if broker is None or broker.running:
            return
        restarts = broker.restarts
        if broker.ensure_running():
            self._log.warning("embedded_broker_restarted", port=broker.port, restarts=broker.restarts)
        elif restarts == broker.restarts:
            self._log.error("embedded_broker_down", port=broker.port)

    # -- state -------------------------------------------------------------------------------------------
    @property
    def inbound(self) -> MqttLink:
        """The scanner-broker link of the MQTT intake."""
        return self.mqtt_intake.link

    @property
    def running(self) -> bool:
        return self._started and not self._stopping

    @property
    def telemetry_port(self) -> int | None:
        return self._telemetry.port if self._telemetry else None

    def wait_connected(self, timeout: float) -> bool:
        """True once both broker links are up (tests and the demo wait for it; READY does not)."""
        deadline = time.monotonic() + timeout
        return self.inbound.wait_connected(timeout) and self.cloud.wait_connected(
            max(0.0, deadline - time.monotonic())
        )

    def parts(self) -> dict[str, bool]:
        """Each part and whether it is alive (threads: running and looped within `MAX_STALL_S`)."""
        now = time.monotonic()
        parts = {
            t.name: t.is_alive() and now - self.mqtt_intake.heartbeats.get(t.name, now) < MAX_STALL_S
            for t in self.mqtt_intake.threads
        }
        parts["publisher"] = self.publisher.thread.is_alive() and now - self.publisher.heartbeat < MAX_STALL_S
        parts["inbox"] = self.inbox_intake.thread.is_alive() and now - self.inbox_intake.heartbeat < MAX_STALL_S
        if self.dicom_intake is not None:
            parts["dicom_listener"] = self.dicom_intake.alive
        parts["inbound_loop"] = self.inbound.loop_alive
        parts["cloud_loop"] = self.cloud.loop_alive
        if self._broker is not None:
            parts["embedded_broker"] = self._broker.running
        return parts

    def dead_parts(self) -> list[str]:
        return sorted(name for name, alive in self.parts().items() if not alive)

    def alive(self) -> bool:
        """Every part is alive (what the systemd watchdog vouches for)."""
        return self._started and not self.dead_parts()

    def health(self) -> tuple[bool, dict[str, object]]:
        """`/healthz`: ok while running with every part alive; broker links are reported, not required."""
        dead = self.dead_parts() if self._started else []
        detail: dict[str, object] = {
            "inbound_connected": self.inbound.connected,
            "cloud_connected": self.cloud.connected,
            "spool_rows": self.spool.depth,
            "intake_paused": self.spool.full(),
            "threads_alive": self._started and not dead,
            "dead_parts": dead,
        }
        return (self.running and not dead), detail
