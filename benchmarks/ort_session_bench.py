"""ONNX Runtime CPU session settings for DS-Net: intra-op spinning on/off, one shared session vs one per worker.

    .venv/bin/python benchmarks/ort_session_bench.py [--rounds 8] [--per-round 30] [--gap-ms 5]
                                                      [--out benchmarks/results/ort_session.json]

The network alone (runner.run on a preprocessed real lung1 slice, 1x1x256x256), CPU execution provider. Cases
run round-robin in one process, `--per-round` inferences each per round, so machine drift falls on every case
alike. Between inferences each caller sleeps `--gap-ms`, standing for the rest of the pipeline (decode, hide,
seal): spinning threads keep burning CPU in that gap, which back-to-back timing would hide. CPU time is the
process's user + system time (every thread) over the case's block, divided by its inferences. Two-caller
cases use two threads, as the daemon's `limits.workers: 2` does.

On a machine shared with other jobs only the ratios between cases mean anything; the JSON records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.inference.ort_cpu import OrtCpuRunner
from gateway.resources import MODELS_DIR, shared_data_dir
from gateway.segment import preprocess_hu
from medshield_tools.bench.machine import describe
from medshield_tools.bench.stats import latency_ms

MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"


@dataclass(frozen=True)
class Case:
    name: str
    callers: int
    threads: int
    spinning: bool
    shared: bool  # one session for every caller, else one session per caller


CASES = (
    Case("1 caller, 2 threads, spinning on", 1, 2, True, True),
    Case("1 caller, 2 threads, spinning off", 1, 2, False, True),
    Case("2 callers, shared session, 2 threads, spinning on", 2, 2, True, True),
    Case("2 callers, shared session, 2 threads, spinning off", 2, 2, False, True),
    Case("2 callers, session per caller, 1 thread each, spinning off", 2, 1, False, False),
    Case("2 callers, session per caller, 2 threads each, spinning off", 2, 2, False, False),
)


@dataclass
class Samples:
    latency_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    inferences: int = 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_block(sessions: list[OrtCpuRunner], x: np.ndarray, per_caller: int, gap_s: float, out: Samples) -> None:
    lock = threading.Lock()

    def caller(runner: OrtCpuRunner) -> None:
        mine = []
        for _ in range(per_caller):
            t0 = time.perf_counter()
            runner.run(x)
            mine.append(time.perf_counter() - t0)
            time.sleep(gap_s)
        with lock:
            out.latency_s.extend(mine)

    threads = [threading.Thread(target=caller, args=(s,)) for s in sessions]
    c0, w0 = cpu_seconds(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.cpu_s += cpu_seconds() - c0
    out.wall_s += time.perf_counter() - w0
    out.inferences += per_caller * len(sessions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=30, help="inferences per caller per case per round")
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--note", default="2-core machine shared with other engineers' tests and training: "
                                          "only ratios between cases count")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ort_session.json"))
    args = parser.parse_args()
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as d:
        x = preprocess_hu(d["image_hu"][33])[None, None]
    setups = {}
    for case in CASES:
        count = 1 if case.shared else case.callers
        made = [OrtCpuRunner(MODEL, threads=case.threads, spinning=case.spinning) for _ in range(count)]
        for runner in made:
            runner.warmup(3)
        setups[case.name] = made * case.callers if case.shared else made
    samples = {case.name: Samples() for case in CASES}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_start = os.getloadavg()
    for r in range(args.rounds):
        order = CASES if r % 2 == 0 else tuple(reversed(CASES))  # alternate so no case always follows another
        for case in order:
            run_block(setups[case.name], x, args.per_round, args.gap_ms / 1e3, samples[case.name])
    results = {}
    for case in CASES:
        s = samples[case.name]
        results[case.name] = {
            "callers": case.callers, "intra_op_threads": case.threads, "spinning": case.spinning,
            "sessions": 1 if case.shared else case.callers,
            "latency": latency_ms(s.latency_s),
            "cpu_ms_per_inference": round(1e3 * s.cpu_s / s.inferences, 3),
            "inferences_per_s": round(s.inferences / s.wall_s, 2),
        }
    base = results[CASES[0].name]
    for r in results.values():
        r["p50_vs_case0"] = round(r["latency"]["p50_ms"] / base["latency"]["p50_ms"], 3)
        r["cpu_vs_case0"] = round(r["cpu_ms_per_inference"] / base["cpu_ms_per_inference"], 3)
    report = {
        "benchmark": "DS-Net network alone (256²), ONNX Runtime CPU session settings, interleaved",
        "when_utc": started, "rounds": args.rounds, "per_round": args.per_round, "gap_ms": args.gap_ms,
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "machine": describe(note=args.note), "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:62s} p50 {r['latency']['p50_ms']:7.2f} p95 {r['latency']['p95_ms']:7.2f} ms  "
              f"cpu {r['cpu_ms_per_inference']:7.2f} ms/inf  {r['inferences_per_s']:7.1f} inf/s")


if __name__ == "__main__":
    main()
