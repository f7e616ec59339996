"""The harness's statistics and repetition rule."""

from __future__ import annotations

import numpy as np
import pytest

from medshield_tools.bench.stats import (
    RepetitionRule,
    interleaved_latency_ms,
    latency_ms,
    median_ci,
    repeat,
    summarize,
    time_calls,
)


def test_summary_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(mean=-4, sigma=0.5, size=301)
    s = summarize(samples, warmup=2)
    assert s.n == 301 and s.warmup == 2
    assert s.p50 == pytest.approx(np.percentile(samples, 50))
    assert s.p95 == pytest.approx(np.percentile(samples, 95))
    assert s.p99 == pytest.approx(np.percentile(samples, 99))
    assert s.min <= s.p50_ci_low <= s.p50 <= s.p50_ci_high <= s.max
    assert s.throughput == pytest.approx(1 / samples.mean())


def test_median_ci_covers_true_median_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    trials = 400
    for _ in range(trials):
        lo, hi = median_ci(np.sort(rng.exponential(1.0, size=60)))
        hits += lo <= np.log(2) <= hi
    assert 0.90 <= hits / trials <= 0.995


def test_summarize_rejects_empty() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_repeat_discards_warmup_and_respects_bounds() -> None:
    calls: list[int] = []

    def trial() -> tuple[float, dict[str, float]]:
        calls.append(1)
        # The first two (warm-up) calls are slow; they must not appear in the samples.
        value = 5.0 if len(calls) <= 2 else 1.0 + 0.001 * len(calls)
        return value, {"stage": value / 2}

    rule = RepetitionRule(warmup=2, min_reps=4, max_reps=7, budget_s=60, target_rel_ci=0.0)
    series = repeat(trial, rule)
    assert len(calls) == 2 + 7
    assert len(series.total) == 7 and max(series.total) < 5.0
    assert series.stages["stage"] == [v / 2 for v in series.total]
    assert series.warmup == 2


def test_repeat_stops_early_when_precise() -> None:
    rule = RepetitionRule(warmup=0, min_reps=3, max_reps=500, budget_s=60, target_rel_ci=0.05)
    series = repeat(lambda: (1.0, {}), rule)
    assert len(series.total) == 10  # the earliest point at which the interval is judged


def test_repeat_stops_on_budget() -> None:
    rule = RepetitionRule(warmup=0, min_reps=2, max_reps=10_000, budget_s=0.0, target_rel_ci=0.0)
    series = repeat(lambda: (float(np.random.default_rng().random()), {}), rule)
    assert len(series.total) == 2


def test_time_calls_discards_warmup_and_latency_ms_reports_milliseconds() -> None:
    calls = []
    samples = time_calls(lambda: calls.append(1), runs=5, warmup=2)
    assert len(calls) == 7 and len(samples) == 5 and all(s >= 0 for s in samples)
    figures = latency_ms([0.010, 0.020, 0.030, 0.040, 0.050])
    assert figures["n"] == 5
    assert figures["p50_ms"] == pytest.approx(30.0)
    assert figures["min_ms"] == pytest.approx(10.0) and figures["mean_ms"] == pytest.approx(30.0)
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= 50.0


def test_interleaved_calls_take_every_position_equally() -> None:
    order: list[str] = []
    calls = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    figures = interleaved_latency_ms(calls, runs=6)
    assert order[:3] == ["a", "b", "c"]  # one warm-up call each
    rounds = [order[3 + 3 * r:6 + 3 * r] for r in range(6)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # one call of each per round
    for position in range(3):  # each name first, second and third equally often
        assert sorted(r[position] for r in rounds) == ["a", "a", "b", "b", "c", "c"]
    assert {k: v["n"] for k, v in figures.items()} == {"a": 6, "b": 6, "c": 6}
