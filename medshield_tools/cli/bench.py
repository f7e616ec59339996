"""`medshield bench`: latency vs image size of the pipeline, its floors and the alternative, in one run."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from medshield_tools.bench.harness import PAPER_POPULATION, SUITES, BenchConfig
from medshield_tools.bench.stats import RepetitionRule

if TYPE_CHECKING:
    from tqdm import tqdm

COMMITTED_OUT = Path("benchmarks/results/bench")  # where the committed full run lives (written only with -o)
TMP_OUT = Path("benchmarks/results/tmp")  # ignored by git: a default run goes to a fresh directory here


def _fresh_out(kind: str) -> Path:
    """A new directory under benchmarks/results/tmp/, so a default run never overwrites a committed result."""
    from datetime import UTC, datetime

    return TMP_OUT / f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark latency vs image size (pipeline, floors, alternative) through a real mosquitto",
        description=__doc__,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions: seconds (smoke test)")
    parser.add_argument("--sizes", type=_ints, help="image sides in pixels (default 128,256,512,1024,2048)")
    parser.add_argument("--bits", type=_ints, help="bit depths, 8 and/or 16 (default 8,16)")
    parser.add_argument("--suites", type=_names, help=f"cipher suites (default {','.join(SUITES)})")
    parser.add_argument("--backends", type=_names, help="inference backends (default: every available one)")
    parser.add_argument(
        "--paper-population", type=int, default=PAPER_POPULATION,
        help="SBBE population of the paper's setting (0: do not measure that case)"
    )
    parser.add_argument("--budget", type=float, help="seconds of measured work per case (default 10)")
    parser.add_argument("--warmup", type=int, help="discarded warm-up repetitions per case (default 2)")
    parser.add_argument("--min-reps", type=int, help="at least this many timed repetitions (default 5)")
    parser.add_argument("--max-reps", type=int, help="at most this many timed repetitions (default 200)")
    parser.add_argument(
        "--target-ci", type=float, help="stop once the median's 95%% CI is within ± this fraction (default 0.02)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak-memory pass")
    parser.add_argument("--no-plots", action="store_true", help="CSV and JSON only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--note", help="free text stored with the machine description (e.g. 'shared CPU')")
    parser.add_argument(
        "-o", "--out", type=Path,
        help=f"output directory, refused if not empty (default: a fresh one under {TMP_OUT}/; the committed runs"
        f" live in {COMMITTED_OUT} and benchmarks/results/daemon)",
    )
    daemon = parser.add_argument_group(
        "daemon", "--daemon: the daemon itself through real mosquitto, interleaved with a base tree, the"
        " AES-GCM alternative and the floors (medshield_tools/bench/daemon.py)"
    )
    daemon.add_argument("--daemon", action="store_true", help="measure the daemon (512² 16-bit real CT)")
    daemon.add_argument("--base", type=Path, help="another checkout to compare with (its .venv is used)")
    daemon.add_argument("--base-python", type=Path, help="the base checkout's interpreter (default BASE/.venv)")
    daemon.add_argument("--rounds", type=int, help="measured rounds after the warm-up round (default 4)")
    daemon.add_argument("--latency-images", type=int, help="images per latency phase (default 12)")
    daemon.add_argument("--burst-images", type=int, help="images per burst phase (default 40)")
    daemon.add_argument("--overload-images", type=int, help="images in the final over-capacity burst (default 200)")
    daemon.add_argument("--workers", type=int, help="limits.workers for the daemons (default: their own default)")
    daemon.add_argument("--no-cstore", action="store_true", help="skip the C-STORE intake variant")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = BenchConfig.quick() if args.quick else BenchConfig()
    rule = config.rule
    rule = RepetitionRule(
        warmup=args.warmup if args.warmup is not None else rule.warmup,
        min_reps=args.min_reps if args.min_reps is not None else rule.min_reps,
        max_reps=args.max_reps if args.max_reps is not None else rule.max_reps,
        budget_s=args.budget if args.budget is not None else rule.budget_s,
        target_rel_ci=args.target_ci if args.target_ci is not None else rule.target_rel_ci,
    )
    if rule.warmup < 0 or rule.min_reps < 1 or rule.max_reps < rule.min_reps or rule.budget_s < 0:
        raise ConfigError("bench needs warmup >= 0, 1 <= min-reps <= max-reps and budget >= 0")
    suites = args.suites or config.suites
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite(s) {', '.join(unknown)} (choose from {', '.join(SUITES)})")
    bits = args.bits or config.bits
    if any(b not in (8, 16) for b in bits):
        raise ConfigError("--bits takes 8 and/or 16")
    return replace(
        config,
        sizes=args.sizes or config.sizes,
        bits=bits,
        suites=suites,
        backends=args.backends or None,
        paper_population=args.paper_population,
        rule=rule,
        memory=not args.no_memory,
        note=args.note,
    )


class _Bar:
    """tqdm over cases; the postfix shows the case being measured and its repetition count."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm[Any] | None = None

    def start(self, total_cases: int) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_cases, unit="case", desc="bench", file=sys.stderr, dynamic_ncols=True)

    def repetition(self, label: str, count: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{label} #{count}", refresh=False)
            self.bar.refresh()

    def case_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_daemon(args: argparse.Namespace) -> int:
    from gateway.resources import REPO_DIR
    from medshield_tools.bench.daemon import DaemonBenchConfig
    from medshield_tools.bench.daemon import run as run_daemon_bench

    fields: dict[str, object] = {
        "rounds": args.rounds, "latency_images": args.latency_images, "burst_images": args.burst_images,
        "overload_images": args.overload_images, "workers": args.workers, "base": args.base,
        "base_python": args.base_python, "note": args.note, "cstore": False if args.no_cstore else None,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    for name in ("rounds", "latency_images", "burst_images", "overload_images", "workers"):
        if name in given and int(given[name]) < (3 if name == "latency_images" else 1):  # type: ignore[call-overload]
            raise ConfigError(f"--{name.replace('_', '-')} is too small")
    config = DaemonBenchConfig.quick(**given) if args.quick else DaemonBenchConfig(**given)  # type: ignore[arg-type]
    out = args.out or _fresh_out("daemon")
    try:
        result = run_daemon_bench(config, out, REPO_DIR, Path(sys.executable))
    except FileExistsError as exc:
        raise ConfigError(str(exc)) from None
    s = result["summary"]
    for name, v in result["variants"].items():
        print(f"{name:12s} e2e p50 {v['latency_ms']['p50']:7.1f} ms  p95 {v['latency_ms']['p95']:7.1f} ms  "
              f"{v['images_per_s']['median']:6.1f} images/s  ({v['workers']} workers)")
    print(f"sum of floors {s['sum_of_floors_ms']:.1f} ms: e2e / floors = {s['e2e_p50_over_sum_of_floors']:.2f}"
          f" ({s['e2e_p50_over_sum_of_floors_lower_model']:.2f} with the daemon's segment stage where it was faster"
          f" than the model alone); "
          f"images/s / CPU-floor capacity = {s['images_per_s_over_cpu_floor_capacity']:.2f}; "
          f"seal p50 {s['seal_p50_ms']:.1f} ms")
    if "images_per_s_over_base" in s:
        print(f"against base: images/s x{s['images_per_s_over_base']:.2f}, e2e p50 x{s['e2e_p50_over_base']:.2f}")
    if "cstore" in s:
        c = s["cstore"]
        print(f"C-STORE intake: e2e / floors = {c['e2e_p50_over_sum_of_floors']:.2f}"
              f" (floors {c['sum_of_floors_ms']:.1f} ms), answer p50 {c['answer_p50_ms']:.1f} ms,"
              f" images/s x{c['images_per_s_over_mqtt_intake']:.2f}"
              f" of the MQTT intake{'; ' + c['base'] if 'base' in c else ''}")
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.daemon:
        return run_daemon(args)
    from medshield_tools.bench.harness import run as run_bench
    from medshield_tools.bench.output import summary_lines, write_all

    config = config_from_args(args)
    # The optional 'reports' extra is needed for plots and the progress bar: find out before minutes of work
    # (gateway.cli.main turns a missing one into a line naming the extra).
    if not args.no_plots:
        import matplotlib  # noqa: F401
    if not args.no_progress:
        import tqdm  # noqa: F401
    bar = _Bar(not args.no_progress)
    try:
        result = run_bench(config, progress=bar)
    finally:
        bar.close()
    out = args.out or _fresh_out("quick" if args.quick else "bench")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: a benchmark result is never overwritten")
    written = write_all(result, out, plots=not args.no_plots)
    print(f"warm-up: first {config.rule.warmup} repetitions of each case discarded; figures are p50 of the rest")
    for line in summary_lines(result):
        print(line)
    print(f"wrote {', '.join(str(p) for p in written)} ({result.wall_s:.1f} s)")
    return 0
