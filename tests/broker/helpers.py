"""Helpers for the broker tests: a deterministic protection step and a cloud-side collector."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.errors import InputError

TAG = b"TEST-ENVELOPE\0"


@dataclass(frozen=True)
class Tagged:
    message_id: str
    envelope: bytes
    timings: Mapping[str, float]


class TaggingProtect:
    """A transparent stand-in for the cryptographic pipeline, so the daemon's delivery guarantees are tested
    on their own: the "envelope" names the message id and carries the payload, so the collector can check
    identity, order and completeness. Payloads starting with b"BAD:" raise `InputError`, b"CRASH" a fault."""

    def __init__(self, delay_s: float = 0.0, *, jitter_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.jitter_s = jitter_s  # an extra delay of up to this, fixed per payload: workers finish out of order

    def __call__(self, data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[Tagged]:
        self.calls += 1
        delay = self.delay_s + self.jitter_s * hashlib.sha256(data).digest()[0] / 255
        if delay:
            time.sleep(delay)
        if data.startswith(b"BAD:"):
            raise InputError(data[4:].decode() or "not_an_image", "test input rejected")
        if data.startswith(b"CRASH"):
            raise RuntimeError("simulated processing fault")
        header = json.dumps({"message_id": message_id, "topic": source["topic"]}).encode()
        return [Tagged(message_id, TAG + len(header).to_bytes(4, "big") + header + data, {"decode": 0.001})]


def untag(envelope: bytes) -> tuple[dict, bytes]:
    assert envelope.startswith(TAG), envelope[:20]
    n = int.from_bytes(envelope[len(TAG) : len(TAG) + 4], "big")
    start = len(TAG) + 4
    return json.loads(envelope[start : start + n]), envelope[start + n :]


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` every 50 ms until it holds or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@dataclass
class Collector:
    """Subscribes on the cloud broker (persistent session) and records every message per topic filter."""

    port: int
    topics: tuple[str, ...]
    client_id: str = "test-collector"
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "collector could not connect"

    def _on_connect(self, client, userdata, flags, rc, props):  # type: ignore[no-untyped-def]
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic_suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t.endswith(topic_suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        return wait_until(predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, items: list[tuple[str, bytes]], client_id: str = "test-scanner") -> None:
    """Publish at QoS 1 and wait for every PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
