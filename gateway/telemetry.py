"""Operational telemetry: a small thread-safe metric registry, Prometheus text `/metrics` and `/healthz`.

Not to be confused with `gateway.metrics` (image-security and segmentation metrics). Stdlib only.
"""

from __future__ import annotations

import bisect
import collections
import math
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in items)
    return "{" + body + "}"


def _fmt_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"


class Counter(_Metric):
    """A monotonically increasing count, optionally per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def total(self) -> float:
        """The sum over every label set."""
        with self._lock:
            return sum(self._values.values())

    def label_sets(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(k) for k in sorted(self._values)]

    def render(self) -> Iterable[str]:
        yield from super().render()
        with self._lock:
            items = sorted(self._values.items()) or [((), 0.0)]
        for labels, value in items:
            yield f"{self.name}{_fmt_labels(labels)} {_fmt_value(value)}"


class Gauge(_Metric):
    """A value that goes up and down; set directly or read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}
        self._read = read

    def bind(self, read: Callable[[], float]) -> None:
        """Read the value from `read` at scrape time (no bookkeeping that could drift)."""
        self._read = read

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[tuple(sorted(labels.items()))] = float(value)

    def value(self, **labels: str) -> float:
        if self._read is not None and not labels:
            return float(self._read())
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield from super().render()
        if self._read is not None:
            yield f"{self.name} {_fmt_value(self._read())}"
            return
        with self._lock:
            items = sorted(self._values.items()) or [((), 0.0)]
        for labels, value in items:
            yield f"{self.name}{_fmt_labels(labels)} {_fmt_value(value)}"


class Histogram(_Metric):
    """Cumulative-bucket histogram per label set (Prometheus semantics), plus exact quantiles over the most
    recent `window` observations (for the demo's and benchmark's summaries)."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS_S, window: int = 4096
    ) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        self._recent: dict[Labels, collections.deque[float]] = {}
        self._window = window

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts, sums = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0, 0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            sums[0] += value
            sums[1] += 1
            self._recent.setdefault(key, collections.deque(maxlen=self._window)).append(value)

    def quantile(self, q: float, **labels: str) -> float | None:
        """The q-quantile (nearest rank) of the recent window, or None without observations."""
        with self._lock:
            recent = sorted(self._recent.get(tuple(sorted(labels.items())), ()))
        if not recent:
            return None
        return recent[min(len(recent) - 1, max(0, math.ceil(q * len(recent)) - 1))]

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(tuple(sorted(labels.items())))
            return int(series[1][1]) if series else 0

    def mean(self, **labels: str) -> float:
        with self._lock:
            series = self._series.get(tuple(sorted(labels.items())))
            return series[1][0] / series[1][1] if series and series[1][1] else 0.0

    def label_sets(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(k) for k in sorted(self._series)]

    def render(self) -> Iterable[str]:
        yield from super().render()
        with self._lock:
            items = sorted((k, (list(c), list(s))) for k, (c, s) in self._series.items())
        for labels, (counts, sums) in items:
            running = 0
            for bound, n in zip(self.buckets + (math.inf,), counts, strict=True):
                running += n
                le = "+Inf" if math.isinf(bound) else repr(bound)
                yield f"{self.name}_bucket{_fmt_labels(labels, (('le', le),))} {running}"
            yield f"{self.name}_sum{_fmt_labels(labels)} {_fmt_value(sums[0])}"
            yield f"{self.name}_count{_fmt_labels(labels)} {int(sums[1])}"


class Registry:
    """The set of metrics one process exposes."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def _add(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def counter(self, name: str, help_text: str) -> Counter:
        return self._add(Counter(name, help_text))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, read: Callable[[], float] | None = None) -> Gauge:
        return self._add(Gauge(name, help_text, read))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


class TelemetryServer:
    """`GET /metrics` (Prometheus text) and `GET /healthz` (200 or 503 with a JSON body) on a local port."""

    def __init__(self, registry: Registry, health: HealthCheck, host: str = "127.0.0.1", port: int = 0) -> None:
        import json

        outer_registry, outer_health = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/metrics":
                    body = outer_registry.render().encode()
                    self._reply(200, "text/plain; version=0.0.4; charset=utf-8", body)
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
