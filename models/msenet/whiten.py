"""Fit the per-modality key-space transform (centring + regularised PCA whitening) and write whitening.npz.

Runs with the gateway's own venv (ONNX Runtime, no torch). Fitted on generated *training* identities only
(models/msenet/dataset.py, seeds 10 000+), so nothing of the validation or test identities enters it. Why it
exists: raw embeddings share common directions, so their sign bits agree between different people far more
often than half the time; whitening spreads the impostor bit-error rate around 0.5 (more degrees of freedom).
It is fitted on the embedding the runtime whitens: the multi-view mean (gateway.biometrics.features.multi_view).
The regulariser (eigenvalues + reg x mean eigenvalue) keeps noise-only directions from dominating; it was chosen
on validation identities (models/msenet/MODEL_CARD.md).

    .venv/bin/python -m models.msenet.whiten --train runs/msenet/train.npz --reg 1.0
"""

from __future__ import annotations

import argparse
import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np

from gateway.biometrics.features import Embeddings, multi_view, views_id

HERE = Path(__file__).resolve().parent


def fit(x: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and whitening matrix W (columns by decreasing variance) of the rows of `x`."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    lam, vec = np.linalg.eigh(np.cov((x - mean).T))
    lam = np.maximum(lam, 0.0)
    w = vec / np.sqrt(lam + reg * lam.mean())[None, :]
    return mean, w[:, ::-1].copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=Path, required=True, help="dataset.py output of the train split")
    ap.add_argument("--reg", type=float, default=1.0)
    ap.add_argument("--model", type=Path, default=HERE / "msenet.onnx",
                    help="the ONNX model; whitening.npz and the manifest beside it are written")
    ap.add_argument("--single-view", action="store_true", help="fit on one pass per capture instead of the views")
    a = ap.parse_args()
    import onnxruntime as ort

    out = a.model.with_name("whitening.npz")
    sess = ort.InferenceSession(str(a.model), providers=["CPUExecutionProvider"])
    d = np.load(a.train)

    def single_pass(fp: np.ndarray, ir: np.ndarray) -> Embeddings:
        ef, ei, eu = sess.run(["emb_fingerprint", "emb_iris", "emb_fused"], {"fingerprint": fp, "iris": ir})
        return Embeddings(fingerprint=ef, iris=ei, fused=eu)

    # Fitted on what the runtime whitens: the multi-view embedding of each capture.
    embed = single_pass if a.single_view else partial(multi_view, single_pass)
    parts = [embed(d["fingerprint"][i:i + 32].astype(np.float32), d["iris"][i:i + 32].astype(np.float32))
             for i in range(0, len(d["labels"]), 32)]
    ef = [p.fingerprint for p in parts]
    ei = [p.iris for p in parts]
    fp_mean, fp_w = fit(np.concatenate(ef), a.reg)
    iris_mean, iris_w = fit(np.concatenate(ei), a.reg)
    np.savez(out, fp_mean=fp_mean, fp_w=fp_w, iris_mean=iris_mean, iris_w=iris_w)
    manifest_path = a.model.with_name("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["whitening"] = {
        "file": out.name, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "reg": a.reg,
        "fitted_on": f"{len(np.unique(d['labels']))} generated training identities x "
                     f"{len(d['labels']) // len(np.unique(d['labels']))} captures ({a.train.name})",
        "views": "one pass" if a.single_view else views_id(int(d["fingerprint"].shape[-1])),
        "what": "per modality: (emb - mean) @ W, regularised PCA whitening of the multi-view embedding; each feeds "
                "its own fuzzy extractor",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(json.dumps(manifest["whitening"]))


if __name__ == "__main__":
    main()
