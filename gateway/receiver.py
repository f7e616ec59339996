"""The cloud side: collect envelopes from the cloud broker, reassemble parts, de-duplicate, store, verify.

Envelopes are stored as `<out>/<message_id>.msh`, written to a temporary file, fsynced and renamed, so a
crash never leaves a half file under the final name, and a redelivered envelope (at-least-once delivery)
is recognised by its message id and stored once. With a raw-key service recipient, every stored envelope
is also opened and its hidden payload checked against the header.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import BrokerConfig
from gateway.errors import InputError, OpenError
from gateway.files import write_atomic
from gateway.logging import get_logger
from gateway.mqtt import InboundMessage, MqttLink

DEFAULT_TOPIC = "medshield/gateways/+/envelopes"
LEDGER_TOPIC = "medshield/gateways/+/ledger"


@dataclass
class ReceiverStats:
    received: int = 0
    parts: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    verified: int = 0
    verify_failed: int = 0
    open_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "open_seconds"}
        data["open_mean_ms"] = (
            round(1000 * sum(self.open_seconds) / len(self.open_seconds), 2) if self.open_seconds else None
        )
        return data


@dataclass(frozen=True)
class Verification:
    """What checking one opened envelope found (no pixel or patient data)."""

    message_id: str
    ok: bool
    format: str
    hidden_message_id_matches: bool
    stamp_ok: bool | None


Verifier = Callable[[bytes, dict[str, Any]], Verification]


def key_verifier(private_key: Any) -> Verifier:
    """Open with a raw-key recipient: `pipeline.open_` authenticates, decrypts, extracts the hidden payload
    and checks its keyed timestamp stamp against the restored original (any failure is `OpenError`); this
    also checks the hidden message id against the header."""
    from gateway import pipeline

    def verify(envelope: bytes, header: dict[str, Any]) -> Verification:
        opened = pipeline.open_(envelope, private_key)
        same = str(opened.hidden.message_id) == str(header["message_id"])
        content = header.get("content", {})
        return Verification(str(header["message_id"]), same, str(content.get("format", "?")), same, True)

    return verify



class Receiver:
    """Pure-ish core: feed it payloads from the cloud topic; it stores each whole envelope once."""

    def __init__(
        self,
        out_dir: Path,
        verifier: Verifier | None = None,
        on_stored: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """`on_stored(message_id, envelope)` runs after each new envelope is on disk (PACS delivery)."""
        from gateway.crypto.parts import Reassembler, is_part

        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._reassembler = Reassembler()
        self._is_part = is_part
        self._verifier = verifier
        self._on_stored = on_stored
        self.stats = ReceiverStats()
        self.verifications: list[Verification] = []
        self._log = get_logger("receiver")
        self._seen = {p.stem for p in out_dir.glob("*.msh")}
        self._ledger_seen: dict[str, set[int]] = {}
        for path in (out_dir / "ledger").glob("*.jsonl"):
            lines = path.read_text().splitlines()
            self._ledger_seen[path.stem] = {json.loads(line)["seq"] for line in lines if line.strip()}

    def handle(self, payload: bytes) -> str | None:
        """Process one cloud message; returns the message id when a new envelope was stored."""
        from gateway.crypto.envelope import peek_header

        self.stats.received += 1
        try:
            if self._is_part(payload):
                self.stats.parts += 1
                envelope = self._reassembler.feed(payload)
                if envelope is None:
                    return None
            else:
                envelope = payload
            header = peek_header(envelope)
        except OpenError:
            self.stats.rejected += 1
            self._log.warning("rejected_message", size=len(payload))
            return None
        message_id = str(header["message_id"])
        if message_id in self._seen:
            self.stats.duplicates += 1
            return None
        write_atomic(self.out_dir / f"{message_id}.msh", envelope, mode=0o644, sync_dir=True)
        self._seen.add(message_id)
        self.stats.stored += 1
        if self._verifier is not None:
            self._verify(envelope, header)
        if self._on_stored is not None:
            try:
                self._on_stored(message_id, envelope)
            except Exception as exc:  # noqa: BLE001 - the envelope is stored; the hook catches up at next start
                self._log.error("on_stored_failed", message_id=message_id, error=type(exc).__name__)
        return message_id

    def ledger_count(self, device: str) -> int:
        """Ledger entries stored for `device`."""
        return len(self._ledger_seen.get(device, ()))

    def handle_ledger(self, topic: str, payload: bytes) -> bool:
        """Append a gateway's ledger entry to `<out>/ledger/<device>.jsonl` once (by sequence number)."""
        from gateway.ledger import LedgerEntry

        try:
            entry = LedgerEntry.from_json(payload)
        except (ValueError, TypeError):
            self.stats.rejected += 1
            return False
        device = topic.split("/")[-2] if topic.count("/") >= 2 else "unknown"
        if not device.replace("-", "").replace("_", "").replace(".", "").isalnum():
            self.stats.rejected += 1
            return False
        seen = self._ledger_seen.setdefault(device, set())
        if entry.seq in seen:
            return False
        directory = self.out_dir / "ledger"
        directory.mkdir(exist_ok=True)
        with open(directory / f"{device}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(entry.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        seen.add(entry.seq)
        return True

    def _verify(self, envelope: bytes, header: dict[str, Any]) -> None:
        message_id = str(header["message_id"])
        t0 = time.perf_counter()
        try:
            result = self._verifier(envelope, header)  # type: ignore[misc]
        except (OpenError, InputError):
            result = Verification(message_id, False, "?", False, None)
        self.stats.open_seconds.append(time.perf_counter() - t0)
        self.verifications.append(result)
        if result.ok:
            self.stats.verified += 1
        else:
            self.stats.verify_failed += 1
            self._log.error("verification_failed", message_id=message_id)
        write_atomic(
            self.out_dir / f"{message_id}.verified.json", json.dumps(result.__dict__, sort_keys=True).encode(),
            mode=0o644, sync_dir=True,
        )


class ReceiverService:
    """A `Receiver` behind an MQTT subscription (persistent session, ack after the envelope is on disk)."""

    def __init__(
        self,
        receiver: Receiver,
        broker: BrokerConfig,
        *,
        topic: str = DEFAULT_TOPIC,
        ledger_topic: str | None = LEDGER_TOPIC,
        client_id: str = "medshield-receiver",
    ) -> None:
        self.receiver = receiver
        self._queue: queue.Queue[InboundMessage] = queue.Queue(maxsize=256)
        self._stop = threading.Event()
        self.link = MqttLink(
            "receiver",
            broker,
            client_id,
            persistent=True,
            subscriptions=[topic] + ([ledger_topic] if ledger_topic else []),
            on_message=self._on_message,
            manual_ack=True,
            receive_maximum=256,
        )
        self._thread = threading.Thread(target=self._loop, name="receiver", daemon=True)
        self._lock = threading.Lock()

    def _on_message(self, message: InboundMessage) -> None:
        self._queue.put(message)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                if message.topic.endswith("/ledger"):
                    self.receiver.handle_ledger(message.topic, message.payload)
                else:
                    self.receiver.handle(message.payload)
            self.link.ack(message)

    def start(self) -> ReceiverService:
        self._thread.start()
        self.link.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.link.stop()
