"""C-STORE intake vs MQTT intake, in the same run: throughput (images/s) and latency from the sender's first
byte to the envelope committed in the spool, for a 512² CT series, through the real gateway and pipeline.

    .venv/bin/python benchmarks/dicom_intake_bench.py [--images 20] [-o benchmarks/results/dicom_intake.json]

One gateway (the real `Gateway`, `pipeline_protect_fn` with DS-Net on the CPU, one worker) with both intakes on
a private mosquitto. Its cloud link points at a port nobody listens on, so envelopes stay in the spool and the
publisher's work does not blur the measure. Images go one at a time (a modality's C-STORE is synchronous),
the two intakes in turn, so both see the same machine load; throughput is images over the time spent in that intake:
- C-STORE: pynetdicom sends each slice on one association; the time is send to the Success response, which
  the gateway answers only after the spool commit.
- MQTT: each slice is published at QoS 1 to the scanner topic; the time is publish to the gateway's
  `medshield_messages_protected_total` counting it (incremented right after the commit).
The slices are the real lung CT (shared/data/ct/lung1.npz) as valid CT DICOM, different instances per intake.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _series(directory: Path, count: int, seed: str) -> list[Path]:
    from gateway.resources import shared_data_dir
    from medshield_tools.scanner_sim import dicom_from_hu

    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        volume, spacing = data["image_hu"], [float(v) for v in data["spacing_zyx_mm"]]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"{seed}-{i:03d}.dcm"
        path.write_bytes(dicom_from_hu(volume[i % len(volume)], instance=i + 1, spacing_mm=spacing[1:],
                                       thickness_mm=spacing[0], series_seed=seed))
        paths.append(path)
    return paths


def _stats(latencies: list[float], wall: float) -> dict[str, float]:
    ms = sorted(1000 * x for x in latencies)
    return {
        "images": len(ms),
        "throughput_images_per_s": round(len(ms) / wall, 3),
        "latency_ms_p50": round(statistics.median(ms), 1),
        "latency_ms_p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
        "latency_ms_max": round(ms[-1], 1),
        "time_in_intake_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dicom_intake.json")
    args = parser.parse_args()

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from gateway.broker import EmbeddedBroker, free_port
    from gateway.config import parse_config
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.daemon import Gateway, pipeline_protect_fn
    from gateway.logging import configure_logging
    from gateway.rng import system_random

    configure_logging("error", stream=open(os.devnull, "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="medshield-intake-bench-") as tmp:
        root = Path(tmp)
        key, _ = generate_recipient("bench", system_random)
        _, card_path = save_recipient(root / "keys", key)
        broker = EmbeddedBroker(persistence_dir=root / "broker").start()
        config = parse_config(
            {
                "gateway": {"device_id": "bench-gw", "state_dir": str(root / "state")},
                "inbound": {"port": broker.port},
                "cloud": {"port": free_port(), "reconnect_min_s": 5, "reconnect_max_s": 5},
                "protection": {"recipients": [str(card_path)]},
                "telemetry": {"port": None},
                "dicom": {"port": 0, "host": "127.0.0.1"},
            },
            environ={},
        )
        gateway = Gateway(config, pipeline_protect_fn(config))
        gateway.start()
        assert gateway.inbound.wait_connected(20) and gateway.dicom_intake is not None
        dicom_files = _series(root / "cstore", args.images, "bench-cstore")
        mqtt_files = _series(root / "mqtt", args.images, "bench-mqtt")
        protected = gateway.metrics.protected
        results = {}
        try:
            ae = AE(ae_title="BENCH-CT")
            ae.add_requested_context(CTImageStorage)
            assoc = ae.associate("127.0.0.1", gateway.dicom_intake.port, ae_title=config.dicom.ae_title)
            assert assoc.is_established
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-scanner", protocol=paho.MQTTv5)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            # Interleaved, one image of each intake in turn, so both see the same machine load.
            cstore: list[float] = []
            mqtt: list[float] = []
            busy = {"cstore": 0.0, "mqtt": 0.0}
            for dicom_path, mqtt_path in zip(dicom_files, mqtt_files, strict=False):
                t0 = time.perf_counter()
                status = assoc.send_c_store(dicom_path)
                assert status and status.Status == 0, status
                cstore.append(time.perf_counter() - t0)
                before, data = protected.value(), mqtt_path.read_bytes()
                t0 = time.perf_counter()
                client.publish("medshield/scanners/bench-ct/images", data, qos=1).wait_for_publish(30)
                while protected.value() <= before:
                    time.sleep(0.002)
                mqtt.append(time.perf_counter() - t0)
            busy["cstore"], busy["mqtt"] = sum(cstore), sum(mqtt)
            results["cstore"] = _stats(cstore, busy["cstore"])
            results["mqtt"] = _stats(mqtt, busy["mqtt"])
            assoc.release()
            client.disconnect()
            client.loop_stop()
        finally:
            gateway.shutdown(flush_timeout_s=0)
            broker.close()
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "image": "512x512 16-bit CT Image Storage, Explicit VR Little Endian (lung1.npz slices)",
        "pipeline": "pipeline_protect_fn: DS-Net (ONNX Runtime CPU), sbbe-blowfish, one worker",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
