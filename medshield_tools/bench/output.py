"""Writing a benchmark result: CSV (one row per measurement and stage), JSON (everything, with the machine and
raw samples) and PNG plots (latency vs size, throughput vs size, stage breakdown)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medshield_tools.bench.harness import FORWARD, INGEST, BenchResult, Measurement
from medshield_tools.bench.stats import Summary

SCHEMA = "medshield-bench/1"
CSV_NAME, JSON_NAME, SUMMARY_NAME = "bench.csv", "bench.json", "summary.md"
PLOT_NAMES = ("latency_vs_size.png", "throughput_vs_size.png", "stage_breakdown.png")
WARMUP_NOTE = (
    "The first {warmup} repetitions of every measurement are warm-up runs: executed, then discarded; "
    "no figure includes them."
)
CSV_FIELDS = (
    "size", "bits", "kind", "name", "suite", "backend", "stage", "n", "warmup",
    "p50_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ci_low_ms", "p50_ci_high_ms",
    "throughput_per_s", "pixel_mb_per_s", "payload_bytes", "input_bytes", "peak_memory_mb",
)  # fmt: skip
# Leaf stages of a pipeline run, in the order they happen; they add up to the end-to-end time.
PIPELINE_LEAVES = (
    INGEST, "decode", "segment", "keys", "hide", "pack", "seal.search", "seal.encrypt", "seal.other", FORWARD,
)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def _pixel_bytes(m: Measurement) -> int:
    return m.size * m.size * (m.bits // 8)


def _row(m: Measurement, stage: str, s: Summary) -> dict[str, Any]:
    return {
        "size": m.size,
        "bits": m.bits,
        "kind": m.kind,
        "name": m.name,
        "suite": m.suite or "",
        "backend": m.backend or "",
        "stage": stage,
        "n": s.n,
        "warmup": s.warmup,
        "p50_ms": _ms(s.p50),
        "p95_ms": _ms(s.p95),
        "p99_ms": _ms(s.p99),
        "mean_ms": _ms(s.mean),
        "std_ms": _ms(s.std),
        "min_ms": _ms(s.min),
        "max_ms": _ms(s.max),
        "p50_ci_low_ms": _ms(s.p50_ci_low),
        "p50_ci_high_ms": _ms(s.p50_ci_high),
        "throughput_per_s": round(s.throughput, 4),
        "pixel_mb_per_s": round(_pixel_bytes(m) / s.p50 / 1e6, 4) if s.p50 > 0 else "",
        "payload_bytes": m.payload_bytes,
        "input_bytes": m.input_bytes,
        "peak_memory_mb": round(m.peak_memory_bytes / 2**20, 3)
        if m.peak_memory_bytes is not None and stage == "total"
        else "",
    }


def rows(result: BenchResult) -> Iterable[dict[str, Any]]:
    """One row per measurement's total and per stage."""
    for m in result.measurements:
        yield _row(m, "total", m.total)
        for stage in sorted(m.series.stages):
            summary = m.stage(stage)
            if summary is not None:
                yield _row(m, stage, summary)


def write_csv(result: BenchResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows(result):
            writer.writerow(row)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(result: BenchResult) -> dict[str, Any]:
    config = asdict(result.config)
    measurements = []
    for m in result.measurements:
        measurements.append(
            {
                "size": m.size,
                "bits": m.bits,
                "kind": m.kind,
                "name": m.name,
                "suite": m.suite,
                "backend": m.backend,
                "payload_bytes": m.payload_bytes,
                "input_bytes": m.input_bytes,
                "peak_memory_bytes": m.peak_memory_bytes,
                "info": m.info,
                "total": m.total.as_dict(),
                "stages": {k: s.as_dict() for k in sorted(m.series.stages) if (s := m.stage(k)) is not None},
                "samples_s": {
                    "total": [round(v, 7) for v in m.series.total],
                    **{k: [round(v, 7) for v in vals] for k, vals in sorted(m.series.stages.items())},
                },
            }
        )
    doc: dict[str, Any] = _clean(
        {
            "schema": SCHEMA,
            "started": result.started,
            "finished": result.finished,
            "wall_s": round(result.wall_s, 3),
            "machine": result.machine,
            "config": config,
            "warmup": WARMUP_NOTE.format(warmup=result.config.rule.warmup),
            "mask_source": result.mask_source,
            "images": result.images,
            "peak_rss_bytes": result.peak_rss_bytes,
            "skipped": result.skipped,
            "ratios": result.ratios(),
            "measurements": measurements,
        }
    )
    return doc


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(to_json(result), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Plots


def _primary_backend(result: BenchResult) -> str | None:
    for m in result.measurements:
        if m.kind == "pipeline" and m.name == "pipeline":
            return m.backend
    return None


def _series_by_size(result: BenchResult, bits: int, pick: Any) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for size in result.config.sizes:
        value = pick(size, bits)
        if value is not None and value > 0:
            xs.append(size)
            ys.append(value)
    return xs, ys


DASHED_COLORS = ("#9a8c00", "#7f3fbf", "#bf3f3f", "#3f7fbf")


def _figure_legend(fig: Any, axes: Any) -> None:
    """One legend for the figure with every label any subplot used (subplots may lack some stages)."""
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen.keys()), loc="upper right", fontsize=7, bbox_to_anchor=(0.995, 0.93))


