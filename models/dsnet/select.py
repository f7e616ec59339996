"""Choose the kept epoch of a training run by its served figures on the validation patients.

    .venv-train/bin/python -m models.dsnet.select --run runs/train-dsnet-fit [--epochs 5,7,10] [--thresholds 0.5,0.7]

The network-only figures `models.dsnet.train` logs each epoch read its canvases without the lung-field gate
and count false components in canvas pixels; the issue's measures are taken as served (gate on, at the
slice's own resolution). So each kept epoch (`epoch_<N>.pt`, written by `train.py --keep-epochs`) is exported
to a temporary folder and run through `gateway.segment.Segmenter` on `val_real.npz` (lung1 and ts_domes, the
validation patients; never the reserved scans). Score, fixed before looking: the mean of lung1's Dice, the
percentage of all tumour-free validation slices without a false lesion > 20 px, and lung1's lesion-level
recall over 10 mm (in %). Prints one JSON line per epoch and threshold, and the best.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gateway.segment import Segmenter
from models.dsnet.evaluate import Tally
from models.dsnet.export import export


def served_validation(onnx: Path, manifest: Path, data: Path, threads: int) -> dict[str, Any]:
    """Served figures per validation patient (lung1, ts_domes) for one exported model."""
    seg = Segmenter(onnx, manifest, backend="cpu", threads=threads)
    tallies: dict[str, Tally] = {}
    with np.load(data / "val_real.npz") as d:
        hu, masks, spacing, patients = d["hu"], d["mask"], d["spacing"], d["patient"]
    for i in range(hu.shape[0]):
        sp = (float(spacing[i][0]), float(spacing[i][1]))
        tallies.setdefault(str(patients[i]), Tally()).add(seg.predict_hu(hu[i].astype(np.float32), sp),
                                                         masks[i].astype(bool), sp)
    return {k: t.summary() for k, t in tallies.items()}


def score(res: dict[str, Any]) -> float:
    """Mean of lung1 Dice, % clean tumour-free validation slices, lung1 recall > 10 mm (%)."""
    free = sum(r["tumour_free_slices"] for r in res.values())
    clean = sum(r["tumour_free_slices_without_false_lesion_gt20px"] for r in res.values())
    lung1 = res["lung1"]
    return (lung1["lesion_slices"]["dice"] + 100.0 * clean / max(free, 1)
            + 100.0 * (lung1["lesion_recall_over_10mm"] or 0.0)) / 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder with epoch_<N>.pt")
    parser.add_argument("--data", type=Path, default=Path("runs/data-real"))
    parser.add_argument("--epochs", default="", help="comma-separated epochs (default: every epoch_<N>.pt)")
    parser.add_argument("--thresholds", default="0.5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for every figure")
    args = parser.parse_args()
    found = {int(m.group(1)): p for p in args.run.glob("epoch_*.pt") if (m := re.fullmatch(r"epoch_(\d+)\.pt", p.name))}
    epochs = [int(e) for e in args.epochs.split(",") if e] or sorted(found)
    results: dict[str, Any] = {}
    best: tuple[float, int, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in epochs:
            onnx = Path(tmp) / f"e{epoch}" / "model.onnx"
            manifest = export(found[epoch], onnx)
            for th in (float(t) for t in args.thresholds.split(",")):
                manifest["threshold"] = th
                manifest["postprocessing"]["threshold"] = th
                mpath = onnx.with_name(f"manifest_{th}.json")
                mpath.write_text(json.dumps(manifest))
                res = served_validation(onnx, mpath, args.data, args.threads)
                s = score(res)
                results[f"{epoch}@{th}"] = {"score": round(s, 2), "served": res}
                print(json.dumps({"epoch": epoch, "threshold": th, "score": round(s, 2),
                                  **{k: {"dice": (r["lesion_slices"] or {}).get("dice"),
                                         "recall_over_10mm": r["lesion_recall_over_10mm"],
                                         "clean": f"{r['tumour_free_slices_without_false_lesion_gt20px']}/"
                                                  f"{r['tumour_free_slices']}"} for k, r in res.items()}}),
                      flush=True)
                if best is None or s > best[0]:
                    best = (s, epoch, th)
    if best is not None:
        print(json.dumps({"best_epoch": best[1], "threshold": best[2], "score": round(best[0], 2)}))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
