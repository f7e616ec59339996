"""The DICOM C-STORE intake: scanners and PACS send images over DIMSE; they land in the same spool as MQTT.

    modality ──C-STORE──▶ association thread: Part 10 bytes ▸ Intake.accept (protect ▸ spool commit) ▸ status

It implements the intake contract of `gateway.daemon.intake`:

- The routing key is `dicom/scanners/<calling AE title>/images`, so a resend of the same instance by the same
  modality maps to the same (keyed) message id and is not protected twice.
- While the intake is not accepting (spool full) or the gateway is stopping, a C-STORE is answered 0xA700
  (Refused: Out of Resources): nothing is taken, and the modality retries later.
- `accept` runs on the association's own thread (pynetdicom gives each association one; its network reader
  is a separate thread), at most `limits.workers` at a time across all associations.
- 0x0000 (Success) is answered only after `accept` returned PROTECTED or DUPLICATE: the spool committed.
- An input that cannot be protected is quarantined with its reason by `accept` and answered 0xC000
  (Error: Cannot Understand), with an Error Comment; a resend of it (a duplicate still in quarantine) gets
  the same answer, not Success.
- If `accept` raises (a fault), the answer is 0x0110 (Processing Failure): nothing was committed, and the
  modality's retry is handled as a first try.

A C-STORE's data set is complete before its handler runs, so an association aborted mid-transfer leaves
nothing behind; one aborted while `accept` runs has its image committed and a resend is a duplicate.
Associations are refused unless the called AE title is ours, and, with allow-lists, unless the calling AE
title and the peer's address are listed. Optional TLS (with client certificates when a CA is configured).
C-ECHO (Verification) is answered 0x0000.
"""

from __future__ import annotations

import ipaddress
import re
import socketserver
import ssl
import threading
import time
from typing import Any

from gateway import topics
from gateway.codecs.dicom import ACCEPTED_SYNTAXES
from gateway.config import DicomListenerConfig
from gateway.daemon.intake import Inbound, Intake, Outcome
from gateway.daemon.metrics import GatewayMetrics
from gateway.errors import ConfigError
from gateway.logging import get_logger
from gateway.quarantine import Quarantine
from gateway.rng import Clock

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
_AE_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def routing_key(calling_ae_title: str) -> str:
    """The intake topic of images from one calling AE (characters outside [A-Za-z0-9._-] become `_`)."""
    return topics.dicom_images(_AE_SAFE.sub("_", calling_ae_title.strip()) or "_")


