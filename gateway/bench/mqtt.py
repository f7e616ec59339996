"""MQTT plumbing for the benchmark: a real mosquitto on a free loopback port and a timed publish→receive hop.

The broker is the system's mosquitto (the same binary the daemon's embedded broker runs), bound to 127.0.0.1
only, anonymous, in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
RECEIVE_TIMEOUT_S = 60.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
        if Path(candidate).is_file():
            return candidate
    return None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """mosquitto on 127.0.0.1:<free port> for the lifetime of a `with` block."""

    def __init__(self, binary: str | None = None, start_timeout_s: float = 10.0) -> None:
        found = binary or find_mosquitto()
        if not found:
            raise RuntimeError("mosquitto not found: install it (apt-get install mosquitto) or run `make mosquitto`")
        self.binary = found
        self.host = "127.0.0.1"
        self.port = 0
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="medshield-bench-broker-")
        self.port = free_loopback_port()
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 10000\n"
            "log_dest none\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self.__exit__(None, None, None)
                raise RuntimeError(f"mosquitto exited at start: {err.strip()[:500]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {self._timeout} s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def _client(name: str) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
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
