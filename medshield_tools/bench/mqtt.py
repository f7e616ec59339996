"""MQTT plumbing for the benchmark: a timed publish→receive hop through a real broker.

The broker is the daemon's own embedded mosquitto (`gateway.broker.EmbeddedBroker`: 127.0.0.1 on a free port),
so the benchmark measures the broker configuration the quickstart runs.
"""

from __future__ import annotations

import queue
import time
import uuid
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

RECEIVE_TIMEOUT_S = 60.0


def _client(name: str) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"medshield-bench-{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(20)
    return client


class Hop:
    """A publisher and a subscriber on one broker; `send` times one QoS-1 message from publish to delivery.

    The time is taken from just before `publish` to the subscriber's `on_message` callback, i.e. it includes
    serialising, the broker's routing and both TCP transfers over loopback: what one MQTT hop costs.
    """

    def __init__(self, host: str, port: int, prefix: str = "medshield/bench") -> None:
        self.prefix = f"{prefix}/{uuid.uuid4().hex[:8]}"
        self._inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self._sub = _client("sub")
        self._sub.on_message = self._on_message
        subscribed: queue.Queue[bool] = queue.Queue()
        self._sub.on_subscribe = lambda *args: subscribed.put(True)
        self._sub.connect(host, port)
        self._sub.loop_start()
        self._sub.subscribe(f"{self.prefix}/#", qos=1)
        try:
            subscribed.get(timeout=10)
        except queue.Empty:
            self.close()
            raise RuntimeError("MQTT subscription was not acknowledged") from None
        self._pub = _client("pub")
        self._pub.connect(host, port)
        self._pub.loop_start()
        self._seq = 0

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = time.perf_counter()  # before any copy, so the hop's time is the broker's and the sockets'
        self._inbox.put((message.topic, bytes(message.payload), received))

    def send(self, payload: bytes, channel: str = "data") -> tuple[bytes, float, float]:
        """Publish `payload` and wait for its delivery.

        Returns (delivered payload, seconds from publish to delivery, `perf_counter` time of delivery).
        """
        self._seq += 1
        topic = f"{self.prefix}/{channel}/{self._seq}"
        start = time.perf_counter()
        info = self._pub.publish(topic, payload, qos=1)
        deadline = start + RECEIVE_TIMEOUT_S
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"MQTT message not delivered within {RECEIVE_TIMEOUT_S} s")
            got_topic, got_payload, received = self._inbox.get(timeout=remaining)
            if got_topic == topic:
                break
        info.wait_for_publish(timeout=RECEIVE_TIMEOUT_S)
        return got_payload, received - start, received

    def close(self) -> None:
        for client in (getattr(self, "_pub", None), self._sub):
            if client is not None:
                client.disconnect()
                client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