def tls_context(config: DicomListenerConfig) -> ssl.SSLContext | None:
    """The server-side TLS context (TLS 1.2+; client certificates required when a CA file is given)."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file is not None:
        context.load_verify_locations(str(tls.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class CStoreIntake:
    """The C-STORE listener; `start()` binds and serves in the background, `stop()` waits for in-flight work."""

    def __init__(
        self,
        intake: Intake,
        config: DicomListenerConfig,
        *,
        workers: int,
        metrics: GatewayMetrics,
        clock: Clock,
        quarantine: Quarantine | None = None,
    ) -> None:
        """`quarantine`: where a resend of an instance quarantined before is found, so it is refused again."""
        if config.port is None:
            raise ValueError("the C-STORE listener needs a port")
        self._intake = intake
        self._quarantine = quarantine
        self._config = config
        self._clock = clock
        self._slots = threading.BoundedSemaphore(workers)
        self._networks = [ipaddress.ip_network(h, strict=False) for h in config.allowed_hosts]
        self._stopping = threading.Event()
        self._inflight = 0
        self._idle = threading.Condition()
        self._log = get_logger("intake.dicom")
        self._stores = metrics.registry.counter(
            "medshield_dicom_stores_total", "C-STORE requests, by status", labels=("status",)
        )
        self._refused = metrics.registry.counter(
            "medshield_dicom_associations_refused_total", "Associations refused, by reason", labels=("reason",)
        )
        self._faults = metrics.faults
        self._server: Any = None
        self.thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.events import EventHandlerType
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import time
        from pynetdicom.transport import ThreadedAssociationServer

        cfg = self._config
        if cfg.port is None:
            raise ConfigError("dicom.port is null: the C-STORE intake is off")
        port = cfg.port
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.network_timeout = cfg.network_timeout_s
        ae.acse_timeout = cfg.network_timeout_s
        ae.dimse_timeout = cfg.network_timeout_s
        ae.require_called_aet = True
        if cfg.allowed_calling_ae_titles:
            ae.require_calling_aet = list(cfg.allowed_calling_ae_titles)
        syntaxes = sorted(ACCEPTED_SYNTAXES)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:  # always set in pynetdicom's list; the type allows None
                ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        networks, refused, log = self._networks, self._refused, self._log

        class _Server(ThreadedAssociationServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                if not networks:
                    return True
                try:
                    peer = ipaddress.ip_address(client_address[0])
                except (ValueError, IndexError, TypeError):
                    return False
                if any(peer in net for net in networks):
                    return True
                refused.inc(reason="host")
                log.warning("association_refused", reason="host_not_allowed")
                return False

            def shutdown(self) -> None:
                # pynetdicom's own shutdown expects a server made by `start_server`; this one is ours.
                socketserver.TCPServer.shutdown(self)
                self.server_close()

        handlers: list[EventHandlerType] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = ae.make_server(
            (cfg.host, port),
            ae_title=cfg.ae_title,
            evt_handlers=handlers,
            ssl_context=tls_context(cfg),
            server_class=_Server,
        )
        self.thread = threading.Thread(target=self._server.serve_forever, name="dicom-listener", daemon=True)
        self.thread.start()
        self._log.info("dicom_listening", port=self.port, ae_title=cfg.ae_title, tls=cfg.tls is not None)

    def stop(self) -> None:
        """Refuse new stores (0xA700), wait for the ones being committed, close the listener."""
        self._stopping.set()
        with self._idle:
            while self._inflight:
                self._idle.wait(0.5)
        if self._server is not None:
            self._server.shutdown()
            for assoc in list(self._server.active_associations):
                assoc.abort()
        if self.thread is not None:
            self.thread.join(timeout=10)

    @property
    def port(self) -> int:
        """The bound port (useful when the configuration asked for 0)."""
        return int(self._server.server_address[1]) if self._server is not None else 0

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # -- association threads -----------------------------------------------------------------------------
    def _on_echo(self, event: Any) -> int:
        self._stores.inc(status="echo")
        return SUCCESS

    def _on_rejected(self, event: Any) -> None:
        self._refused.inc(reason="association")
        self._log.warning("association_refused", reason="ae_title")

    def _status(self, status: int, label: str, comment: str | None = None) -> Any:
        self._stores.inc(status=label)
        if comment is None:
            return status
        from pydicom.dataset import Dataset

        answer = Dataset()
        answer.Status = status
        answer.ErrorComment = comment[:64]
        return answer

    def _on_store(self, event: Any) -> Any:
        if self._stopping.is_set() or not self._intake.accepting:
            return self._status(OUT_OF_RESOURCES, "out_of_resources")
        with self._idle:
            self._inflight += 1
        try:
            return self._store(event)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _store(self, event: Any) -> Any:
        received_ns, received_mono = self._clock(), time.monotonic()
        # The Part 10 file exactly as received: the negotiated syntax's data set bytes under a file meta
        # that names the SOP class, instance and transfer syntax. This is what restoring gives back.
        data = event.encoded_dataset()
        calling = str(event.assoc.requestor.ae_title)
        message = Inbound(routing_key(calling), data, received_ns, received_mono)
        with self._slots:
            try:
                outcome = self._intake.accept(message)
            except Exception as exc:  # noqa: BLE001 - answer failure; nothing was committed, the sender retries
                self._faults.inc(stage="dicom_intake")
                self._log.error("dicom_intake_failed", error=type(exc).__name__)
                return self._status(PROCESSING_FAILURE, "processing_failure")
        if outcome is Outcome.QUARANTINED or (outcome is Outcome.DUPLICATE and self._was_quarantined(message)):
            return self._status(CANNOT_UNDERSTAND, "quarantined", "cannot be protected; quarantined by the gateway")
        return self._status(SUCCESS, outcome.value)

    def _was_quarantined(self, message: Inbound) -> bool:
        if self._quarantine is None:
            return False
        try:
            self._quarantine.get(self._intake.message_id(message))
        except KeyError:
            return False
        return True
