"""Post-processing rules against false lesions, measured as served, with what each costs in recall.

    .venv/bin/python -m models.dsnet.postprocess_study --data runs/data-real [--model DIR] [--out FILE]

The network runs once per validation slice (lung1, ts_domes: the validation patients) and per generated
validation slice; each rule is then applied to the gated components on the network's canvas before the
probability map goes back to the slice's resolution, exactly where `gateway.segment.Segmenter` would apply
it. For each rule: lung1's Dice, lesions found and recall over 10 mm, the clean tumour-free slices of both
patients, and two subsets a shape, size or position rule could hurt: lesions against the lung wall (their
2-pixel ring on the canvas reaches outside the lung field) and lesions of 20 mm or more, on lung1's
inserted lesions and the generated phantoms together. Rules are chosen on the validation patients, so any
rule adopted from this study makes their figures optimistic.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.segment import (
    GATE_MIN_BORDER_IN_LUNG,
    Canvas,
    Segmenter,
    canvas_to_mask,
    gate_to_lung,
    lung_field,
    make_canvas,
    mask_to_canvas,
    run_tiled,
    zscore,
)
from models.dsnet.evaluate import GEN_SPACING_MM, Tally

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Served:
    """One slice as the network saw it: its set, canvas, probability map and reference mask."""

    name: str
    inserted: bool
    canvas: Canvas
    prob: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float]

    @property
    def canvas_px_mm2(self) -> float:
        """Area of one canvas pixel in mm² (coarser than the network's pixel for bodies fitted into it)."""
        (h, w), (rh, rw) = self.canvas.shape, self.canvas.resampled_shape
        return self.spacing[0] * h / rh * self.spacing[1] * w / rw


Keep = Callable[[np.ndarray, Served, np.ndarray], bool]
"""(component mask on the canvas, the slice, its lung field) -> keep the component."""


def network_outputs(seg: Segmenter, data: Path) -> list[Served]:
    """The canvas and ungated probability of every validation and generated validation slice."""
    items: list[tuple[str, bool, np.ndarray, np.ndarray, tuple[float, float]]] = []
    with np.load(data / "val_real.npz") as d:
        for i in range(d["hu"].shape[0]):
            items.append((str(d["patient"][i]), bool(d["inserted"][i]), d["hu"][i], d["mask"][i].astype(bool),
                          (float(d["spacing"][i][0]), float(d["spacing"][i][1]))))
    with np.load(data / "gen_val.npz") as d:
        for i in range(d["hu"].shape[0]):
            items.append(("generated", False, d["hu"][i], d["mask"][i].astype(bool), (GEN_SPACING_MM, GEN_SPACING_MM)))
    out = []
    for name, inserted, hu, truth, sp in items:
        arr = hu.astype(np.float32)
        canvas = make_canvas(arr, seg.spacing_for(arr.shape, sp), seg.manifest.pixel_spacing_mm,
                             seg.manifest.hu_window, seg.size, fit=seg.manifest.fit_body_to_input)
        out.append(Served(name, inserted, canvas, run_tiled(seg.runner.run, zscore(canvas.windowed), seg.size),
                          truth, sp))
    return out


def soft_cover(comp: np.ndarray, canvas: Canvas, field: np.ndarray) -> float:
    """Share of the soft tissue (> -500 HU) in the lung field connected to `comp` that `comp` covers: low for
    a piece of a vessel running on, high for an isolated nodule."""
    soft = ((canvas.windowed > -500.0) & field).astype(np.uint8)
    _n, labels = cv2.connectedComponents(soft, connectivity=8)
    ids = np.unique(labels[comp])
    blob = np.isin(labels, ids[ids > 0]) | comp
    return float(comp.sum()) / float(blob.sum())


def rules() -> dict[str, tuple[float, Keep | None, float]]:
    """name -> (threshold, component rule or None, the gate's least share of lung in a component's ring)."""
    wall = GATE_MIN_BORDER_IN_LUNG
    out: dict[str, tuple[float, Keep | None, float]] = {"as served (threshold 0.8)": (0.8, None, wall)}
    for th in (0.85, 0.9, 0.95):
        out[f"threshold {th}"] = (th, None, wall)
    for a in (8.0, 16.0, 25.0):
        out[f"drop components < {a:.0f} mm²"] = (0.8, lambda c, s, f, a=a: c.sum() * s.canvas_px_mm2 >= a, wall)
    for ring in (0.4, 0.5):
        out[f"gate's wall rule at {ring:.0%} of the ring in the lung field (served: {wall:.0%})"] = (0.8, None, ring)
    out["gate without its wall rule (>= half inside the lung field only)"] = (0.8, None, np.inf)
    for h in (-550.0, -450.0):
        out[f"drop components of mean HU < {h:.0f}"] = (0.8, lambda c, s, f, h=h: s.canvas.windowed[c].mean() >= h,
                                                              wall)
    for cov in (0.2, 0.3, 0.45):
        out[f"drop lung-field components covering < {cov:.0%} of their soft-tissue blob (vessel pieces)"] = (
            0.8, lambda c, s, f, cov=cov: f[c].mean() < 0.5 or soft_cover(c, s.canvas, f) >= cov, wall)
    return out


def apply(served: list[Served], threshold: float, keep: Keep | None, min_ring: float) -> dict[str, Any]:
    """Tallies per set with one rule, plus found/total for wall-touching and >= 20 mm reference lesions."""
    tallies: dict[str, Tally] = {}
    wall, large = [0, 0], [0, 0]
    for s in served:
        field = lung_field(s.canvas.windowed)
        pred = s.prob >= threshold
        gated = gate_to_lung(pred, field, min_border_in_lung=min_ring)
        if keep is not None:
            n, labels = cv2.connectedComponents(gated.astype(np.uint8), connectivity=8)
            for k in range(1, n):
                comp = labels == k
                if not keep(comp, s, field):
                    gated[comp] = False
        mask = canvas_to_mask(np.where(gated, s.prob, np.float32(0.0)).astype(np.float32), s.canvas, threshold)
        tallies.setdefault(s.name, Tally()).add(mask, s.truth, s.spacing)
        if s.name == "generated" or (s.name == "lung1" and s.inserted):
            ring_kernel = np.ones((5, 5), np.uint8)
            n, labels = cv2.connectedComponents(s.truth.astype(np.uint8), connectivity=8)
            for k in range(1, n):
                comp = labels == k
                hit = int(bool((mask & comp).any()))
                c = mask_to_canvas(comp, s.canvas)
                ring = (cv2.dilate(c.astype(np.uint8), ring_kernel) > 0) & ~c
                if c.any() and not field[ring].all():
                    wall[0] += hit
                    wall[1] += 1
                if 2 * np.sqrt(comp.sum() * s.spacing[0] * s.spacing[1] / np.pi) >= 20.0:
                    large[0] += hit
                    large[1] += 1
    res: dict[str, Any] = {k: t.summary() for k, t in tallies.items()}
    res["wall_lesions_found"] = wall
    res["lesions_20mm_found"] = large
    return res


def row(name: str, r: dict[str, Any]) -> str:
    lung1, domes = r["lung1"], r["ts_domes"]
    key = "tumour_free_slices_without_false_lesion_gt20px"
    clean = lung1[key] + domes[key]
    free = lung1["tumour_free_slices"] + domes["tumour_free_slices"]
    gen = r["generated"]
    return (f"| {name} | {lung1['lesion_slices']['dice']:.1f} | {lung1['lesions_found']} / {lung1['lesions']} | "
            f"{lung1['lesion_recall_over_10mm']:.2f} | {lung1['tumour_free_slices_without_false_lesion_gt20px']} / "
            f"{lung1['tumour_free_slices']}, {domes['tumour_free_slices_without_false_lesion_gt20px']} / "
            f"{domes['tumour_free_slices']} ({100 * clean / free:.0f} %) | {gen['lesion_recall_over_10mm']:.2f} | "
            f"{r['wall_lesions_found'][0]} / {r['wall_lesions_found'][1]} | "
            f"{r['lesions_20mm_found'][0]} / {r['lesions_20mm_found'][1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/data-real"))
    parser.add_argument("--model", type=Path, default=HERE, help="folder with dsnet.onnx and manifest.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for every figure")
    args = parser.parse_args()
    seg = Segmenter(args.model / "dsnet.onnx", args.model / "manifest.json", backend="cpu", threads=args.threads,
                    lung_gate=False)
    served = network_outputs(seg, args.data)
    print("| Rule | lung1 Dice | lung1 lesions found | lung1 recall > 10 mm | clean tumour-free slices lung1, "
          "ts_domes | generated recall > 10 mm | wall lesions found | lesions >= 20 mm found |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name, (th, keep, ring) in rules().items():
        results[name] = apply(served, th, keep, ring)
        print(row(name, results[name]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
