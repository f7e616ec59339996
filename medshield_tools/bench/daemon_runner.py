"""One measured variant of `medshield bench daemon`, in its own process: the real daemon of a source tree (or
the encrypt-and-forward alternative) between two mosquittos that the driver started.

    PYTHON daemon_runner.py --repo TREE --mode gateway|alternative --scanner-port P --cloud-port Q --state DIR

It is run by path with the interpreter of the tree it measures (the commit compared against has its own
virtual environment), so it imports nothing of this package: only what every measured tree has (`parse_config`,
`Gateway`, `pipeline_protect_fn`, recipient files). Commands arrive as JSON lines on stdin, answers leave as JSON
lines on stdout prefixed with `RESULT `:

- `{"op": "latency", "files": [...], "warmup": k}`: one image in flight at a time, scanner publish to the
  whole envelope on the cloud topic; the first `k` are run and dropped.
- `{"op": "burst", "files": [...]}`: every image published back to back; images/s until the last envelope
  arrived, and this process's resident memory sampled every 10 ms meanwhile.
- `{"op": "quit"}`.

Each answer carries the stage timings (`Protected.timings`) of exactly the images of that phase, and this
process's CPU seconds over the phase, so nothing is pooled across phases.
"""

from __future__ import annotations

import abc
import argparse
import json
import os
import resource
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SCANNER_TOPIC = "medshield/scanners/bench-ct/images"
ENVELOPE_TOPIC = "medshield/gateways/+/envelopes"
ALT_TOPIC = "medshield/gateways/alternative/envelopes"
PART_MAGICS = (b"MSP2", b"MSHP")  # envelope format 2 parts, and those of the commit compared against
TIMEOUT_S = 120.0


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Arrivals:
    """Whole envelopes on the cloud topic: a plain envelope counts at once, a set of parts once all arrived.
    Keeps the last whole envelope (format 2 parts reassembled) so the driver can check that it opens."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last: bytes | None = None
        self._parts: dict[bytes, dict[int, bytes]] = {}
        self._cond = threading.Condition()

    def feed(self, payload: bytes) -> None:
        now = time.perf_counter()
        whole: bytes | None = payload
        if payload[:4] in PART_MAGICS and len(payload) >= 28:
            mid = payload[4:20]
            index, count = int.from_bytes(payload[20:24], "big"), int.from_bytes(payload[24:28], "big")
            got = self._parts.setdefault(mid, {})
            got[index] = payload
            whole = None
            if len(got) == count:
                del self._parts[mid]
                whole = _join(payload[:4], [got[i] for i in range(count)])
        if whole is not None:
            with self._cond:
                self.times.append(now)
                self.last = whole
                self._cond.notify_all()

    def wait(self, n: int, timeout: float = TIMEOUT_S) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.times) >= n, timeout):
                raise TimeoutError(f"{n - len(self.times)} envelopes did not arrive within {timeout} s")


def _join(magic: bytes, parts: list[bytes]) -> bytes:
    """The envelope of a complete set of format 2 parts (docs/ENVELOPE.md §8); other formats: b""."""
    if magic != b"MSP2":
        return b""
    first = parts[0][28:]
    manifest_len = int.from_bytes(first[:4], "big")
    return first[4 + manifest_len + 64 :] + b"".join(p[28:] for p in parts[1:])


def _client(name: str, port: int, on_message: Any = None, topic: str | None = None) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-{name}-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    subscribed = threading.Event()
    if on_message is not None:
        client.on_message = lambda c, u, m: on_message(bytes(m.payload))
        client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if topic is not None:
        client.subscribe(topic, qos=1)
        if not subscribed.wait(20):
            raise RuntimeError("subscription not acknowledged")
    return client


class Variant(abc.ABC):
    """The thing measured: something that takes scanner messages and puts envelopes on the cloud broker."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timings: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self.workers = 1

    @abc.abstractmethod
    def start(self) -> None:
        """Connect to both brokers and be ready to take scanner messages."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Finish and disconnect."""

    def record(self, timings: dict[str, float]) -> None:
        with self._lock:
            self.timings.append(timings)

    def take_timings(self) -> list[dict[str, float]]:
        with self._lock:
            out, self.timings = self.timings, []
        return out


class DaemonVariant(Variant):
    """The tree's own daemon (`Gateway` with `pipeline_protect_fn`), exactly what `medshield run` runs."""

    def start(self) -> None:
        from gateway.config import parse_config
        from gateway.crypto.recipients import generate_recipient, save_recipient
        from gateway.daemon import Gateway, pipeline_protect_fn
        from gateway.rng import system_random

        root = Path(self.args.state)
        key, _ = generate_recipient("bench-service", system_random)
        _, card_path = save_recipient(root, key)
        limits: dict[str, Any] = {} if self.args.workers is None else {"workers": self.args.workers}
        config = parse_config(
            {
                "gateway": {"device_id": "bench-gw", "state_dir": str(root / "state")},
                "inbound": {"port": self.args.scanner_port},
                "cloud": {"port": self.args.cloud_port},
                "protection": {"recipients": [str(card_path)], "suite": self.args.suite},
                "limits": limits,
                "telemetry": {"port": None},
            },
            environ={},
        )
        self.workers = int(config.limits.workers)
        inner = pipeline_protect_fn(config)

        def protect(data: bytes, **kwargs: Any) -> Any:
            start = time.perf_counter()
            results = inner(data, **kwargs)
            timings = dict(results[0].timings)
            timings["protect"] = time.perf_counter() - start
            self.record(timings)
            return results

        self.gateway = Gateway(config, protect)
        self.gateway.start()
        if not self.gateway.wait_connected(30):
            raise RuntimeError("the gateway did not connect to both brokers")

    def stop(self) -> None:
        self.gateway.shutdown(flush_timeout_s=5)


