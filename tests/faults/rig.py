"""The fault rig: two real mosquitto brokers, the gateway as a process, the real receiver opening every
envelope, and an independent subscriber that counts what reached the cloud (never the gateway's counters).

Accounting for one run (`Rig.account`):
- expected: the keyed message id of every good image sent, computed from the gateway's own secret;
- received: ids whose envelope the receiver stored and opened successfully (authenticated, decrypted, hidden
  payload and stamp checked);
- lost: expected ids never received; duplicated: ids for which the independent subscriber saw more than one
  distinct envelope, i.e. one image protected twice (re-sends of one committed row are byte-identical and the
  receiver de-duplicates them, so they are reported apart as `resent`);
- hostile inputs must each produce one quarantine event on the errors topic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.broker import EmbeddedBroker
from gateway.config import BrokerConfig
from gateway.crypto.envelope import peek_header
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import generate_recipient, save_recipient
from gateway.daemon.ids import MessageIds
from gateway.errors import OpenError
from gateway.receiver import Receiver, ReceiverService, key_verifier
from gateway.rng import system_random

REPO = Path(__file__).resolve().parents[2]
TOPIC = "medshield/scanners/{scanner}/images"


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def image(seed: int, side: int = 64) -> bytes:
    """A unique 16-bit NPY image (CT-like value range)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.save(buf, rng.integers(0, 4096, size=(side, side), dtype=np.uint16))
    return buf.getvalue()


