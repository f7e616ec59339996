"""`medshield bench --daemon --quick`: the daemon through real mosquitto with its floors and the alternative,
end to end; a result is never overwritten; and killing the harness leaves none of its processes behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import main

pytestmark = pytest.mark.broker


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for a reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("daemon-bench")
    assert main(["bench", "--daemon", "--quick", "--note", "test", "--out", str(out)]) == 0
    return out


def test_quick_run_measures_every_variant_floor_and_phase(quick_run: Path) -> None:
    result = json.loads((quick_run / "daemon.json").read_text())
    assert set(result["variants"]) == {"current", "cstore", "alternative"}
    current = result["variants"]["current"]
    assert current["latency_ms"]["n"] == 1  # 3 images, the first 2 warm-ups dropped
    # Stage figures per phase, never pooled: the latency phase's come from its own images only.
    assert {"decode", "segment", "hide", "pack", "seal"} <= set(current["stages_ms_p50"]["latency"])
    assert {"decode", "segment", "seal"} <= set(current["stages_ms_p50"]["burst"])
    assert set(result["floors_ms"]) >= {"mqtt hop (input)", "mqtt hop (envelope)", "network alone (envelope)",
                                        "model alone", "compression alone", "cipher alone", "spool commit"}
    assert all(f["n"] == 2 for f in result["floors_ms"].values())  # the warm-up round's sample dropped
    summary = result["summary"]
    assert summary["sum_of_floors_ms"] == pytest.approx(
        sum(result["floors_ms"][n]["p50"] for n in summary["sum_of_floors_terms"])
    )
    assert summary["e2e_p50_over_sum_of_floors"] > 0 and summary["images_per_s_over_cpu_floor_capacity"] > 0
    # The bound that cannot flatter: the model's term is the smaller of its floor and the daemon's own stage.
    model, segment = result["floors_ms"]["model alone"]["p50"], current["stages_ms_p50"]["latency"]["segment"]
    lower = summary["sum_of_floors_ms"] - model + min(model, segment)
    assert summary["e2e_p50_over_sum_of_floors_lower_model"] == pytest.approx(current["latency_ms"]["p50"] / lower)
    assert summary["e2e_p50_over_sum_of_floors_lower_model"] >= summary["e2e_p50_over_sum_of_floors"]
    assert result["machine"]["usable_cores"] >= 1 and len(result["load_average"]["before"]) == 3
    assert "unsigned" in result["inputs"]["format"] and result["inputs"]["distinct_slices"] >= 48
    assert result["overload"]["images"] == 6
    # The C-STORE intake: the same daemon fed by a modality, its answer time and its own floor sum.
    cstore = result["variants"]["cstore"]
    assert cstore["latency_ms"]["n"] == 1 and cstore["answer_ms"]["n"] == 1
    assert cstore["answer_ms"]["p50"] > 0
    assert {"decode", "segment", "seal"} <= set(cstore["stages_ms_p50"]["burst"])
    assert summary["cstore"]["sum_of_floors_terms"][0] == "c-store hop (input)"
    assert summary["cstore"]["sum_of_floors_ms"] == pytest.approx(
        sum(result["floors_ms"][n]["p50"] for n in summary["cstore"]["sum_of_floors_terms"])
    )
    assert "base" not in summary["cstore"]  # no base tree in this run
    assert not (quick_run / "pids.json").exists()


def test_a_base_without_c_store_intake_is_said_to_have_none(tmp_path: Path) -> None:
    from medshield_tools.bench.daemon import CSTORE_LISTENER, cstore_base_note

    assert "no C-STORE intake" in cstore_base_note(tmp_path)
    (tmp_path / CSTORE_LISTENER).parent.mkdir(parents=True)
    (tmp_path / CSTORE_LISTENER).write_text("")
    assert "no C-STORE intake" not in cstore_base_note(tmp_path)


def test_an_existing_result_is_never_overwritten(quick_run: Path) -> None:
    before = (quick_run / "daemon.json").read_bytes()
    assert main(["bench", "--daemon", "--quick", "--out", str(quick_run)]) == 2
    assert (quick_run / "daemon.json").read_bytes() == before


def test_killing_the_harness_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    harness = subprocess.Popen(
        [sys.executable, "-m", "gateway", "bench", "--daemon", "--quick", "--rounds", "3", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    pids: list[int] = []
    deadline = time.monotonic() + 120
    try:
        # Both variants' runners and their four brokers started: the harness is mid-run.
        while len(pids) < 6 and time.monotonic() < deadline and harness.poll() is None:
            time.sleep(0.2)
            try:
                pids = json.loads((out / "pids.json").read_text())
            except (FileNotFoundError, ValueError):
                pids = []
        assert len(pids) >= 6, f"the harness did not start its processes: {pids}"
        assert all(_alive(p) for p in pids)
    finally:
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if _alive(p)] == []
