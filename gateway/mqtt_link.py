"""MQTT connections (paho-mqtt 2.x, callback API v2): TLS, auth, MQTT 5 / 3.1.1, persistent sessions.

`MqttLink` owns one paho client running its network loop in a background thread. Its callbacks do no work:
they update connection state, (re)subscribe on every connect (so a reconnect resubscribes), publish the
retained `online` status, settle publishes, and hand messages to the consumer's callback, which must only
enqueue and never block (it runs on the thread that also reads PUBACKs, SUBACKs and pings).

Paho's types and error codes stay inside this module: callers see `InboundMessage`, `publish(...,
on_done=)` and booleans. PUBACK tracking lives here too: each QoS 1 publish made through `publish` is
settled exactly once, by the PUBACK for its own packet id (a PUBACK that settles nothing is ignored, so a
packet id reused after 65,535 publishes can never be settled by a stale acknowledgement).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import BrokerConfig, TLSConfig
from gateway.errors import ConfigError
from gateway.logging import get_logger, library_logger


@dataclass(frozen=True)
class InboundMessage:
    """One message as the broker delivered it; `mid` and `generation` identify it for `MqttLink.ack`."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


MessageHandler = Callable[[InboundMessage], None]
"""Called from paho's thread with each message. Must only enqueue, never block."""