def hostile_inputs(seed: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """One of each bad-input class, (class, payload)."""
    rng = random.Random(seed)
    good = image(10_000 + seed)
    header = b"{'descr': '<u2', 'fortran_order': False, 'shape': (100000, 100000), }".ljust(117) + b"\n"
    npy_huge = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    return [
        ("empty", b""),
        ("not_an_image", b"This is a text file, not a scan. " * 10 + bytes([rng.randrange(256)])),
        ("random_bytes", rng.randbytes(4096)),
        ("truncated", good[: len(good) // 3]),
        ("header_only", good[:128]),
        ("huge_declared_shape", npy_huge + b"\0" * 64),
        ("too_large", b"\x93NUMPY" + rng.randbytes(max_bytes + 1024)),
        ("png_bad_crc", b"\x89PNG\r\n\x1a\n" + rng.randbytes(256)),
        ("dicom_preamble_only", b"\0" * 128 + b"DICM" + rng.randbytes(64)),
    ]


@dataclass
class Result:
    """One fault kind, summed over its runs."""

    kind: str
    runs: int = 0
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    resent: int = 0
    crashes: int = 0
    hostile: int = 0
    quarantined: int = 0
    recovery_s: float = 0.0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.crashes == 0 and self.quarantined == self.hostile

    def add(self, other: Result) -> None:
        for name in ("runs", "sent", "received", "lost", "duplicated", "resent", "crashes", "hostile", "quarantined"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.recovery_s = max(self.recovery_s, other.recovery_s)
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.notes += [n for n in other.notes if n not in self.notes]


class CloudCounter:
    """The independent subscriber: every message on the envelope and error topics, by message id."""

    def __init__(self, port: int, client_id: str) -> None:
        self.envelopes: dict[str, set[str]] = {}
        self.copies = 0
        self.errors: list[dict] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: (
            c.subscribe("medshield/gateways/+/envelopes", qos=1),
            c.subscribe("medshield/gateways/+/errors", qos=1),
        )
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        payload = bytes(msg.payload)
        with self._lock:
            if msg.topic.endswith("/errors"):
                self.errors.append(json.loads(payload))
                return
            self.raw.append(payload)
            self.copies += 1
            try:
                mid = str(peek_header(payload)["message_id"])
            except OpenError:
                mid = "?unreadable"
            self.envelopes.setdefault(mid, set()).add(hashlib.sha256(payload).hexdigest())

    def snapshot(self) -> tuple[dict[str, set[str]], int, list[dict]]:
        with self._lock:
            return {k: set(v) for k, v in self.envelopes.items()}, self.copies, list(self.errors)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Scanner:
    """A modality publishing at QoS 1 with a persistent session (it keeps unacknowledged images through a
    scanner-broker outage and re-sends them)."""

    def __init__(self, port: int, client_id: str = "fault-scanner") -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self._acked: set[int] = set()
        self._mids: list[int] = []
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self._acked.add(mid)

    def send(self, topic: str, payload: bytes) -> None:
        mid = self.client.publish(topic, payload, qos=1).mid  # not under the lock: on_publish takes it
        with self._lock:
            self._mids.append(mid)

    def all_acknowledged(self) -> bool:
        with self._lock:
            return set(self._mids) <= self._acked

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DelayProxy:
    """A TCP proxy that holds every chunk for `delay_s` in each direction: a slow cloud link."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.delay_s = delay_s
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.server.close()


class GatewayProcess:
    """`python -m tests.faults.gateway_proc CONFIG`, with its log, kills and restarts."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.unexpected_exits = 0
        self.peak_rss_kb = 0

    def start(self, **env: str) -> None:
        if self.alive:  # never leave a process behind (a kill hook that did not fire)
            self.kill()
        full = dict(os.environ, PYTHONPATH=str(REPO), **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.gateway_proc", str(self.config)],
            cwd=REPO, env=full, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample_rss(self) -> None:
        if self.alive and self.proc is not None:
            try:
                for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
            except OSError:
                pass

    def kill(self) -> None:
        if self.proc is None:
            return
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def wait_killed(self, timeout: float) -> bool:
        """Wait for a self-inflicted SIGKILL (a kill-at-step hook)."""
        if self.proc is None:
            return True
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if code != -signal.SIGKILL:
            self.unexpected_exits += 1
        self.proc = None
        return True

    def terminate(self, timeout: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code, seconds it took)."""
        if self.proc is None:
            return 0, 0.0
        self.sample_rss()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        took = time.monotonic() - t0
        if code != 0:
            self.unexpected_exits += 1
        self.proc = None
        return code, took

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits += 1
            self.proc = None

    def subscribed(self) -> bool:
        lines = self.log_lines()
        return any('"mqtt.inbound"' in line and '"connected"' in line for line in lines) and self.alive

    def connected_since(self, mark: int) -> bool:
        """The intake (re)connected after log line `mark`."""
        return any('"mqtt.inbound"' in line and '"connected"' in line for line in self.log_lines()[mark:])

    def wait_running(self, timeout: float = 60.0) -> bool:
        """After a restart: wait until this process connected its intake."""
        mark = len(self.log_lines())
        return wait_until(lambda: self.connected_since(mark), timeout, 0.1)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []


class Rig:
    """Everything one run needs, under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        name: str = "gw",
        scanner_persistent: bool = True,
        cloud_delay_s: float = 0.0,
        state_dir: Path | None = None,
        gateways: int = 1,
        sections: dict[str, dict[str, object]] | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.scanner_broker = EmbeddedBroker(
            persistence_dir=(root / "mosq-scanner") if scanner_persistent else None, max_inflight=100
        ).start()
        self.cloud_broker = EmbeddedBroker(persistence_dir=root / "mosq-cloud", max_inflight=100).start()
        self.proxy = DelayProxy(self.cloud_broker.port, cloud_delay_s) if cloud_delay_s else None
        private, _card = generate_recipient("fault-recipient", system_random)
        _, self.card_path = save_recipient(root / "keys", private)
        self._state_dirs = [
            state_dir if (state_dir is not None and i == 0) else root / f"state-{i}" for i in range(gateways)
        ]
        # The receiver pins each gateway's card (its device key, made here as the daemon would on first start).
        pinned = TrustedGateways(
            GatewayKey.load_or_create(d / "ledger.key", f"{name}-{i}").card for i, d in enumerate(self._state_dirs)
        )
        self.receiver = Receiver(root / "received", pinned, key_verifier(private, pinned))
        self.service = ReceiverService(
            self.receiver, BrokerConfig(port=self.cloud_broker.port), client_id=f"fault-receiver-{name}"
        ).start()
        self.counter = CloudCounter(self.cloud_broker.port, f"fault-counter-{name}")
        self.scanner = Scanner(self.scanner_broker.port, f"fault-scanner-{name}")
        self.gateways = [
            GatewayProcess(self._config(i, name, sections or {}, gateways > 1), root / f"gateway-{i}.log")
            for i in range(gateways)
        ]
        assert wait_until(lambda: self.service.link.connected and self.counter.client.is_connected(), 15)
        self.sent: list[tuple[str, bytes]] = []
        # sha256 of envelopes an attacker made (not the gateway): the independent counter sees them, but a
        # forgery is no gateway duplicate.
        self.forged: set[str] = set()
        self.hostile_sent: list[tuple[str, str, bytes]] = []

    @property
    def gateway(self) -> GatewayProcess:
        return self.gateways[0]

    def state_dir(self, i: int = 0) -> Path:
        return self._state_dirs[i]

    def _config(self, i: int, name: str, sections: dict[str, dict[str, object]], shared: bool) -> Path:
        state = self._state_dirs[i]
        cloud_port = self.proxy.port if self.proxy else self.cloud_broker.port
        data: dict[str, dict[str, object]] = {
            "gateway": {"device_id": f"{name}-{i}", "state_dir": str(state)},
            "inbound": {
                "port": self.scanner_broker.port,
                "reconnect_min_s": 1,
                "reconnect_max_s": 1,
                "keepalive_s": 10,
            },
            "cloud": {"port": cloud_port, "reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive_s": 10},
            "telemetry": {"port": 0},
            "spool": {"flush_timeout_s": 5},
            "limits": {"max_bytes": 1024 * 1024},
            "protection": {"recipients": [str(self.card_path)]},
        }
        if shared:
            data["topics"] = {"shared_group": f"{name}-pool"}
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        lines = []
        for section, values in data.items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {json.dumps(value)}")
        path = self.root / f"gateway-{i}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- traffic ----------------------------------------------------------------------------------------
    def send_images(self, seeds: Iterable[int], scanner: str = "ct1", pace_s: float = 0.0) -> None:
        for seed in seeds:
            topic = TOPIC.format(scanner=scanner)
            payload = image(seed)
            self.sent.append((topic, payload))
            self.scanner.send(topic, payload)
            if pace_s:
                time.sleep(pace_s)

    def send_hostile(self, seed: int, max_bytes: int = 1024 * 1024) -> None:
        topic = TOPIC.format(scanner=f"bad{seed}")  # one topic per round: every bad input has its own id
        for kind, payload in hostile_inputs(seed, max_bytes):
            self.hostile_sent.append((kind, topic, payload))
            self.scanner.send(topic, payload)

    def start_all(self, wait: bool = True, **env: str) -> None:
        """Start every gateway; with `wait`, until each has subscribed once (its session exists from then on,
        so the broker keeps what is published while the gateway is down)."""
        for gw in self.gateways:
            gw.start(**env)
        if wait:
            for gw in self.gateways:
                assert wait_until(gw.subscribed, 60, step=0.1), gw.log_lines()[-20:]

    # -- accounting -------------------------------------------------------------------------------------
    def _ids(self) -> list[MessageIds]:
        keys = [d / "message-id.key" for d in self._state_dirs]
        assert wait_until(lambda: all(k.exists() for k in keys), 30), keys
        return [MessageIds.load_or_create(k) for k in keys]

    def _state(self) -> tuple[list[set[str]], set[str], dict[str, set[str]], list[dict]]:
        ids = self._ids()
        candidates = [{m.for_message(t, p) for m in ids} for t, p in self.sent]
        ok = {v.message_id for v in list(self.receiver.verifications) if v.ok}
        envelopes, _copies, errors = self.counter.snapshot()
        return candidates, ok, envelopes, errors

    def delivered(self) -> bool:
        candidates, ok, _, errors = self._state()
        return all(c & ok for c in candidates) and len(errors) >= len(self.hostile_sent)

    def wait_delivered(self, timeout: float) -> float:
        """Seconds until everything sent was received (or `timeout`)."""
        t0 = time.monotonic()
        wait_until(self.delivered, timeout, step=0.2)
        return time.monotonic() - t0

    def account(self, kind: str, recovery_s: float = 0.0) -> Result:
        for gw in self.gateways:
            gw.check_alive()
        candidates, ok, envelopes, errors = self._state()
        _, copies, _ = self.counter.snapshot()
        lost = sum(1 for c in candidates if not c & ok)
        envelopes = {i: v - self.forged for i, v in envelopes.items()}
        duplicated = sum(1 for c in candidates if sum(len(envelopes.get(i, ())) for i in c) > 1 or len(c & ok) > 1)
        distinct = sum(len(v) for v in envelopes.values())
        hostile_ids = [{m.for_message(t, p) for m in self._ids()} for _, t, p in self.hostile_sent]
        quarantined_ids = {e["message_id"] for e in errors if e.get("type") == "quarantined"}
        quarantined = sum(1 for c in hostile_ids if c & quarantined_ids)
        for gw in self.gateways:
            gw.sample_rss()
        return Result(
            kind=kind,
            runs=1,
            sent=len(self.sent),
            received=sum(1 for c in candidates if c & ok),
            lost=lost,
            duplicated=duplicated,
            resent=copies - distinct,
            crashes=sum(gw.unexpected_exits for gw in self.gateways),
            hostile=len(self.hostile_sent),
            quarantined=quarantined,
            recovery_s=round(recovery_s, 2),
            peak_rss_mb=round(max(gw.peak_rss_kb for gw in self.gateways) / 1024, 1),
        )

    def close(self) -> None:
        for gw in self.gateways:
            if gw.alive:
                gw.terminate(30)
        self.scanner.close()
        self.counter.close()
        self.service.stop()
        if self.proxy:
            self.proxy.close()
        self.scanner_broker.close()
        self.cloud_broker.close()
