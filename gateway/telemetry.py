"""Operational telemetry on `prometheus-client`: `/metrics` (with process metrics and `build_info`) and
`/healthz`.

Not to be confused with `gateway.image_metrics` (image-security and segmentation metrics). `Registry` owns one
`prometheus_client.CollectorRegistry` per gateway (tests run several in one process) and hands out thin
wrappers that add what the daemon, the demo and the benchmark read back in process: a counter's value and
total, a histogram's count, mean and exact quantiles over the most recent observations. Label names are
declared when a metric is created, as Prometheus requires.
"""

from __future__ import annotations

import collections
import json
import math
import platform
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import prometheus_client as prom
from prometheus_client.registry import CollectorRegistry

# `<name>_created` series double every counter and histogram and nothing here reads them.
prom.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus_client

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class _Metric:
    def __init__(self, registry: CollectorRegistry, name: str, labelnames: Sequence[str]) -> None:
        self._registry = registry
        self.name = name
        self.labelnames = tuple(labelnames)

    def _child(self, metric: object, labels: dict[str, str]) -> object:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != declared {sorted(self.labelnames)}")
        return metric.labels(**labels) if self.labelnames else metric  # type: ignore[attr-defined]

    def _samples(self, suffix: str) -> list[tuple[dict[str, str], float]]:
        out = []
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name == self.name + suffix:
                    out.append(({k: v for k, v in sample.labels.items() if k != "le"}, sample.value))
        return out


class Counter(_Metric):
    """A monotonically increasing count (exposed as `<name>_total`)."""

    def __init__(self, registry: CollectorRegistry, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        base = name.removesuffix("_total")
        super().__init__(registry, base, labelnames)
        self._metric = prom.Counter(base, help_text, labelnames=self.labelnames, registry=registry)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(self._metric, labels).inc(amount)  # type: ignore[attr-defined]

    def value(self, **labels: str) -> float:
        return float(self._registry.get_sample_value(self.name + "_total", labels) or 0.0)

    def total(self) -> float:
        """The sum over every label set."""
        return sum(value for _labels, value in self._samples("_total"))

    def label_sets(self) -> list[dict[str, str]]:
        return sorted((labels for labels, _ in self._samples("_total")), key=_key)


class Gauge(_Metric):
    """A value that goes up and down; set directly or read from a callback at scrape time."""

    def __init__(
        self, registry: CollectorRegistry, name: str, help_text: str, labelnames: Sequence[str],
        read: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(registry, name, labelnames)
        self._metric = prom.Gauge(name, help_text, labelnames=self.labelnames, registry=registry)
        if read is not None:
            self.bind(read)

    def bind(self, read: Callable[[], float]) -> None:
        """Read the value from `read` at scrape time (no bookkeeping that could drift)."""
        self._metric.set_function(lambda: float(read()))

    def set(self, value: float, **labels: str) -> None:
        self._child(self._metric, labels).set(value)  # type: ignore[attr-defined]

    def value(self, **labels: str) -> float:
        return float(self._registry.get_sample_value(self.name, labels) or 0.0)


class Histogram(_Metric):
    """Cumulative-bucket histogram, plus exact quantiles over the most recent `window` observations (for the
    demo's and the benchmark's summaries; Prometheus computes its own from the buckets)."""

    def __init__(
        self, registry: CollectorRegistry, name: str, help_text: str, labelnames: Sequence[str],
        buckets: tuple[float, ...] = LATENCY_BUCKETS_S, window: int = 4096,
    ) -> None:
        super().__init__(registry, name, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._metric = prom.Histogram(name, help_text, labelnames=self.labelnames, buckets=self.buckets,
                                      registry=registry)
        self._recent: dict[tuple[tuple[str, str], ...], collections.deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        self._child(self._metric, labels).observe(value)  # type: ignore[attr-defined]
        with self._lock:
            self._recent.setdefault(_key(labels), collections.deque(maxlen=self._window)).append(value)

    def quantile(self, q: float, **labels: str) -> float | None:
        """The q-quantile (nearest rank) of the recent window, or None without observations."""
        with self._lock:
            recent = sorted(self._recent.get(_key(labels), ()))
        if not recent:
            return None
        return recent[min(len(recent) - 1, max(0, math.ceil(q * len(recent)) - 1))]

    def count(self, **labels: str) -> int:
        return int(self._registry.get_sample_value(self.name + "_count", labels) or 0)

    def mean(self, **labels: str) -> float:
        count = self.count(**labels)
        return float(self._registry.get_sample_value(self.name + "_sum", labels) or 0.0) / count if count else 0.0

    def label_sets(self) -> list[dict[str, str]]:
        return sorted((labels for labels, _ in self._samples("_count")), key=_key)


class Registry:
    """The metrics one gateway exposes: its own, the process collector (CPU, memory, file descriptors,
    start time) and the platform collector (Python version)."""

    def __init__(self) -> None:
        self.collector = CollectorRegistry()
        prom.ProcessCollector(registry=self.collector)
        prom.PlatformCollector(registry=self.collector)

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self.collector, name, help_text, labels)

    def gauge(
        self, name: str, help_text: str, read: Callable[[], float] | None = None, labels: Sequence[str] = ()
    ) -> Gauge:
        return Gauge(self.collector, name, help_text, labels, read)

    def histogram(
        self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS_S, labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(self.collector, name, help_text, labels, buckets)

    def info(self, name: str, help_text: str, values: dict[str, str]) -> None:
        """A constant `<name>_info` gauge of 1 carrying `values` as labels (e.g. `medshield_build_info`)."""
        prom.Info(name, help_text, registry=self.collector).info(values)

    def render(self) -> str:
        """Prometheus text exposition format."""
        return prom.generate_latest(self.collector).decode()


def build_info() -> dict[str, str]:
    """Labels of `medshield_build_info`: this build's version and the runtime it runs on."""
    from gateway import __version__

    values = {"version": __version__, "python": platform.python_version()}
    try:
        import onnxruntime

        values["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        values["onnxruntime"] = "none"
    return values


HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


class TelemetryServer:
    """`GET /metrics` (Prometheus text) and `GET /healthz` (200 or 503 with a JSON body) on a local port."""

    def __init__(self, registry: Registry, health: HealthCheck, host: str = "127.0.0.1", port: int = 0) -> None:
        outer_registry, outer_health = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/metrics":
                    self._reply(200, prom.CONTENT_TYPE_LATEST, outer_registry.render().encode())
                elif self.path.split("?")[0] == "/healthz":
                    ok, detail = outer_health()
                    body = json.dumps({"ok": ok, **detail}, sort_keys=True).encode()
                    self._reply(200 if ok else 503, "application/json", body)
                else:
                    self._reply(404, "text/plain", b"not found\n")

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return  # scrapes every few seconds would flood the JSON log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="telemetry", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> TelemetryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