def _save_figure(fig: Any, path: Path, title: str, footer: str, rect: tuple[float, float, float, float]) -> Path:
    """Title, machine footer, layout, write at 90 dpi and release the figure; returns `path`."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.text(0.01, 0.005, footer, fontsize=7)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_plots(result: BenchResult, out_dir: Path) -> list[Path]:
    """The three PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = [plt.get_cmap("tab10")(i) for i in range(len(PIPELINE_LEAVES))]
    backend = _primary_backend(result)
    suites, bit_depths = result.config.suites, result.config.bits
    machine = result.machine.get("cpu_model", "?")
    footer = (f"{machine}, {result.machine.get('usable_cores')} cores; p50; warm-up excluded; "
              f"backend: {backend or 'reference mask'}")
    written = []

    def pipe(size: int, bits: int, suite: str, name: str = "pipeline") -> Measurement | None:
        return result.find(size, bits, "pipeline", name, suite, backend)

    # 1. Latency vs size, log-log, one line per stage and the total; floors and the alternative dashed.
    fig, axes = plt.subplots(
        len(bit_depths), len(suites), figsize=(6 * len(suites), 4.2 * len(bit_depths)), squeeze=False
    )
    for r, bits in enumerate(bit_depths):
        for c, suite in enumerate(suites):
            ax = axes[r][c]
            xs, ys = _series_by_size(result, bits, lambda s, b, suite=suite: (m := pipe(s, b, suite)) and m.total.p50)
            ax.plot(xs, ys, "k-o", lw=2.2, label="end to end")
            for i, stage in enumerate(PIPELINE_LEAVES):
                xs, ys = _series_by_size(
                    result,
                    bits,
                    lambda s, b, suite=suite, stage=stage: (
                        (m := pipe(s, b, suite)) and (st := m.stage(stage)) and st.p50
                    ),
                )
                if xs:
                    ax.plot(xs, ys, "-", marker=".", lw=1, color=colors[i], label=stage)
            dashed = [
                ("alternative", "aes-gcm-forward", None, None, "AES-GCM forward (alternative)"),
                ("floor", "model", None, backend, "floor: model"),
                (
                    "floor",
                    {"sbbe-blowfish": "blowfish-ctr", "aes-256-siv": "aes-siv"}[suite],
                    suite,
                    None,
                    "floor: cipher",
                ),
                ("floor", "mqtt-envelope", suite, None, "floor: MQTT hop"),
            ]
            for j, (kind, name, s_suite, s_backend, label) in enumerate(dashed):
                xs, ys = _series_by_size(
                    result,
                    bits,
                    lambda s, b, k=(kind, name, s_suite, s_backend): (m := result.find(s, b, *k)) and m.total.p50,
                )
                if xs:
                    ax.plot(xs, ys, "--", lw=1.4, color=DASHED_COLORS[j], label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("image side (pixels)")
            ax.set_ylabel("latency p50 (s)")
            ax.set_title(f"{suite}, {bits}-bit")
            ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    written.append(_save_figure(fig, out_dir / PLOT_NAMES[0], "MedShield latency vs image size", footer,
                                (0, 0.02, 0.82, 0.97)))

    # 2. Throughput vs size: images per second and pixel megabytes per second (single stream).
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for bits in bit_depths:
        for suite in suites:
            xs, ys = _series_by_size(
                result, bits, lambda s, b, suite=suite: (m := pipe(s, b, suite)) and m.total.throughput
            )
            axes[0].plot(xs, ys, "-o", label=f"pipeline {suite} {bits}-bit")
            xs, ys = _series_by_size(
                result, bits, lambda s, b, suite=suite: (m := pipe(s, b, suite)) and s * s * b / 8 / m.total.p50 / 1e6
            )
            axes[1].plot(xs, ys, "-o", label=f"pipeline {suite} {bits}-bit")
        xs, ys = _series_by_size(
            result, bits, lambda s, b: (m := result.find(s, b, "alternative", "aes-gcm-forward")) and m.total.throughput
        )
        axes[0].plot(xs, ys, "--", label=f"AES-GCM forward {bits}-bit")
        xs, ys = _series_by_size(
            result,
            bits,
            lambda s, b: (
                (m := result.find(s, b, "alternative", "aes-gcm-forward")) and s * s * b / 8 / m.total.p50 / 1e6
            ),
        )
        axes[1].plot(xs, ys, "--", label=f"AES-GCM forward {bits}-bit")
    for ax, label in zip(axes, ("images per second (1 / mean)", "pixel data MB/s (at p50)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image side (pixels)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    written.append(_save_figure(fig, out_dir / PLOT_NAMES[1],
                                "Throughput vs image size (one stream, end to end through mosquitto)", footer,
                                (0, 0.02, 1, 0.95)))

    # 3. Stage breakdown: share of each leaf stage's median, per size.
    fig, axes = plt.subplots(
        len(bit_depths), len(suites), figsize=(6 * len(suites), 3.6 * len(bit_depths)), squeeze=False
    )
    for r, bits in enumerate(bit_depths):
        for c, suite in enumerate(suites):
            ax = axes[r][c]
            labels: list[str] = []
            sizes = [s for s in result.config.sizes if pipe(s, bits, suite) is not None]
            shares: dict[str, list[float]] = {stage: [] for stage in PIPELINE_LEAVES}
            for size in sizes:
                m = pipe(size, bits, suite)
                assert m is not None
                medians = {stage: (st.p50 if (st := m.stage(stage)) else 0.0) for stage in PIPELINE_LEAVES}
                whole = sum(medians.values()) or 1.0
                for stage in PIPELINE_LEAVES:
                    shares[stage].append(100.0 * medians[stage] / whole)
                labels.append(f"{size}²\n{m.total.p50 * 1000:.0f} ms")
            lefts = [0.0] * len(sizes)
            for i, stage in enumerate(PIPELINE_LEAVES):
                if any(shares[stage]):
                    ax.barh(labels, shares[stage], left=lefts, color=colors[i], label=stage)
                    lefts = [a + b for a, b in zip(lefts, shares[stage], strict=True)]
            ax.set_xlim(0, 100)
            ax.set_xlabel("share of end-to-end median (%)")
            ax.set_title(f"{suite}, {bits}-bit")
    _figure_legend(fig, axes)
    written.append(_save_figure(fig, out_dir / PLOT_NAMES[2], "Where the time goes (per stage, p50)", footer,
                                (0, 0.02, 0.84, 0.96)))
    return written


def summary_markdown(result: BenchResult) -> str:
    """The run in two Markdown tables (end to end with ratios; where the time goes) plus the floors."""
    m = result.machine
    gpus = ", ".join(g["name"] for g in m.get("gpus") or []) or "none"
    machine_line = (
        f"{m.get('cpu_model')}, {m.get('usable_cores')} usable cores, GPUs: {gpus}; Python {m.get('python')}; "
        f"load average at start {m.get('load_average_at_start')}. {m.get('note') or ''}"
    )
    segmentation = "; ".join(f"{k}: {v}" for k, v in result.mask_source.items())
    run_line = (
        f"Started {result.started}, {result.wall_s:.0f} s. {WARMUP_NOTE.format(warmup=result.config.rule.warmup)} "
        f"Segmentation: {segmentation}."
    )
    header = (
        "| size | bits | suite | backend | e2e p50 ms | p95 ms | p99 ms | n | protect p50 ms | pipeline / floors "
        "| pipeline / AES-GCM fwd | AES-GCM fwd ms | search N=20 ms | search N=50 ms | SBBE seal N=50 ms (× 0.67 s) "
        "| peak MB |"
    )
    lines = [
        "# MedShield benchmark summary",
        "",
        machine_line,
        "",
        run_line,
        "",
        "## End to end (scanner publish → envelope delivered), p50 with p95/p99, and ratios",
        "",
        header,
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.ratios():
        p = result.find(r["size"], r["bits"], "pipeline", "pipeline", r["suite"], r["backend"])
        assert p is not None
        t, protect = p.total, p.stage("protect")
        sbbe = r["suite"] == "sbbe-blowfish" and "sbbe_paper_p50_s" in r
        lines.append(
            f"| {r['size']}² | {r['bits']} | {r['suite']} | {r['backend'] or 'reference mask'} | {t.p50 * 1e3:.1f} "
            f"| {t.p95 * 1e3:.1f} | {t.p99 * 1e3:.1f} | {t.n} | {(protect.p50 if protect else math.nan) * 1e3:.1f} "
            f"| {r['pipeline_over_floors']:.2f} | {r['pipeline_over_alternative']:.2f} "
            f"| {r['alternative_p50_s'] * 1e3:.1f} "
            + (
                f"| {r['search_p50_s'] * 1e3:.1f} | {r['search_paper_p50_s'] * 1e3:.1f} "
                f"| {r['sbbe_paper_p50_s'] * 1e3:.1f} ({r['sbbe_paper_over_0.67s']:.3f}) "
                if sbbe
                else "| – | – | – "
            )
            + f"| {(p.peak_memory_bytes or 0) / 2**20:.0f} |"
        )
    lines += [
        "",
        "## Where the time goes (p50 per stage, ms)",
        "",
        "| size | bits | suite | " + " | ".join(PIPELINE_LEAVES) + " |",
        "|---:|---:|---|" + "---:|" * len(PIPELINE_LEAVES),
    ]
    for r in result.ratios():
        p = result.find(r["size"], r["bits"], "pipeline", "pipeline", r["suite"], r["backend"])
        assert p is not None
        cells = [f"{st.p50 * 1e3:.1f}" if (st := p.stage(leaf)) else "–" for leaf in PIPELINE_LEAVES]
        lines.append(f"| {r['size']}² | {r['bits']} | {r['suite']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Floors and the alternative (p50, ms)",
        "",
        "| size | bits | case | suite / backend | payload bytes | p50 ms | n |",
        "|---:|---:|---|---|---:|---:|---:|",
    ]
    for f in result.measurements:
        if f.kind != "pipeline":
            lines.append(
                f"| {f.size}² | {f.bits} | {f.name} | {f.suite or f.backend or ''} | {f.payload_bytes} "
                f"| {f.total.p50 * 1e3:.2f} | {f.total.n} |"
            )
    for skip in result.skipped:
        lines.append(f"\nSkipped: {skip['case']} {skip['suite']} {skip['backend']} {skip['image']} ({skip['reason']}).")
    return "\n".join(lines) + "\n"


def write_all(result: BenchResult, out_dir: Path, plots: bool = True) -> list[Path]:
    """CSV, JSON, a Markdown summary and (unless `plots` is False) the PNGs into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / CSV_NAME, out_dir / JSON_NAME, out_dir / SUMMARY_NAME]
    write_csv(result, written[0])
    write_json(result, written[1])
    written[2].write_text(summary_markdown(result), encoding="utf-8")
    if plots:
        written += write_plots(result, out_dir)
    return written


def summary_lines(result: BenchResult) -> list[str]:
    """A short human summary: end-to-end p50 per size and the ratios, then any skipped case."""
    lines = []
    for ratio in result.ratios():
        line = (
            f"{ratio['size']:>5}² {ratio['bits']:>2}-bit {ratio['suite']:<13} "
            f"{ratio['backend'] or 'reference mask':<14} "
            f"e2e p50 {ratio['pipeline_p50_s'] * 1000:9.1f} ms | /floors {ratio['pipeline_over_floors']:6.2f} "
            f"| /AES-GCM fwd {ratio['pipeline_over_alternative']:6.2f}"
        )
        if "sbbe_paper_p50_s" in ratio:
            line += (f" | SBBE N={ratio['paper_population']} {ratio['sbbe_paper_p50_s'] * 1000:7.1f} ms "
                     f"(= {ratio['sbbe_paper_over_0.67s']:.3f} × 0.67 s)")
        lines.append(line)
    for skip in result.skipped:
        lines.append(f"skipped: {skip['case']} {skip['suite']} {skip['backend']} {skip['image']}: {skip['reason']}")
    return lines