class AlternativeVariant(Variant):
    """What a user might run instead: take the scanner's file, encrypt it as it is for one recipient
    (ephemeral X25519, HKDF-SHA256, AES-256-GCM) and forward it. No segmentation, hiding, compression, spool
    or ledger; paho's own thread does the work."""

    def start(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self.recipient = X25519PrivateKey.generate().public_key()
        self.cloud = _client("alt-cloud", self.args.cloud_port)
        self.scanner = _client("alt-in", self.args.scanner_port, self._on_message, SCANNER_TOPIC)

    def _on_message(self, payload: bytes) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        start = time.perf_counter()
        ephemeral = X25519PrivateKey.generate()
        salt, nonce = os.urandom(16), os.urandom(12)
        key = HKDF(hashes.SHA256(), 32, salt, b"medshield-bench/ecies-aes-256-gcm").derive(
            ephemeral.exchange(self.recipient)
        )
        eph = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        blob = eph + salt + nonce + AESGCM(key).encrypt(nonce, payload, eph + salt)
        encrypted = time.perf_counter()
        self.cloud.publish(ALT_TOPIC, blob, qos=1)
        self.record({"encrypt": encrypted - start, "protect": encrypted - start})

    def stop(self) -> None:
        for client in (self.scanner, self.cloud):
            client.disconnect()
            client.loop_stop()


def _phase(variant: Variant, arrivals: Arrivals, publisher: Any, command: dict[str, Any]) -> dict[str, Any]:
    files = [Path(f).read_bytes() for f in command["files"]]
    warmup = int(command.get("warmup", 0))
    variant.take_timings()
    out: dict[str, Any] = {"op": command["op"]}
    if command["op"] == "latency":
        latencies, cpu = [], 0.0
        for i, data in enumerate(files):
            if i == warmup:
                variant.take_timings()  # the warm-up images' stage timings go too
            before, cpu0 = len(arrivals.times), _cpu_s()
            t0 = time.perf_counter()
            publisher.publish(SCANNER_TOPIC, data, qos=1)
            arrivals.wait(before + 1)
            if i >= warmup:
                latencies.append(arrivals.times[before] - t0)
                cpu += _cpu_s() - cpu0
        out.update(latency_s=latencies, cpu_s_per_image=cpu / max(1, len(latencies)))
    else:
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(_rss_bytes())
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        rss_before, cpu0 = _rss_bytes(), _cpu_s()
        before = len(arrivals.times)
        sampler.start()
        t0 = time.perf_counter()
        for data in files:
            publisher.publish(SCANNER_TOPIC, data, qos=1)
        published = time.perf_counter()
        arrivals.wait(before + len(files))
        elapsed = arrivals.times[-1] - t0
        done.set()
        sampler.join()
        out.update(
            images=len(files),
            seconds=elapsed,
            publish_s=published - t0,
            images_per_s=len(files) / elapsed,
            cpu_s_per_image=(_cpu_s() - cpu0) / len(files),
            rss_before_bytes=rss_before,
            rss_peak_bytes=max(samples or [rss_before]),
        )
    out["timings"] = variant.take_timings()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--mode", choices=["gateway", "alternative"], required=True)
    parser.add_argument("--scanner-port", type=int, required=True)
    parser.add_argument("--cloud-port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--suite", default="sbbe-blowfish")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--last-envelope", type=Path, help="write the last whole envelope here after each phase")
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    os.chdir(args.repo)
    try:
        from gateway.logging import configure_logging

        configure_logging("warning", stream=open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    except ImportError:
        pass
    variant: Variant = DaemonVariant(args) if args.mode == "gateway" else AlternativeVariant(args)
    arrivals = Arrivals()
    topic = ENVELOPE_TOPIC if args.mode == "gateway" else ALT_TOPIC
    watcher = _client("watch", args.cloud_port, arrivals.feed, topic)
    variant.start()
    publisher = _client("scanner", args.scanner_port)
    print("RESULT " + json.dumps({"op": "ready", "pid": os.getpid(), "workers": variant.workers}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            result = _phase(variant, arrivals, publisher, command)
            if args.last_envelope is not None and arrivals.last:
                args.last_envelope.write_bytes(arrivals.last)
            print("RESULT " + json.dumps(result), flush=True)
    finally:
        variant.stop()
        for client in (publisher, watcher):
            client.disconnect()
            client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