Completion = Callable[[bool], None]
"""Called once from paho's thread when the broker settled a publish: True for a successful PUBACK."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass
class LinkState:
    connected: threading.Event = field(default_factory=threading.Event)
    generation: int = 0
    last_connect_rc: str = "never"


def broker_from_url(url: str, **overrides: Any) -> BrokerConfig:
    """`mqtt://[user@]host[:port]` or `mqtts://...` (TLS with the system CAs) as a `BrokerConfig`."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise ConfigError(f"broker URL {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = TLSConfig() if parsed.scheme == "mqtts" else None
    port = parsed.port or (8883 if tls else 1883)
    username = unquote(parsed.username) if parsed.username else None
    if parsed.password:
        raise ConfigError("broker URL: put the password in a file (--password-file), not in the URL")
    return BrokerConfig(host=parsed.hostname, port=port, username=username, tls=tls, **overrides)


def _tls_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MqttLink:
    """One broker connection with reconnect/backoff and subscriptions restored on every connect."""

    def __init__(
        self,
        name: str,
        config: BrokerConfig,
        client_id: str,
        *,
        persistent: bool,
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        will: Will | None = None,
        online: Will | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_inflight: int | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.persistent = persistent
        self.subscriptions = tuple(subscriptions)
        self.state = LinkState()
        self._pending_subacks: set[int] = set()
        # Packet id -> completion of each unsettled QoS 1 publish; `_early` holds the verdict of a PUBACK
        # that overtook the registration of its own publish (paho may read it before `publish` returns).
        self._unsettled: dict[int, Completion | None] = {}
        self._early: dict[int, bool] = {}
        self._settle_lock = threading.Lock()
        self._online = online
        self._on_message_handler = on_message
        self._log = get_logger(f"mqtt.{name}")
        self._mqtt5 = config.protocol == "mqtt5"
        self._receive_maximum = receive_maximum
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": config.client_id or client_id,
            "protocol": paho.MQTTv5 if self._mqtt5 else paho.MQTTv311,
            "manual_ack": manual_ack,
        }
        if not self._mqtt5:
            kwargs["clean_session"] = not persistent
        self._client = paho.Client(**kwargs)
        # paho's own records name the link and broker they concern.
        self._client.enable_logger(library_logger("paho", link=name, host=config.host, port=config.port))  # type: ignore[arg-type]
        if max_inflight is not None:
            self._client.max_inflight_messages_set(max_inflight)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password is not None else None
            self._client.username_pw_set(config.username, password)
        if config.tls is not None:
            self._client.tls_set_context(_tls_context(config.tls))
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.reconnect_delay_set(
            min_delay=max(1, int(config.reconnect_min_s)), max_delay=max(1, int(config.reconnect_max_s))
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (the loop thread retries with backoff until the broker answers)."""
        properties = None
        if self._mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # unannotated in paho
            properties.SessionExpiryInterval = self.config.session_expiry_s if self.persistent else 0
            if self._receive_maximum is not None:
                properties.ReceiveMaximum = self._receive_maximum
        # connect_async only records the target (it returns nothing; bad arguments raise ValueError).
        try:
            self._client.connect_async(
                self.config.host,
                self.config.port,
                keepalive=self.config.keepalive_s,
                clean_start=(not self.persistent) if self._mqtt5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        except ValueError as exc:
            raise ConfigError(f"{self.name}: cannot start MQTT client ({exc})") from None
        rc = self._client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConfigError(f"{self.name}: cannot start MQTT loop ({paho.error_string(rc)})")

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and every subscription is granted (so nothing published after is missed)."""
        return self.state.connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self.state.connected.is_set()

    @property
    def generation(self) -> int:
        """Counts successful connects; packet ids of inbound messages are only valid within one."""
        return self.state.generation

    @property
    def loop_alive(self) -> bool:
        """The network loop thread is running (it reconnects by itself; a dead loop never will)."""
        thread = getattr(self._client, "_thread", None)
        return thread is not None and thread.is_alive()

    @property
    def unsettled(self) -> int:
        """QoS 1 publishes still waiting for their PUBACK."""
        with self._settle_lock:
            return len(self._unsettled)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the loop thread. Queued PUBACKs go out first."""
        rc = self._client.disconnect()
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("disconnect_failed", rc=paho.error_string(rc))
        self._client.loop_stop()
        self.state.connected.clear()

    # -- operations --------------------------------------------------------------------------------------
    def ack(self, message: InboundMessage) -> bool:
        """Acknowledge an inbound message, only on the connection that delivered it (mids are per connection:
        on a later connection the same mid names another message, which the broker will redeliver anyway)."""
        if message.qos == 0 or message.generation != self.state.generation:
            return False
        rc = self._client.ack(message.mid, message.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._log.warning("ack_failed", rc=paho.error_string(rc), mid=message.mid)
            return False
        return True

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, on_done: Completion | None = None
    ) -> bool:
        """Queue a publish; False when the client refused it (nothing will be sent, `on_done` is not called).

        While disconnected paho keeps QoS 1 messages and sends them after reconnecting. `on_done` is called
        once, from paho's thread, when the broker settles the message: True for a successful PUBACK, False
        for a PUBACK with an MQTT 5 failure reason. QoS 0 messages are never settled.
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("publish_not_queued", rc=paho.error_string(info.rc), topic=topic)
            return False
        if qos == 0:
            return True
        with self._settle_lock:
            verdict = self._early.pop(info.mid, None)
            if verdict is None:
                self._unsettled[info.mid] = on_done
                return True
        if on_done is not None:
            on_done(verdict)
        return True

    def resync(self) -> None:
        """Drop the connection so the broker redelivers every message this side has not acknowledged (the
        loop reconnects by itself and resumes the persistent session)."""
        sock = self._client.socket()
        if not isinstance(sock, socket.socket):  # None before connecting; ssl.SSLSocket is a socket.socket
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return

    # -- paho callbacks (run in paho's thread: no blocking work, no raising) -----------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.state.last_connect_rc = str(reason_code)
        if reason_code.is_failure:
            self._log.warning("connect_refused", reason=str(reason_code))
            return
        self.state.generation += 1
        pending = set()
        for topic in self.subscriptions:
            rc, mid = client.subscribe(topic, qos=1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._log.error("subscribe_failed", topic=topic, rc=paho.error_string(rc))
            elif mid is not None:
                pending.add(mid)
        self._pending_subacks = pending
        if self._online is not None:
            self.publish(self._online.topic, self._online.payload, qos=self._online.qos, retain=self._online.retain)
        if not pending:
            self.state.connected.set()  # with subscriptions: set when the broker granted them all
        self._log.info(
            "connected",
            host=self.config.host,
            port=self.config.port,
            session_present=bool(getattr(flags, "session_present", False)),
        )

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was = self.state.connected.is_set()
        self.state.connected.clear()
        if was:
            self._log.warning("disconnected", reason=str(reason_code))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        failed = False
        for code in reason_codes:
            if code.is_failure:
                failed = True
                self._log.error("subscription_refused", reason=str(code))
        self._pending_subacks.discard(mid)
        if not self._pending_subacks and not failed:
            self.state.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_message_handler is not None:
            self._on_message_handler(
                InboundMessage(message.topic, bytes(message.payload), message.mid, message.qos, self.state.generation)
            )

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        ok = not bool(getattr(reason_code, "is_failure", False))
        with self._settle_lock:
            if mid not in self._unsettled:
                self._early[mid] = ok
                return
            done = self._unsettled.pop(mid)
        if not ok:
            self._log.warning("publish_refused", reason=str(reason_code), mid=mid)
        if done is not None:
            done(ok)
