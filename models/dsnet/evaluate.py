"""Evaluate the exported ONNX models through the gateway's own Segmenter (no torch involved).

    .venv/bin/python -m models.dsnet.evaluate --data runs/dsnet-data

For DS-Net and the U-Net baseline: accuracy, precision, recall, specificity, F1 and Dice (paper Table III,
pixel counts pooled over slices) on the held-out generated slices and on the real lung1 CT (its 3 lesion
slices pooled, plus per-slice Dice, plus the false-positive components on its 45 lesion-free slices). Writes
results/eval_<model>.json, the `metrics` of each manifest, and the tables in MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.metrics import ConfusionCounts, component_sizes, confusion_counts
from gateway.segment import Manifest, Segmenter, verify_model
from models.dsnet.data import VAL_SEED, load_lung1, load_split
from models.synth.ct import generate_slice

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CARD = HERE / "MODEL_CARD.md"
MODELS = {"dsnet": (HERE / "dsnet.onnx", HERE / "manifest.json"),
          "unet": (HERE / "unet.onnx", HERE / "unet.manifest.json")}
FALSE_LESION_PX = 20
LARGE_LESION_PX = 1500  # at 512x512, ~25 mm across: a mass, the lesions a border-blind gate lost first
METRIC_ORDER = ("accuracy", "precision", "recall", "specificity", "f1", "dice")
TABLE_START = "<!-- metrics:start -->"
TABLE_END = "<!-- metrics:end -->"


def evaluate_model(seg: Segmenter, val_x: np.ndarray, val_y: np.ndarray, lung_hu: np.ndarray,
                   lung_mask: np.ndarray) -> dict[str, Any]:
    thr = seg.manifest.threshold
    gen = ConfusionCounts()
    detected = lesion_slices = 0
    for x, y in zip(val_x, val_y):
        pred = seg.runner.run(x.astype(np.float32)[None, None])[0, 0] >= thr
        gen = gen + confusion_counts(pred, y > 0)
        if y.any():
            lesion_slices += 1
            detected += int((pred & (y > 0)).any())
    served = lung1_metrics(seg, lung_hu, lung_mask, gate=seg.manifest.lung_field_gate)
    raw = lung1_metrics(seg, lung_hu, lung_mask, gate=False)
    return {
        "generated_val": {**gen.percentages(), "slices": int(val_x.shape[0]), "lesion_slices": lesion_slices,
                          "lesion_slices_detected": detected, "counts": gen.as_dict(),
                          "note": "network output only, at 256x256, on the cached inputs"},
        "generated_val_served": generated_served_metrics(seg, int(val_x.shape[0])),
        **served,
        "lung1_network_only": {k: v for k, v in raw.items() if k != "lung1_false_components_top5"},
    }


def generated_served_metrics(seg: Segmenter, count: int) -> dict[str, Any]:
    """The validation phantoms regenerated in HU at 512x512 and segmented as the gateway does (lung-field gate
    included), with lesion-level detection: a lesion counts as found when the mask touches it. The cached
    256x256 inputs carry no HU, so only this shows what the gate does to lesions against the lung wall."""
    rng = np.random.default_rng(VAL_SEED)
    total = ConfusionCounts()
    lesions = found = large = large_found = 0
    for _ in range(count):
        sl = generate_slice(rng)
        pred = seg.predict_hu(sl.hu)
        total = total + confusion_counts(pred, sl.mask)
        n, labels = cv2.connectedComponents(sl.mask.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            component = labels == k
            hit = bool((pred & component).any())
            lesions, found = lesions + 1, found + hit
            if component.sum() >= LARGE_LESION_PX:
                large, large_found = large + 1, large_found + hit
    return {**total.percentages(), "counts": total.as_dict(), "slices": count, "lesions": lesions,
            "lesions_found": found, "large_lesions": large, "large_lesions_found": large_found,
            "lung_field_gate": seg.lung_gate}


def lung1_metrics(seg: Segmenter, lung_hu: np.ndarray, lung_mask: np.ndarray, gate: bool) -> dict[str, Any]:
    """Every lung1 slice at 512x512 through Segmenter.predict_hu, with or without the lung-field gate."""
    seg.lung_gate = gate
    lesion = ConfusionCounts()
    whole = ConfusionCounts()
    per_slice: dict[str, dict[str, float]] = {}
    fp: dict[str, list[int]] = {}
    for z in range(lung_hu.shape[0]):
        pred = seg.predict_hu(lung_hu[z])
        c = confusion_counts(pred, lung_mask[z])
        whole = whole + c
        if lung_mask[z].any():
            lesion = lesion + c
            per_slice[str(z)] = {"dice": round(c.percentages()["dice"], 2), "true_px": int(lung_mask[z].sum()),
                                 "pred_px": int(pred.sum())}
        else:
            sizes = component_sizes(pred)
            if sizes:
                fp[str(z)] = sizes[:5]
    free = lung_hu.shape[0] - len(per_slice)
    seg.lung_gate = seg.manifest.lung_field_gate
    return {
        "lung1_lung_field_gate": gate,
        "lung1_lesion_slices": {**lesion.percentages(), "counts": lesion.as_dict()},
        "lung1_all_slices": {**whole.percentages(), "counts": whole.as_dict()},
        "lung1_per_lesion_slice": per_slice,
        "lung1_lesion_free_slices": free,
        "lung1_free_slices_with_false_lesion_gt20px": sum(1 for s in fp.values() if s[0] > FALSE_LESION_PX),
        "lung1_free_slices_with_any_false_pixel": len(fp),
        "lung1_largest_false_component_px": max((s[0] for s in fp.values()), default=0),
        "lung1_false_components_top5": fp,
    }


def table(results: dict[str, dict[str, Any]], key: str) -> str:
    names = list(results)
    head = "| Metric (%) | " + " | ".join("DS-Net" if n == "dsnet" else "U-Net" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for m in METRIC_ORDER:
        label = {"f1": "F1-score", "dice": "Dice coefficient"}.get(m, m.capitalize())
        lines.append(f"| {label} | " + " | ".join(f"{results[n][key][m]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def card_section(results: dict[str, dict[str, Any]]) -> str:
    parts = [TABLE_START,
             "Generated by `python -m models.dsnet.evaluate`; pixel counts pooled over slices; threshold 0.5.",
             "",
             f"**Held-out generated slices** (seed 7, {next(iter(results.values()))['generated_val']['slices']} "
             "slices at 256x256, masks area-resized from 512x512; network output):", "",
             table(results, "generated_val"), "",
             "**The same generated slices at 512x512 in HU, as served (lung-field gate on)**:", "",
             table(results, "generated_val_served"), "",
             "| Model | lesions found | large lesions (>= 1500 px) found |", "|---|---|---|",
             *(f"| {'DS-Net' if n == 'dsnet' else 'U-Net'} | {r['generated_val_served']['lesions_found']} / "
               f"{r['generated_val_served']['lesions']} | {r['generated_val_served']['large_lesions_found']} / "
               f"{r['generated_val_served']['large_lesions']} |" for n, r in results.items()),
             "",
             "**Real CT lung1, the 3 lesion slices (32-34) at 512x512, as served (lung-field gate on)**:", "", table(results, "lung1_lesion_slices"),
             "",
             "**Real CT lung1, all 48 slices at 512x512** (dominated by true negatives):", "",
             table(results, "lung1_all_slices"), "",
             "**Real CT lung1, per lesion slice and lesion-free slices:**", "",
             "| Model | Dice slice 32 / 33 / 34 | lesion-free slices with a false component > 20 px | "
             "with any false pixel | largest false component (px) |",
             "|---|---|---|---|---|"]
    for label, pick in (("", lambda r: r), (" (network only, no lung gate)", lambda r: r["lung1_network_only"])):
        for n, full in results.items():
            r = pick(full)
            d = " / ".join(f"{r['lung1_per_lesion_slice'][z]['dice']:.1f}"
                           for z in sorted(r["lung1_per_lesion_slice"]))
            parts.append(f"| {'DS-Net' if n == 'dsnet' else 'U-Net'}{label} | {d} | "
                         f"{r['lung1_free_slices_with_false_lesion_gt20px']} / {r['lung1_lesion_free_slices']} | "
                         f"{r['lung1_free_slices_with_any_false_pixel']} | {r['lung1_largest_false_component_px']} |")
    parts += ["", "**Network only (no lung-field gate), lung1 lesion slices**:", "",
              table({n: r["lung1_network_only"] for n, r in results.items()}, "lung1_lesion_slices")]
    parts.append(TABLE_END)
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/dsnet-data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=Path, default=None,
                        help="evaluate dsnet.onnx / unet.onnx (+ manifests) exported to this directory instead, "
                             "writing eval_*.json there and leaving the committed card and manifests alone")
    args = parser.parse_args()
    val_x, val_y = load_split(args.data, "val")
    lung_hu, lung_mask = load_lung1()
    models = MODELS
    if args.candidates is not None:
        models = {name: (args.candidates / onnx.name, args.candidates / manifest.name)
                  for name, (onnx, manifest) in MODELS.items() if (args.candidates / onnx.name).exists()}
    results: dict[str, dict[str, Any]] = {}
    for name, (onnx, manifest_path) in models.items():
        seg = Segmenter(onnx, manifest_path, backend="cpu", threads=args.threads)
        results[name] = evaluate_model(seg, val_x, val_y, lung_hu, lung_mask)
        out_dir = args.candidates or RESULTS
        out_dir.mkdir(exist_ok=True)
        (out_dir / f"eval_{name}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        r = results[name]
        print(f"{name}: gen dice {r['generated_val']['dice']:.2f} (served {r['generated_val_served']['dice']:.2f}, "
              f"lesions found {r['generated_val_served']['lesions_found']}/{r['generated_val_served']['lesions']})"
              f" | lung1 lesion dice "
              f"{r['lung1_lesion_slices']['dice']:.2f} (slices "
              f"{' / '.join(str(v['dice']) for v in r['lung1_per_lesion_slice'].values())}) | free slices with "
              f"false >20px {r['lung1_free_slices_with_false_lesion_gt20px']}/{r['lung1_lesion_free_slices']}, "
              f"largest {r['lung1_largest_false_component_px']} px | network only: lung1 dice "
              f"{r['lung1_network_only']['lung1_lesion_slices']['dice']:.2f}, false >20px "
              f"{r['lung1_network_only']['lung1_free_slices_with_false_lesion_gt20px']}")
        if args.candidates is not None:
            continue
        raw = json.loads(manifest_path.read_text())
        raw["metrics"] = {k: v for k, v in results[name].items() if k != "lung1_false_components_top5"}
        manifest_path.write_text(json.dumps(raw, indent=2) + "\n")
        verify_model(onnx, Manifest.load(manifest_path))  # the metrics edit must not touch the hash
    if args.candidates is None:
        text = CARD.read_text()
        start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
        CARD.write_text(text[:start] + card_section(results) + text[end:])


if __name__ == "__main__":
    main()
