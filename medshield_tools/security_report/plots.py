"""The report's figures (PNG, matplotlib from the `reports` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway import image_metrics as metrics
from medshield_tools.security_report.analysis import ALPHA, ImageReport, body_array, body_square, fmt

SCATTER_PAIRS = 3000


def _histogram_values(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    bits = 8 * pixels.dtype.itemsize
    return pixels.reshape(-1), (1 << bits)


def write_plots(reports: Sequence[ImageReport], out_dir: Path, prefix: str = "") -> list[Path]:
    """Histograms plain vs cipher (paper Fig. 10), adjacent-pair scatter plots plain vs cipher (H/V/D), and
    for several changes the NPCR/UACI of each against the critical values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = len(reports)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.3 * rows), squeeze=False)
    for row, rep in enumerate(reports):
        values, levels = _histogram_values(rep.plain_pixels)
        ax = axes[row][0]
        bins = 256 if levels == 256 else 512
        ax.hist(values, bins=bins, range=(0, int(values.max()) + 1 if levels > 256 else 256), color="#555555")
        ax.set_title(f"{rep.name}: plain ({rep.bits}-bit)", fontsize=8)
        ax.tick_params(labelsize=6)
        ax = axes[row][1]
        ax.bar(np.arange(256), np.bincount(body_array(rep.body), minlength=256), width=1.0, color="#2a6fb0")
        ax.set_title(
            f"cipher body bytes (entropy {rep.entropy_body:.4f}, χ² p={rep.chi2_body['p_value']:.3f})", fontsize=8
        )
        ax.set_xlim(0, 256)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = out_dir / f"{prefix}histograms.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    rep = reports[0]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.5))
    rng = np.random.default_rng(0)
    for row, (label, image) in enumerate((("plain", rep.plain_pixels), ("cipher body", body_square(rep.body)))):
        corr = rep.correlation_plain if row == 0 else rep.correlation_body
        for col, (direction, (dy, dx)) in enumerate(
            (("horizontal", (0, 1)), ("vertical", (1, 0)), ("diagonal", (1, 1)))
        ):
            h, w = image.shape[0] - dy, image.shape[1] - dx
            ys, xs = rng.integers(0, h, SCATTER_PAIRS), rng.integers(0, w, SCATTER_PAIRS)
            ax = axes[row][col]
            ax.scatter(image[ys, xs], image[ys + dy, xs + dx], s=1, alpha=0.4)
            ax.set_title(f"{label} {direction}: r = {fmt(corr[direction])}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"Adjacent-pixel correlation, {rep.name} ({SCATTER_PAIRS} random pairs each)", fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{prefix}correlation_scatter.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    if sum(len(r.differentials) for r in reports) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for r in reports:
            axes[0].scatter(
                [d.compared_bytes for d in r.differentials], [d.npcr for d in r.differentials], s=6, label=r.name
            )
            axes[1].scatter(
                [d.compared_bytes for d in r.differentials], [d.uaci for d in r.differentials], s=6, label=r.name
            )
        ns = np.unique([d.compared_bytes for r in reports for d in r.differentials])
        grid = np.geomspace(max(1, ns.min()), ns.max(), 50) if ns.size > 1 else ns.astype(float)
        crit = [metrics.wna_critical_values(int(n), 8, ALPHA) for n in grid]
        axes[0].plot(grid, [c.npcr for c in crit], "r--", label=f"NPCR* (α={ALPHA})")
        axes[1].plot(grid, [c.uaci_low for c in crit], "r--", label=f"UACI bounds (α={ALPHA})")
        axes[1].plot(grid, [c.uaci_high for c in crit], "r--")
        for ax, label in zip(axes, ("NPCR (%)", "UACI (%)"), strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("cipher bytes compared")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
        axes[1].legend(fontsize=6, loc="upper right")
        fig.suptitle("One-pixel changes: NPCR and UACI of the cipher bodies vs Wu–Noonan–Agaian bounds", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{prefix}npcr_uaci.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
