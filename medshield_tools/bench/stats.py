"""Latency statistics and the repetition rule of the benchmark harness.

Percentiles are the plain order-statistic kind (numpy's "linear" interpolation). The confidence interval of the
median is distribution free (binomial order statistics), so it holds for the skewed, heavy-tailed latencies a
contended machine produces, where a normal approximation would not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    """Latency figures of one measurement, in seconds (throughput in items per second)."""

    n: int
    warmup: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    p50_ci_low: float
    p50_ci_high: float
    throughput: float

    @property
    def p50_rel_ci(self) -> float:
        """Half-width of the median's 95 % interval relative to the median (0.02 = ±2 %)."""
        if self.p50 <= 0:
            return math.inf
        return (self.p50_ci_high - self.p50_ci_low) / 2 / self.p50

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["p50_rel_ci"] = self.p50_rel_ci
        return out


def median_ci(sorted_samples: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """95 % confidence interval of the median from order statistics (exact for any continuous distribution
    up to the normal approximation of the binomial); with fewer than 6 samples it is the whole range."""
    n = len(sorted_samples)
    if n == 0:
        return math.nan, math.nan
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_samples[lo]), float(sorted_samples[hi])


def summarize(samples: list[float] | np.ndarray, warmup: int = 0) -> Summary:
    """Summary of timed samples (warm-up runs already removed; `warmup` only records how many there were)."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no samples to summarize")
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    lo, hi = median_ci(values)
    mean = float(values.mean())
    return Summary(
        n=int(values.size),
        warmup=warmup,
        mean=mean,
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min=float(values[0]),
        max=float(values[-1]),
        p50=p50,
        p95=p95,
        p99=p99,
        p50_ci_low=lo,
        p50_ci_high=hi,
        throughput=1.0 / mean if mean > 0 else math.inf,
    )


@dataclass(frozen=True)
class RepetitionRule:
    """When to stop repeating a measurement.

    After `warmup` untimed runs, repeat at least `min_reps` times; then stop as soon as the median's 95 %
    interval is within ±`target_rel_ci` of the median, or the time budget (seconds of measured work) is spent,
    or `max_reps` is reached. Slow cases thus get few repetitions and fast ones many, for comparable precision.
    """

    warmup: int = 2
    min_reps: int = 5
    max_reps: int = 200
    budget_s: float = 10.0
    target_rel_ci: float = 0.02

    def done(self, samples: list[float], elapsed_s: float) -> bool:
        n = len(samples)
        if n < self.min_reps:
            return False
        if n >= self.max_reps or elapsed_s >= self.budget_s:
            return True
        if n < 10:
            return False
        values = np.sort(np.asarray(samples))
        lo, hi = median_ci(values)
        median = float(np.median(values))
        return median > 0 and (hi - lo) / 2 / median <= self.target_rel_ci


@dataclass
class Series:
    """Samples of one measurement: the headline latency plus any per-stage latencies reported with it."""

    total: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    warmup: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, total: float, stages: dict[str, float] | None = None) -> None:
        self.total.append(total)
        for name, seconds in (stages or {}).items():
            self.stages.setdefault(name, []).append(seconds)


Trial = Callable[[], "tuple[float, dict[str, float]]"]
"""One repetition: returns (headline seconds, {stage: seconds})."""


def repeat(trial: Trial, rule: RepetitionRule, tick: Callable[[], None] | None = None) -> Series:
    """Run `trial` under `rule`: warm-up runs first (discarded), then timed runs until the rule says stop."""
    series = Series(warmup=rule.warmup)
    for _ in range(rule.warmup):
        trial()
        if tick:
            tick()
    start = time.perf_counter()
    while not rule.done(series.total, time.perf_counter() - start):
        total, stages = trial()
        series.add(total, stages)
        if tick:
            tick()
    return series


def timed(fn: Callable[[], Any]) -> Trial:
    """A trial that times one call of `fn` with `perf_counter` and reports no stages."""

    def trial() -> tuple[float, dict[str, float]]:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, {}

    return trial


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 1) -> list[float]:
    """Seconds taken by each of `runs` calls of `fn`, after `warmup` untimed calls (first-call imports and
    allocations are not what a running gateway pays)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def latency_ms(samples: list[float] | np.ndarray) -> dict[str, float]:
    """The figures the stand-alone benchmark scripts print, in milliseconds, from samples in seconds."""
    s = summarize(samples)
    return {"n": s.n, "p50_ms": round(s.p50 * 1e3, 3), "p95_ms": round(s.p95 * 1e3, 3),
            "p99_ms": round(s.p99 * 1e3, 3), "mean_ms": round(s.mean * 1e3, 3), "min_ms": round(s.min * 1e3, 3)}


def interleaved_latency_ms(calls: dict[str, Callable[[], Any]], runs: int) -> dict[str, dict[str, float]]:
    """Each callable timed `runs` times, one call of each per round (after one warm-up call each), as
    `latency_ms` figures.

    The order rotates from round to round, so every call runs equally often in every position and after every
    other: no compared model is charged for its place in a fixed order."""
    names = list(calls)
    times: dict[str, list[float]] = {k: [] for k in names}
    for fn in calls.values():
        fn()
    for r in range(runs):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: latency_ms(v) for k, v in times.items()}
