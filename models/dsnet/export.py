"""Export a trained checkpoint to ONNX (opset 17, fixed 1x1x256x256 input) and write its manifest.

    .venv-train/bin/python -m models.dsnet.export --checkpoint runs/dsnet/best.pt --out models/dsnet/dsnet.onnx
    .venv-train/bin/python -m models.dsnet.export --checkpoint runs/unet/best.pt --out models/dsnet/unet.onnx

The exported graph ends in a sigmoid (lesion probability). ONNX Runtime's output is checked against torch
before the manifest is written. `models.dsnet.evaluate` later adds the measured metrics to the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from gateway.segment import GATE_MIN_BORDER_IN_LUNG, HU_WINDOW, MODEL_SIZE
from models.dsnet.model import build

OPSET = 17
INPUT_NAME = "ct_slice"
OUTPUT_NAME = "lesion_probability"


class WithSigmoid(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, with_sigmoid=True)


def manifest_path_for(onnx_path: Path) -> Path:
    """dsnet.onnx -> manifest.json (the gateway's default); any other model -> NAME.manifest.json."""
    return onnx_path.with_name("manifest.json") if onnx_path.stem == "dsnet" else onnx_path.with_suffix(
        ".manifest.json")


def export(checkpoint: Path, out: Path, threshold: float = 0.5) -> dict:
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    config = state.get("config", {})
    # The weights training started from, identified before `out` (often the same file) is overwritten.
    init = config.get("init_onnx") or config.get("init")
    init_sha = hashlib.sha256(Path(init).read_bytes()).hexdigest() if init and Path(init).is_file() else None
    net = build(state["arch"], state["base"])
    net.load_state_dict(state["model"])
    net.eval()
    model = WithSigmoid(net).eval()
    dummy = torch.randn(1, 1, MODEL_SIZE, MODEL_SIZE, generator=torch.Generator().manual_seed(0))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (dummy,), str(out), opset_version=OPSET, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamo=False, do_constant_folding=True)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: dummy.numpy()})[0]
    with torch.no_grad():
        want = model(dummy).numpy()
    max_err = float(np.abs(got - want).max())
    if max_err > 1e-3:
        raise SystemExit(f"ONNX Runtime disagrees with torch by {max_err}")
    data = out.read_bytes()
    # What the cached data set says about itself (seed, slice and lesion-slice counts), when it is at hand.
    splits = {}
    for split in ("train", "val"):
        info = Path(str(config.get("data", ""))) / f"{split}.json"
        if info.is_file():
            splits[split] = {k: v for k, v in json.loads(info.read_text()).items() if k != "slices"}
    spacing = splits.get("train", {}).get("pixel_spacing_mm")
    fit = bool(splits.get("train", {}).get("fit_body_to_input", False))
    if spacing is None:
        raise SystemExit("the training data does not name its physical pixel size (build it with models.data.build)")
    manifest = {
        "name": state["arch"],
        "architecture": ("DS-Net: CalibNeXt (SCC) + Residual Swin Transformer, Triplet Attention fusion, "
                         "U-shaped decoder" if state["arch"] == "dsnet" else "U-Net baseline (4 levels)"),
        "file": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "opset": OPSET,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "input": {"name": INPUT_NAME, "shape": [1, 1, MODEL_SIZE, MODEL_SIZE], "dtype": "float32",
                  "layout": "NCHW, one axial CT slice"},
        "output": {"name": OUTPUT_NAME, "shape": [1, 1, MODEL_SIZE, MODEL_SIZE], "dtype": "float32",
                   "meaning": "lesion probability per pixel (sigmoid applied)"},
        "preprocessing": {
            "hu_window": list(HU_WINDOW),
            "pixel_spacing_mm": spacing,
            "assumed_field_of_view_mm": 350.0,
            "fit_body_to_input": fit,
            "steps": ["clip HU to hu_window",
                      "resample from the slice's PixelSpacing to pixel_spacing_mm (area when shrinking, bilinear "
                      "when enlarging); inputs without PixelSpacing span assumed_field_of_view_mm",
                      f"crop to the body's bounding box (HU > -500) + 8 px, at least {MODEL_SIZE}x{MODEL_SIZE}, "
                      "padded with air",
                      *([f"fit_body_to_input: a body wider than {MODEL_SIZE - 16} px at pixel_spacing_mm is "
                         "resampled to the coarser pixel that fits it, so the canvas is exactly "
                         f"{MODEL_SIZE}x{MODEL_SIZE}"] if fit else []),
                      "z-score over that canvas (paper eq. 3)",
                      ("one network run on that canvas" if fit else
                       f"overlapping {MODEL_SIZE}x{MODEL_SIZE} tiles (32 px overlap, probabilities averaged)")],
            "normalisation": "z-score over the body-cropped canvas after windowing and resampling",
            "non_hu_input": {"uint8": "0..255 spans hu_window linearly", "uint16_intercept": -1024.0,
                             "uint16_signed": "stored value is HU"},
        },
        "postprocessing": {"resize": "canvas probability map placed back in the resampled slice, bilinear to the "
                                     "input size", "threshold": threshold,
                           "lung_field_gate": True,
                           "lung_field_gate_rule": ("drop predicted components lying less than half inside the "
                                                    "lung field (HU < -400 not connected to outside air, "
                                                    f"closed 11 px and hole-filled at {spacing} mm pixels) unless "
                                                    "at least "
                                                    f"{GATE_MIN_BORDER_IN_LUNG:.0%} of the 2-px ring around "
                                                    "them lies in the lung field (pleural-based lesions)")},
        "threshold": threshold,
        "training": {
            "data": ("models.data.build: real CT patients from registry packages (models.data.fetch) with "
                     "lesions inserted and lung1's nodule copied in, organ labels as hard negatives, and "
                     "models.synth.ct phantoms; all at pixel_spacing_mm through the gateway's pre-processing"),
            "splits": splits,
            "initialised_from": {"path": init, "sha256": init_sha},
            "checkpoint_epoch": int(state["epoch"]) + 1,
            "config": config,
            "selected_by": (("mean of Dice and the percentage of tumour-free slices without a false component "
                             "> 20 px" if config.get("select") == "dice+clean" else "Dice")
                            + " (network only, pooled pixels) on the held-out validation patients' canvases: "
                            "lung1 and ts_domes, tumour-free slices included"),
            "batchnorm_statistics": ("averaged over training batches before validation (--precise-bn)"
                                     if config.get("precise_bn") else "exponential moving average of training"),
        },
        "onnx_vs_torch_max_abs_error": max_err,
        "metrics": {},
    }
    manifest_path_for(out).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="the served lesion threshold (chosen on the validation patients, as served)")
    args = parser.parse_args()
    m = export(args.checkpoint, args.out, args.threshold)
    print(json.dumps({k: m[k] for k in ("name", "sha256", "bytes", "parameters", "onnx_vs_torch_max_abs_error")}))


if __name__ == "__main__":
    main()
