"""/metrics is prometheus-client's exposition: process metrics, build_info, the inference backend in use,
and stage latencies whose label sets are disjoint (no total counted beside its own parts)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.config import parse_config
from gateway.daemon.metrics import GatewayMetrics
from gateway.daemon.protect import pipeline_protect_fn


def _families(metrics: GatewayMetrics) -> dict[str, list]:  # type: ignore[type-arg]
    return {f.name: f.samples for f in text_string_to_metric_families(metrics.registry.render())}


def test_process_metrics_and_build_info() -> None:
    families = _families(GatewayMetrics())
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in families, sorted(families)
    assert not [name for name in families if name.endswith("_created")]
    (build,) = families["medshield_build_info"]
    assert build.value == 1.0
    assert build.labels["version"] == __version__ and build.labels["onnxruntime"] != "none"


def test_stage_labels_do_not_double_count() -> None:
    metrics = GatewayMetrics()
    timings = {"decode": 0.01, "segment": 0.2, "keys": 0.002, "hide": 0.03, "pack": 0.004, "seal": 0.05,
               "seal.search": 0.03, "seal.encrypt": 0.01}
    metrics.observe_timings(timings)
    metrics.protect.observe(0.3)
    families = _families(metrics)
    stages = {s.labels["stage"]: s.value for s in families["medshield_stage_seconds"] if s.name.endswith("_sum")}
    assert set(stages) == {"decode", "segment", "keys", "hide", "pack", "seal"}
    assert abs(sum(stages.values()) - 0.296) < 1e-9  # the parts add up to the whole; nothing counted twice
    parts = {s.labels["part"] for s in families["medshield_seal_part_seconds"] if s.name.endswith("_sum")}
    assert parts == {"search", "encrypt"}
    assert [s.value for s in families["medshield_protect_seconds"] if s.name.endswith("_count")] == [1.0]


def test_the_inference_backend_in_use_is_exported(tmp_path: Path) -> None:
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    key, _ = generate_recipient("svc", system_random)
    _, card = save_recipient(tmp_path, key)
    config = parse_config({"gateway": {"device_id": "gw", "state_dir": str(tmp_path / "state")},
                           "protection": {"recipients": [str(card)]}}, environ={})
    metrics = GatewayMetrics()
    pipeline_protect_fn(config, metrics)
    (sample,) = [s for s in _families(metrics)["medshield_inference_backend"] if s.value == 1.0]
    assert sample.labels == {"requested": "auto", "backend": "cpu"}  # this machine has no GPU: auto → cpu
