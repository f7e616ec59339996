"""One measured variant of `medshield bench daemon`, in its own process: the real daemon of a source tree (or
the encrypt-and-forward alternative) between two mosquittos that the driver started.

    PYTHON daemon_runner.py --repo TREE --mode gateway|gateway-cstore|alternative --scanner-port P --cloud-port Q
        --state DIR

It is run by path with the interpreter of the tree it measures (the commit compared against has its own
virtual environment), so it imports nothing of this package: only what every measured tree has (`parse_config`,
`Gateway`, `pipeline_protect_fn`, recipient files). Commands arrive as JSON lines on stdin, answers leave as JSON
lines on stdout prefixed with `RESULT `:

- `{"op": "latency", "files": [...], "warmup": k}`: one image in flight at a time, scanner publish to the
  whole envelope on the cloud topic; the first `k` are run and dropped.
- `{"op": "burst", "files": [...]}`: every image published back to back; images/s until the last envelope
  arrived, and this process's resident memory sampled every 10 ms meanwhile.
- `{"op": "quit"}`.

Mode `gateway-cstore` is the same daemon with its DICOM C-STORE listener on, fed by a modality instead of the
scanner broker: pynetdicom SCU associations from this process (as paho publishes from it in `gateway`), one for
the latency phase and one more than the workers for a burst (a C-STORE waits for its answer, which the gateway
gives only after the spool commit). Its latency answers also carry `answer_s`, send to Success response.

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
CSTORE_CALLED_AE = "MEDSHIELD"
CSTORE_CALLING_AE = "BENCH-CT"


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
        document: dict[str, Any] = {
            "gateway": {"device_id": "bench-gw", "state_dir": str(root / "state")},
            "inbound": {"port": self.args.scanner_port},
            "cloud": {"port": self.args.cloud_port},
            "protection": {"recipients": [str(card_path)], "suite": self.args.suite},
            "limits": limits,
            "telemetry": {"port": None},
        }
        if self.args.mode == "gateway-cstore":
            document["dicom"] = {"host": "127.0.0.1", "port": 0, "ae_title": CSTORE_CALLED_AE}
        config = parse_config(document, environ={})
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
        listener = getattr(self.gateway, "dicom_intake", None)  # trees without a C-STORE intake have none
        self.dicom_port = listener.port if listener is not None else None

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


class MqttSender:
    """The scanner: QoS 1 publishes to the scanner broker (`send` returns once paho queued the message)."""

    blocking = False

    def __init__(self, port: int) -> None:
        self.client = _client("scanner", port)

    def prepare(self, data: bytes) -> Any:
        return data

    def send(self, message: Any) -> None:
        self.client.publish(SCANNER_TOPIC, message, qos=1)

    def send_all(self, messages: list[Any], workers: int) -> None:
        for message in messages:
            self.send(message)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CStoreSender:
    """A modality: C-STORE over pynetdicom SCU associations to the gateway's listener. `send` returns on the
    Success response, which the gateway sends after its spool commit; any other status is an error."""

    blocking = True

    def __init__(self, port: int) -> None:
        self.port = port

    def prepare(self, data: bytes) -> Any:
        import io

        import pydicom

        return pydicom.dcmread(io.BytesIO(data))

    def _associate(self) -> Any:
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
        from pynetdicom import AE

        ae = AE(ae_title=CSTORE_CALLING_AE)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", self.port, ae_title=CSTORE_CALLED_AE)
        if not assoc.is_established:
            raise RuntimeError("the gateway refused the C-STORE association")
        return assoc

    def _store(self, assoc: Any, dataset: Any) -> None:
        status = assoc.send_c_store(dataset)
        if getattr(status, "Status", None) != 0x0000:
            raise RuntimeError(f"C-STORE answered {getattr(status, 'Status', 'nothing')!r}, not Success")

    def send(self, message: Any) -> None:
        assoc = getattr(self, "_latency_assoc", None)
        if assoc is None or not assoc.is_established:
            assoc = self._latency_assoc = self._associate()
        self._store(assoc, message)

    def send_all(self, messages: list[Any], workers: int) -> None:
        """One association more than the gateway has workers, each sending its share in order: a C-STORE waits
        for its answer, so with one per worker a worker would sit idle while its next image is in transfer."""
        assocs = [self._associate() for _ in range(max(1, workers) + 1)]
        errors: list[BaseException] = []

        def run(assoc: Any, share: list[Any]) -> None:
            try:
                for dataset in share:
                    self._store(assoc, dataset)
            except BaseException as exc:  # noqa: BLE001 - reported by the phase, not lost in a thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(a, messages[i :: len(assocs)])) for i, a in enumerate(assocs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for assoc in assocs:
            assoc.release()
        if errors:
            raise errors[0]

    def end_phase(self) -> None:
        assoc = getattr(self, "_latency_assoc", None)
        if assoc is not None and assoc.is_established:
            assoc.release()
        self._latency_assoc = None

    def close(self) -> None:
        self.end_phase()


def _phase(variant: Variant, arrivals: Arrivals, sender: Any, command: dict[str, Any]) -> dict[str, Any]:
    files = [sender.prepare(Path(f).read_bytes()) for f in command["files"]]
    warmup = int(command.get("warmup", 0))
    variant.take_timings()
    out: dict[str, Any] = {"op": command["op"]}
    if command["op"] == "latency":
        latencies, answers, cpu = [], [], 0.0
        for i, data in enumerate(files):
            if i == warmup:
                variant.take_timings()  # the warm-up images' stage timings go too
            before, cpu0 = len(arrivals.times), _cpu_s()
            t0 = time.perf_counter()
            sender.send(data)
            answered = time.perf_counter()
            arrivals.wait(before + 1)
            if i >= warmup:
                latencies.append(arrivals.times[before] - t0)
                answers.append(answered - t0)
                cpu += _cpu_s() - cpu0
        out.update(latency_s=latencies, cpu_s_per_image=cpu / max(1, len(latencies)))
        if sender.blocking:
            out["answer_s"] = answers
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
        sender.send_all(files, variant.workers)
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
    if hasattr(sender, "end_phase"):
        sender.end_phase()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--mode", choices=["gateway", "gateway-cstore", "alternative"], required=True)
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
    variant: Variant = AlternativeVariant(args) if args.mode == "alternative" else DaemonVariant(args)
    arrivals = Arrivals()
    topic = ALT_TOPIC if args.mode == "alternative" else ENVELOPE_TOPIC
    watcher = _client("watch", args.cloud_port, arrivals.feed, topic)
    variant.start()
    sender: MqttSender | CStoreSender
    if args.mode == "gateway-cstore":
        port = getattr(variant, "dicom_port", None)
        if port is None:
            raise RuntimeError("this tree's daemon has no DICOM C-STORE intake")
        sender = CStoreSender(port)
    else:
        sender = MqttSender(args.scanner_port)
    print("RESULT " + json.dumps({"op": "ready", "pid": os.getpid(), "workers": variant.workers}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            result = _phase(variant, arrivals, sender, command)
            if args.last_envelope is not None and arrivals.last:
                args.last_envelope.write_bytes(arrivals.last)
            print("RESULT " + json.dumps(result), flush=True)
    finally:
        sender.close()
        variant.stop()
        watcher.disconnect()
        watcher.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
