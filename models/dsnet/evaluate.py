"""Evaluate ONNX segmenters as served: through the gateway's own Segmenter, whole post-processing on.

    .venv/bin/python -m models.dsnet.evaluate --data runs/data-real [--compare old=/path/to/old/models]

For DS-Net and the U-Net baseline (and, with `--compare`, other exported models such as the previously
committed ones), on each real validation patient of `models.data.build` (native resolution, DICOM-style
PixelSpacing) and on held-out generated slices:

- Dice and precision (pixels pooled over the patient's lesion slices, and over all its slices);
- lesion-level recall by lesion size (a reference lesion, one 8-connected component, is found when the
  served mask touches it; size = equivalent diameter in mm);
- on tumour-free slices: the false-positive area per slice (mean, in px and mm²), the share of slices with no
  false component larger than 20 px, and the largest false component.

No torch: it runs in the gateway's venv. Writes results/eval_<model>.json, the `metrics` of each committed
manifest, and the tables in MODEL_CARD.md between the metrics markers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.image_metrics import ConfusionCounts, component_sizes, confusion_counts
from gateway.segment import Manifest, Segmenter, verify_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CARD = HERE / "MODEL_CARD.md"
MODELS = {"dsnet": (HERE / "dsnet.onnx", HERE / "manifest.json"),
          "unet": (HERE / "unet.onnx", HERE / "unet.manifest.json")}
GEN_SPACING_MM = 0.5703
FALSE_LESION_PX = 20
SIZE_BINS_MM = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 1e9))
TABLE_START = "<!-- metrics:start -->"
TABLE_END = "<!-- metrics:end -->"


def bin_name(lo: float, hi: float) -> str:
    return f"<{hi:.0f} mm" if lo == 0 else (f">={lo:.0f} mm" if hi > 1e8 else f"{lo:.0f}-{hi:.0f} mm")


class Tally:
    """Pixel counts, lesion hits by size and false positives on tumour-free slices, for one set of slices."""

    def __init__(self) -> None:
        self.lesion_px = ConfusionCounts()
        self.all_px = ConfusionCounts()
        self.bins = {bin_name(*b): [0, 0] for b in SIZE_BINS_MM}
        self.over10 = [0, 0]
        self.free = 0
        self.free_clean = 0
        self.free_fp_px: list[int] = []
        self.free_fp_mm2: list[float] = []
        self.largest_fp = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float]) -> None:
        c = confusion_counts(pred, truth)
        self.all_px = self.all_px + c
        px_mm2 = spacing[0] * spacing[1]
        if truth.any():
            self.lesion_px = self.lesion_px + c
            n, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
            for k in range(1, n):
                comp = labels == k
                d = 2 * np.sqrt(comp.sum() * px_mm2 / np.pi)
                hit = int(bool((pred & comp).any()))
                for lo, hi in SIZE_BINS_MM:
                    if lo <= d < hi:
                        self.bins[bin_name(lo, hi)][0] += hit
                        self.bins[bin_name(lo, hi)][1] += 1
                if d > 10:
                    self.over10[0] += hit
                    self.over10[1] += 1
        else:
            self.free += 1
            sizes = component_sizes(pred)
            self.free_clean += int(not sizes or sizes[0] <= FALSE_LESION_PX)
            self.free_fp_px.append(int(pred.sum()))
            self.free_fp_mm2.append(float(pred.sum()) * px_mm2)
            self.largest_fp = max(self.largest_fp, sizes[0] if sizes else 0)

    def summary(self) -> dict[str, Any]:
        counted = self.lesion_px.as_dict()
        lesion = (self.lesion_px.percentages() if sum(counted.values())
                  else None)
        found = sum(v[0] for v in self.bins.values())
        total = sum(v[1] for v in self.bins.values())
        return {
            "lesion_slices": ({"dice": round(lesion["dice"], 2), "precision": round(lesion["precision"], 2),
                               "recall": round(lesion["recall"], 2), "counts": counted} if lesion else None),
            "all_slices": {k: round(v, 3) for k, v in self.all_px.percentages().items()
                           if isinstance(v, float)},
            "lesions": total, "lesions_found": found,
            "lesion_recall": round(found / total, 3) if total else None,
            "lesion_recall_over_10mm": round(self.over10[0] / self.over10[1], 3) if self.over10[1] else None,
            "lesions_over_10mm": self.over10[1],
            "recall_by_size": {k: {"found": v[0], "lesions": v[1]} for k, v in self.bins.items()},
            "tumour_free_slices": self.free,
            "tumour_free_slices_without_false_lesion_gt20px": self.free_clean,
            "share_clean": round(self.free_clean / self.free, 3) if self.free else None,
            "false_positive_px_per_free_slice": round(float(np.mean(self.free_fp_px)), 1) if self.free else None,
            "false_positive_mm2_per_free_slice": round(float(np.mean(self.free_fp_mm2)), 1) if self.free else None,
            "largest_false_component_px": self.largest_fp,
        }


def evaluate_model(seg: Segmenter, data: Path) -> dict[str, Any]:
    """Every real validation slice and every generated validation slice, segmented as served."""
    tallies: dict[str, Tally] = {}
    with np.load(data / "val_real.npz") as d:
        hu, masks, spacing = d["hu"], d["mask"], d["spacing"]
        patients, inserted = d["patient"], d["inserted"]
    for i in range(hu.shape[0]):
        sp = (float(spacing[i][0]), float(spacing[i][1]))
        pred = seg.predict_hu(hu[i].astype(np.float32), sp)
        truth = masks[i].astype(bool)
        name = str(patients[i])
        tallies.setdefault(name, Tally()).add(pred, truth, sp)
        if name == "lung1" and truth.any():
            kind = "lung1_inserted" if inserted[i] else "lung1_real_nodule"
            tallies.setdefault(kind, Tally()).add(pred, truth, sp)
    with np.load(data / "gen_val.npz") as d:
        ghu, gmask = d["hu"], d["mask"]
    for i in range(ghu.shape[0]):
        pred = seg.predict_hu(ghu[i].astype(np.float32), (GEN_SPACING_MM, GEN_SPACING_MM))
        tallies.setdefault("generated", Tally()).add(pred, gmask[i].astype(bool), (GEN_SPACING_MM, GEN_SPACING_MM))
    return {name: t.summary() for name, t in tallies.items()}


LABELS = {"dsnet": "DS-Net", "unet": "U-Net"}


def _label(name: str) -> str:
    base, _, tag = name.partition("@")
    return LABELS.get(base, base) + (f" ({tag})" if tag else "")


def card_section(results: dict[str, dict[str, Any]], data_info: str) -> str:
    fmt = lambda v, p="{:.1f}": "-" if v is None else p.format(v)  # noqa: E731
    lines = [
        TABLE_START,
        "Generated by `python -m models.dsnet.evaluate` on " + data_info + ". Every figure is as served: "
        "`gateway.segment.Segmenter.predict_hu` with the slice's PixelSpacing (read only by models with a physical "
        "pixel size), the lung-field gate and each manifest's threshold (0.5 unless the card says otherwise), "
        "at the slice's own resolution. Dice and precision pool the pixels of a set's lesion slices; a lesion "
        "is found when the mask touches it.",
        "",
    ]
    sets = [("lung1", "lung1 (validation patient; all 48 real slices + inserted lesions)"),
            ("lung1_real_nodule", "lung1, the real nodule (slices 32-34; its shape was copied into training)"),
            ("lung1_inserted", "lung1, lesions inserted into its tumour-free slices (validation seed)"),
            ("ts_domes", "ts_domes (validation patient; 20 real tumour-free slices, liver/spleen domes)"),
            ("generated", "generated phantoms (100 slices, seed 7)")]
    lines += ["| Set | Model | Dice | Precision | Lesions found | Recall > 10 mm | "
              "Tumour-free slices without a false lesion > 20 px | False-positive mm² per tumour-free slice | "
              "Largest false component (px) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, title in sets:
        for name, res in results.items():
            r = res.get(key)
            if r is None:
                continue
            dice = r["lesion_slices"]["dice"] if r["lesions"] else None
            prec = r["lesion_slices"]["precision"] if r["lesions"] else None
            found = f"{r['lesions_found']} / {r['lesions']}" if r["lesions"] else "-"
            over = (f"{r['lesion_recall_over_10mm']:.2f} ({r['lesions_over_10mm']})"
                    if r["lesion_recall_over_10mm"] is not None else "-")
            clean = (f"{r['tumour_free_slices_without_false_lesion_gt20px']} / {r['tumour_free_slices']}"
                     if r["tumour_free_slices"] else "-")
            lines.append(f"| {title} | {_label(name)} | {fmt(dice)} | {fmt(prec)} | {found} | {over} | {clean} | "
                         f"{fmt(r['false_positive_mm2_per_free_slice'])} | {r['largest_false_component_px']} |")
    lines += ["", "Lesion-level recall by size (found / lesions):", "",
              "| Set | Model | " + " | ".join(bin_name(*b) for b in SIZE_BINS_MM) + " |",
              "|---|---|" + "---|" * len(SIZE_BINS_MM)]
    for key, title in sets:
        for name, res in results.items():
            r = res.get(key)
            if r is None or not r["lesions"]:
                continue
            cells = " | ".join(f"{v['found']} / {v['lesions']}" for v in r["recall_by_size"].values())
            lines.append(f"| {title} | {_label(name)} | {cells} |")
    lines.append(TABLE_END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/data-real"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", action="append", default=[],
                        help="TAG=DIR: also evaluate DIR/dsnet.onnx and DIR/unet.onnx (with their manifests), "
                             "reported as 'DS-Net (TAG)'; a folder may hold only one of the two")
    parser.add_argument("--no-write", action="store_true", help="print only; leave card, manifests and results")
    parser.add_argument("--results", action="append", default=[],
                        help="NAME=FILE: a result file written earlier by evaluate_model (e.g. a candidate model's), "
                             "put in the card's tables as NAME without re-running it")
    parser.add_argument("--without-gate", action="store_true",
                        help="also evaluate the committed models with the lung-field gate off ('no gate')")
    args = parser.parse_args()
    models = dict(MODELS)
    for spec in args.compare:
        tag, _, folder = spec.partition("=")
        if not any((Path(folder) / onnx.name).is_file() for onnx, _ in MODELS.values()):
            parser.error(f"--compare {spec}: {folder} holds neither {' nor '.join(o.name for o, _ in MODELS.values())}")
        for name, (onnx, manifest) in MODELS.items():
            other = Path(folder) / onnx.name
            # A missing model is not compared; the same weights again would only repeat a row.
            if other.is_file() and other.read_bytes() != onnx.read_bytes():
                models[f"{name}@{tag}"] = (other, Path(folder) / manifest.name)
    if args.without_gate:
        models.update({f"{name}@no gate": paths for name, paths in MODELS.items()})
    results: dict[str, dict[str, Any]] = {}
    for spec in args.results:  # measured earlier: not run again (a committed model's name keeps its place)
        tag, _, path = spec.partition("=")
        results[tag] = json.loads(Path(path).read_text())
    for name, (onnx, manifest_path) in models.items():
        if name in results:
            if name in MODELS and not args.no_write:
                verify_model(onnx, Manifest.load(manifest_path))
                raw = json.loads(manifest_path.read_text())
                raw["metrics"] = results[name]
                manifest_path.write_text(json.dumps(raw, indent=2) + "\n")
            continue
        seg = Segmenter(onnx, manifest_path, backend="cpu", threads=args.threads,
                        lung_gate=False if name.endswith("@no gate") else None)
        results[name] = evaluate_model(seg, args.data)
        for key, r in results[name].items():
            dice = r["lesion_slices"]["dice"] if r["lesion_slices"] else None
            print(f"{name:14s} {key:18s} dice {dice} lesions {r['lesions_found']}/"
                  f"{r['lesions']} >10mm {r['lesion_recall_over_10mm']} clean {r['share_clean']} "
                  f"fp mm2/slice {r['false_positive_mm2_per_free_slice']} largest {r['largest_false_component_px']}",
                  flush=True)
        if args.no_write:
            continue
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"eval_{name.replace('@', '_').replace(' ', '_')}.json"
        out.write_text(json.dumps(results[name], indent=2) + "\n")
        if name in MODELS:
            raw = json.loads(manifest_path.read_text())
            raw["metrics"] = results[name]
            manifest_path.write_text(json.dumps(raw, indent=2) + "\n")
            verify_model(onnx, Manifest.load(manifest_path))  # the metrics edit must not touch the hash
    if not args.no_write:
        info = json.loads((args.data / "val.json").read_text())
        data_info = (f"`{args.data}` (models.data.build, validation seed {info['seed']}: "
                     f"{info['count']} real slices of {', '.join(info['patients'])}, {info['lesions']} inserted "
                     "lesions)")
        text = CARD.read_text()
        start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
        CARD.write_text(text[:start] + card_section(results, data_info) + text[end:])


if __name__ == "__main__":
    main()
