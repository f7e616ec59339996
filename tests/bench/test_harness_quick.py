"""`medshield bench --quick` runs the whole harness end to end through a real mosquitto, so it cannot go stale."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gateway.cli import main
from medshield_tools.bench.output import CSV_FIELDS, PLOT_NAMES

pytestmark = pytest.mark.broker

LEAVES = ("ingest", "decode", "segment", "hide", "pack", "seal", "publish→receive")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--quick", "--sizes", "128", "--no-progress", "--note", "test", "--out", str(out)])
    assert rc == 0
    return out


def test_outputs_exist_and_are_well_formed(quick_run: Path) -> None:
    for name in ("bench.csv", "bench.json", "summary.md", *PLOT_NAMES):
        path = quick_run / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in PLOT_NAMES:
        assert (quick_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (quick_run / "bench.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_FIELDS
        rows = list(reader)
    assert rows
    for row in rows:
        p50, p95, p99 = float(row["p50_ms"]), float(row["p95_ms"]), float(row["p99_ms"])
        assert 0 < p50 <= p95 <= p99 <= float(row["max_ms"]) + 1e-9
        assert int(row["n"]) >= 3 and int(row["warmup"]) == 1


def test_json_has_machine_cases_and_ratios(quick_run: Path) -> None:
    doc = json.loads((quick_run / "bench.json").read_text(encoding="utf-8"))
    machine = doc["machine"]
    assert machine["cpu_model"] and machine["logical_cores"] >= 1 and "numpy" in machine["libraries"]
    assert machine["note"] == "test" and "gpus" in machine and machine["mosquitto"]
    assert "warm-up" in doc["warmup"]
    cases = {(m["kind"], m["name"], m["suite"], m["bits"]) for m in doc["measurements"]}
    for bits in (8, 16):
        for suite in ("sbbe-blowfish", "aes-256-siv"):
            assert ("pipeline", "pipeline", suite, bits) in cases
            assert ("floor", "mqtt-envelope", suite, bits) in cases
        assert ("pipeline", "pipeline-N50", "sbbe-blowfish", bits) in cases
        assert ("floor", "blowfish-ctr", "sbbe-blowfish", bits) in cases
        assert ("floor", "aes-siv", "aes-256-siv", bits) in cases
        assert ("floor", "mqtt-input", None, bits) in cases
        assert ("alternative", "aes-gcm-forward", None, bits) in cases
    for m in doc["measurements"]:
        if m["kind"] == "pipeline":
            assert all(stage in m["stages"] for stage in LEAVES), m["stages"].keys()
            assert m["peak_memory_bytes"] > 0
            # Every stage is inside the end-to-end time.
            assert m["stages"]["protect"]["p50"] <= m["total"]["p50"]
            assert len(m["samples_s"]["total"]) == m["total"]["n"]
        if m["name"] == "pipeline" and m["suite"] == "sbbe-blowfish":
            assert m["info"]["search_params"]["population"] == 20 and "seal.search" in m["stages"]
        if m["name"] == "pipeline-N50":
            assert m["info"]["search_params"]["population"] == 50
    assert doc["skipped"] == []
    ratios = doc["ratios"]
    backends = {m["backend"] for m in doc["measurements"] if m["kind"] == "pipeline"}
    assert len(ratios) == 2 * 2 * len(backends)
    for r in ratios:
        # Ratios are consistent with the figures they come from (their size is for benchmarks, not tests).
        assert r["pipeline_over_floors"] == pytest.approx(r["pipeline_p50_s"] / r["floors_sum_p50_s"])
        assert r["pipeline_over_alternative"] == pytest.approx(r["pipeline_p50_s"] / r["alternative_p50_s"])
        assert {"cipher", "mqtt-input", "mqtt-envelope"} <= set(r["floors_included"])
        if r["suite"] == "sbbe-blowfish":
            assert r["sbbe_paper_p50_s"] > 0 and r["sbbe_paper_over_0.67s"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--bits", "12"],
        ["--suites", "rot13"],
        ["--min-reps", "5", "--max-reps", "2"],
        ["--warmup", "-1"],
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], tmp_path: Path) -> None:
    assert main(["bench", *argv, "--out", str(tmp_path)]) == 2


def test_an_early_search_is_a_leaf_by_the_cpu_time_that_seal_counts() -> None:
    from medshield_tools.bench.harness import _leaf_stages

    # Sealer.seal adds an early search's CPU time (3 ms) to its own wall time (2 ms: encrypt 1.5, the rest 0.5);
    # on a busy machine the search's wall time (5 ms) is longer than its CPU time.
    leaves = _leaf_stages({"seal": 0.005, "seal.search": 0.005, "seal.search_cpu": 0.003, "seal.encrypt": 0.0015})
    assert leaves["seal.search"] == 0.003 and leaves["seal.search_wall"] == 0.005
    assert leaves["seal.other"] == pytest.approx(0.0005)
    assert leaves["seal.search"] + leaves["seal.encrypt"] + leaves["seal.other"] == pytest.approx(leaves["seal"])
    # A search inside seal: its wall time is the leaf.
    inline = _leaf_stages({"seal": 0.007, "seal.search": 0.005, "seal.encrypt": 0.0015})
    assert inline["seal.other"] == pytest.approx(0.0005) and "seal.search_wall" not in inline
