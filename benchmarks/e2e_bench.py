"""End-to-end benchmark: publish on the scanner topic → whole envelope on the cloud topic.

Real mosquitto brokers (scanner side and cloud side), the real gateway (`Gateway` + the pipeline's protect
step, exactly what `medshield run` uses), a cloud subscriber that reassembles parts. Inputs: 512×512 16-bit
CT slices from the real lung CT (shared/data/ct/lung1.npz) as DICOM (or NPY uint16).

    .venv/bin/python benchmarks/e2e_bench.py [--n 50] [--burst 60] [--format dicom|npy] [--suite ...]

Latency: one image in flight at a time, p50/p95/p99 over --n images (after warm-up). Throughput: --burst
images published back to back, images/s until the last envelope arrived. Writes JSON (default: a fresh file under
benchmarks/results/tmp/, never over an existing one) with the machine's description. Its stage figures pool
the latency and burst phases; `medshield bench --daemon` (medshield_tools/bench/daemon.py) keeps them apart, runs
the comparison and the alternative interleaved, and is the daemon benchmark of record. Targets (CPU): p50 ≤ 60
ms, ≥ 20 images/s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.broker import EmbeddedBroker  # noqa: E402
from gateway.config import BrokerConfig, parse_config  # noqa: E402
from gateway.daemon import Gateway, pipeline_protect_fn  # noqa: E402
from gateway.logging import configure_logging  # noqa: E402
from gateway.mqtt_link import InboundMessage, MqttLink  # noqa: E402
from gateway.resources import shared_data_dir  # noqa: E402
from medshield_tools.bench.machine import describe  # noqa: E402
from medshield_tools.scanner_sim import ScannerSimulator, dicom_from_hu  # noqa: E402


def inputs(fmt: str, count: int) -> list[bytes]:
    """`count` distinct 512×512 16-bit CT slices (cycling the 48 real ones; later copies differ in one pixel
    so every message has its own id)."""
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        volume = data["image_hu"]
    out = []
    for i in range(count):
        hu = volume[i % volume.shape[0]].copy()
        hu[0, 0] = np.int16(-1024 + i // volume.shape[0])
        if fmt == "dicom":
            out.append(dicom_from_hu(hu, instance=i + 1, spacing_mm=(0.5703, 0.5703), thickness_mm=5.0))
        else:
            buf = io.BytesIO()
            np.save(buf, (hu.astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16), allow_pickle=False)
            out.append(buf.getvalue())
    return out


class CloudWatcher:
    """Counts whole envelopes arriving on the cloud topic (parts reassembled)."""

    def __init__(self, port: int, gateways: Any, workdir: Path) -> None:
        from gateway.crypto.parts import is_part, parse_part
        from gateway.receiver import PartStore

        self._parts, self._is_part, self._parse = PartStore(workdir, gateways), is_part, parse_part
        self.arrivals: list[float] = []
        self.cond = threading.Condition()
        self.link = MqttLink(
            "bench-cloud",
            BrokerConfig(port=port),
            "bench-watcher",
            persistent=False,
            subscriptions=["medshield/gateways/+/envelopes"],
            on_message=self._on_message,
        )

    def _on_message(self, message: InboundMessage) -> None:
        payload = message.payload
        whole: bytes | None = payload
        if self._is_part(payload):
            done = self._parts.feed(self._parse(payload))
            whole = done[0] if done else None
        if whole is not None:
            with self.cond:
                self.arrivals.append(time.perf_counter())
                self.cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.arrivals) >= n, timeout)


def resolved_backend(requested: str) -> str | None:
    """The backend `auto` resolves to here (the first loadable one in the auto order), else `requested`."""
    if requested != "auto":
        return requested
    from gateway.inference import AUTO_ORDER, available_backends

    reasons = available_backends()
    return next((name for name in AUTO_ORDER if reasons[name] is None), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="images for the latency run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--burst", type=int, default=60, help="images for the throughput run")
    parser.add_argument("--format", choices=["dicom", "npy"], default="dicom")
    parser.add_argument("--suite", default="sbbe-blowfish")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--backend", default="auto", help="segmentation.backend (auto, cpu, cuda, tensorrt-ep, tensorrt)"
    )
    parser.add_argument("--state-seed", type=Path,
                        help="copy this state dir's engines/ and ort-trt-cache/ in first (engines from"
                             " `medshield models build-engines --state-dir DIR`), so the gateway reuses them")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    parser.add_argument(
        "--out", type=Path,
        default=REPO / "benchmarks" / "results" / "tmp" / f"e2e-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json",
        help="output file (default: a fresh one under benchmarks/results/tmp/; an existing file is refused)",
    )
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists: a result is never overwritten")

    configure_logging("warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    data = inputs(args.format, args.warmup + args.n + args.burst)
    with (
        tempfile.TemporaryDirectory(prefix="medshield-bench-") as tmp,
        EmbeddedBroker() as scanner_broker,
        EmbeddedBroker() as cloud_broker,
    ):
        root = Path(tmp)
        for cached in ("engines", "ort-trt-cache"):
            if args.state_seed is not None and (args.state_seed / cached).is_dir():
                shutil.copytree(args.state_seed / cached, root / "state" / cached)
        key, _ = generate_recipient("bench-service", system_random)
        _, card_path = save_recipient(root, key)
        config = parse_config(
            {
                "gateway": {"device_id": "bench-gw", "state_dir": str(root / "state")},
                "inbound": {"port": scanner_broker.port},
                "cloud": {"port": cloud_broker.port},
                "protection": {"recipients": [str(card_path)], "suite": args.suite},
                "limits": {"workers": args.workers},
                "segmentation": {"backend": args.backend},
                "telemetry": {"port": None},
            },
            environ={},
        )
        gateway = Gateway(config, pipeline_protect_fn(config))
        from gateway.crypto.origin import GatewayKey, TrustedGateways

        pinned = TrustedGateways([GatewayKey.load_or_create(config.ledger_key_path, "bench-gw").card])
        watcher = CloudWatcher(cloud_broker.port, pinned, root / "parts")
        watcher.link.start()
        gateway.start()
        assert gateway.wait_connected(20) and watcher.link.wait_connected(20), "brokers not reachable"
        scanner = ScannerSimulator("127.0.0.1", scanner_broker.port, scanner="bench-ct")

        latencies = []
        for i, payload in enumerate(data[: args.warmup + args.n]):
            t0 = time.perf_counter()
            scanner.publish(payload)
            if not watcher.wait_count(i + 1, 60):
                raise TimeoutError(f"envelope {i} did not arrive")
            if i >= args.warmup:
                latencies.append(watcher.arrivals[i] - t0)
        done_before = len(watcher.arrivals)
        t0 = time.perf_counter()
        for payload in data[args.warmup + args.n :]:
            scanner.publish(payload)
        if not watcher.wait_count(done_before + args.burst, 300):
            raise TimeoutError("burst did not complete")
        burst_s = watcher.arrivals[-1] - t0
        stages = {
            ls["stage"]: {
                "p50_ms": 1000 * (gateway.metrics.stage.quantile(0.5, **ls) or 0),
                "p95_ms": 1000 * (gateway.metrics.stage.quantile(0.95, **ls) or 0),
            }
            for ls in gateway.metrics.stage.label_sets()
        }
        scanner.close()
        gateway.shutdown(flush_timeout_s=5)
        watcher.link.stop()

    lat_ms = sorted(1000 * x for x in latencies)
    q = statistics.quantiles(lat_ms, n=100, method="inclusive")
    result = {
        "benchmark": "e2e scanner topic -> cloud topic",
        "input": f"512x512 int16 CT ({args.format}), real lung1 slices",
        "input_bytes": len(data[0]),
        "suite": args.suite,
        "workers": args.workers,
        "backend_requested": args.backend,
        "backend": resolved_backend(args.backend),
        "latency_ms": {"n": len(lat_ms), "p50": q[49], "p95": q[94], "p99": q[98], "min": lat_ms[0], "max": lat_ms[-1]},
        "throughput_images_per_s": args.burst / burst_s,
        "burst": args.burst,
        "stages_ms": stages,
        "targets": {"p50_ms": 60, "images_per_s": 20},
        "machine": describe(),
        "load_average": os.getloadavg(),
        "note": args.note,
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
