"""Export trained MSE-Net weights to ONNX (opset 17) and write the manifest (sha256, opset, input spec, metrics).

Checks that ONNX Runtime reproduces the torch outputs on random inputs before writing the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from gateway.biometrics.preprocess import FINGERPRINT_SIZE, FINGERPRINT_WINDOW, IRIS_STRIP
from models.msenet.model import EMBED_DIM, MSENet

HERE = Path(__file__).resolve().parent
OPSET = 17


class WithKeySpace(torch.nn.Module):
    """MSE-Net plus the fixed key-space transform: key = (fingerprint ‖ iris − mean) @ W (PCA whitening).

    Raw embeddings share a strong common direction (impostor cosine ≈ 0.5), so their sign bits agree between
    different people far more often than 50 %. Centring and whitening on the *training* identities makes the
    coordinates zero-mean and decorrelated across the population, which is what sign binarisation needs.
    """

    def __init__(self, model: MSENet, mean: np.ndarray, whiten: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("whiten", torch.from_numpy(whiten.astype(np.float32)))

    def forward(self, fingerprint: torch.Tensor, iris: torch.Tensor):  # type: ignore[no-untyped-def]
        ef, ei, eu = self.model(fingerprint, iris)
        key = (torch.cat([ef, ei], dim=1) - self.mean) @ self.whiten
        return ef, ei, eu, key


def key_space(model: MSENet, train: Path, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and regularised PCA-whitening matrix of fingerprint ‖ iris embeddings of the training set."""
    from models.msenet.train import embed_all

    d = np.load(train)
    ef, ei, _ = embed_all(model, d["fingerprint"], d["iris"])
    x = np.concatenate([ef, ei], axis=1).astype(np.float64)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0)
    # Regularise small eigenvalues so near-empty directions are not blown up into noise bits.
    whiten = vec / np.sqrt(lam + reg * lam.mean())[None, :]
    return mean, whiten[:, ::-1].copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", type=Path, default=Path("runs/msenet/weights.pt"))
    ap.add_argument("--ckpt", type=Path, default=None, help="export from a training checkpoint instead")
    ap.add_argument("--out", type=Path, default=HERE / "msenet.onnx")
    ap.add_argument("--train", type=Path, default=Path("runs/msenet/train.npz"), help="fits the key-space transform")
    ap.add_argument("--whiten-reg", type=float, default=0.1)
    ap.add_argument("--fp-size", type=int, default=FINGERPRINT_SIZE,
                    help="fingerprint input pixels a side, as trained (dataset.py --fp-size)")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = MSENet()
    if a.ckpt is not None:
        ck = torch.load(a.ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        step = int(ck["step"])
    else:
        model.load_state_dict(torch.load(a.weights))
        # train.py writes the selected step next to weights_best.pt; plain weights.pt has none.
        meta = a.weights.with_suffix(".json")
        step = int(json.loads(meta.read_text())["step"]) if meta.exists() else -1
    model.eval()
    mean, whiten = key_space(model, a.train, a.whiten_reg)
    model.eval()
    model = WithKeySpace(model, mean, whiten).eval()
    fp = torch.randn(2, 1, a.fp_size, a.fp_size)
    ir = torch.randn(2, 1, *IRIS_STRIP)
    torch.onnx.export(model, (fp, ir), str(a.out), input_names=["fingerprint", "iris"],
                      output_names=["emb_fingerprint", "emb_iris", "emb_fused", "key_features"], opset_version=OPSET,
                      dynamic_axes={"fingerprint": {0: "batch"}, "iris": {0: "batch"}, "emb_fingerprint": {0: "batch"},
                                    "emb_iris": {0: "batch"}, "emb_fused": {0: "batch"},
                                    "key_features": {0: "batch"}}, dynamo=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(a.out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"fingerprint": fp.numpy(), "iris": ir.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in model(fp, ir)]
    err = max(float(np.abs(g - r).max() / max(1.0, np.abs(r).max())) for g, r in zip(got, ref, strict=False))
    if err > 1e-4:
        raise SystemExit(f"ONNX Runtime disagrees with torch: max abs error {err}")
    manifest_path = a.out.with_name("manifest.json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.pop("metrics", None)  # metrics belong to the previous weights; evaluate.py writes new ones
    manifest.update(
        {
            "model": "MSE-Net (fingerprint + iris multimodal embedding)",
            "file": a.out.name,
            "sha256": hashlib.sha256(a.out.read_bytes()).hexdigest(),
            "bytes": a.out.stat().st_size,
            "opset": OPSET,
            "inputs": {
                "fingerprint": {
                    "shape": ["batch", 1, a.fp_size, a.fp_size],
                    "dtype": "float32",
                    "preprocess": "gateway.biometrics.preprocess.fingerprint_input: pose normalisation (finger axis, "
                    f"Poincare core), {FINGERPRINT_WINDOW}px window at 500 dpi, Gabor ridge enhancement, "
                    "area-resized, z-scored over the print",
                },
                "iris": {
                    "shape": ["batch", 1, *IRIS_STRIP],
                    "dtype": "float32",
                    "preprocess": "gateway.biometrics.preprocess.iris_input: pupil/limbus localisation, Daugman "
                    "rubber sheet, z-scored",
                },
            },
            "outputs": {
                k: {"shape": ["batch", EMBED_DIM], "dtype": "float32", "norm": "L2 = 1"}
                for k in ("emb_fingerprint", "emb_iris", "emb_fused")
            }
            | {
                "key_features": {
                    "shape": ["batch", 2 * EMBED_DIM],
                    "dtype": "float32",
                    "what": "(emb_fingerprint ‖ emb_iris − train mean) @ PCA whitening (train set); binarised by "
                    "the fuzzy extractor",
                    "whiten_reg": a.whiten_reg,
                }
            },
            "onnx_vs_torch_max_rel_error": err,
            "training": {
                "script": "models/msenet/train.py",
                "data": "models/msenet/dataset.py (generated identities, seeds 10000+)",
                "steps_done": step,
                "log": "models/msenet/results/train_log.jsonl",
            },
        }
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"sha256": manifest["sha256"], "bytes": manifest["bytes"], "max_abs_error": err}))


if __name__ == "__main__":
    main()
