"""Train DS-Net (or the U-Net baseline) on cached CT phantoms; validate on every slice of the real lung1.

    .venv-train/bin/python -m models.dsnet.train --arch dsnet --out runs/dsnet
    .venv-train/bin/python -m models.dsnet.train --arch unet --out runs/unet

Loss λ1·Dice + λ2·CE (eq. 8), Adam lr 1e-3, batch 16 (paper Table II). Each step draws 16 crops from the
cached 256x256 inputs, most of them centred near a lesion (the real nodule covers ~60 px of a 256² slice, so
uniform crops would teach "background everywhere"). Each epoch is validated on the held-out generated slices
(full 256x256, used to choose the kept checkpoint) and on all 48 real lung1 slices at 512x512 (reported, never
used for selection). Metrics go to a JSON-lines log; `last.pt` is written every epoch and `--resume` continues.

Fine-tuning: `--init runs/dsnet/best.pt` starts from a kept checkpoint's weights with a fresh optimiser;
`--cosine` decays the learning rate to zero over the run. Larger `--crop` and a lower `--lesion-fraction` make
the BatchNorm statistics seen in training closer to the whole slices met at inference.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gateway.image_metrics import ConfusionCounts, component_sizes, confusion_counts
from gateway.segment import HU_WINDOW, MODEL_SIZE, preprocess_hu, probability_to_mask
from models.dsnet.data import load_lung1, load_split
from models.dsnet.model import build

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FALSE_LESION_PX = 20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_batch(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, lesion_idx: np.ndarray, batch: int,
                 crop: int, lesion_fraction: float, max_zoom: float = 1.0, mirror: float = 0.0,
                 hard: np.ndarray | None = None, hard_idx: np.ndarray | None = None, hard_fraction: float = 0.0,
                 texture: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`batch` crops: a `lesion_fraction` of them centred (with jitter) on a lesion pixel, a `hard_fraction`
    on a hard-negative pixel (an organ that is never lesion: liver, spleen, heart, vessels ...), the rest
    anywhere.

    With `max_zoom` > 1 each crop is cut at a random scale in [1/max_zoom, max_zoom] and resized to `crop`,
    so anatomy and lesions are seen at more sizes than the generator draws (patients differ in size, and
    scanners in field of view). `mirror` is the probability of a left-right flip: CT slices are always shown
    with the patient's right on the image's left, and the generator keeps that asymmetry (heart and
    descending aorta on the patient's left), so flipping teaches anatomy that never occurs.

    Returns the inputs, the lesion masks and the hard-negative organ masks (zeros without `hard`) of the crops.
    """
    xs = np.empty((batch, 1, crop, crop), np.float32)
    ys = np.empty((batch, 1, crop, crop), np.float32)
    hs = np.zeros((batch, 1, crop, crop), np.float32)
    size = x.shape[1]
    for b in range(batch):
        zoom = float(np.exp(rng.uniform(-np.log(max_zoom), np.log(max_zoom)))) if max_zoom > 1 else 1.0
        side = min(size, max(8, round(crop * zoom)))
        u = rng.uniform()
        if lesion_idx.size and u < lesion_fraction:
            i = int(lesion_idx[rng.integers(lesion_idx.size)])
            py, px = np.nonzero(y[i])
            k = int(rng.integers(py.size))
            cy = int(py[k] + rng.integers(-side // 3, side // 3 + 1))
            cx = int(px[k] + rng.integers(-side // 3, side // 3 + 1))
        elif hard is not None and hard_idx is not None and hard_idx.size and u < lesion_fraction + hard_fraction:
            i = int(hard_idx[rng.integers(hard_idx.size)])
            py, px = np.nonzero(hard[i])
            k = int(rng.integers(py.size))
            cy = int(py[k] + rng.integers(-side // 3, side // 3 + 1))
            cx = int(px[k] + rng.integers(-side // 3, side // 3 + 1))
        else:
            i = int(rng.integers(x.shape[0]))
            cy, cx = int(rng.integers(size)), int(rng.integers(size))
        y0 = min(max(cy - side // 2, 0), size - side)
        x0 = min(max(cx - side // 2, 0), size - side)
        img = x[i, y0:y0 + side, x0:x0 + side].astype(np.float32)
        msk = y[i, y0:y0 + side, x0:x0 + side].astype(np.float32)
        org = (hard[i, y0:y0 + side, x0:x0 + side].astype(np.float32) if hard is not None
               else np.zeros(msk.shape, np.float32))
        if side != crop:
            img = cv2.resize(img, (crop, crop), interpolation=cv2.INTER_LINEAR)
            msk = (cv2.resize(msk, (crop, crop), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
            org = (cv2.resize(org, (crop, crop), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
        if rng.uniform() < mirror:  # left-right mirror (off by default: CT has a fixed orientation)
            img, msk, org = img[:, ::-1], msk[:, ::-1], org[:, ::-1]
        # Mild contrast / offset jitter so the model does not key on the phantoms' exact intensity levels.
        img = img * rng.uniform(0.92, 1.08) + rng.uniform(-0.08, 0.08)
        if texture > 0:
            img = scanner_texture(rng, img, texture)
        xs[b, 0], ys[b, 0], hs[b, 0] = img, msk, org
    return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(hs)


def scanner_texture(rng: np.random.Generator, img: np.ndarray, probability: float) -> np.ndarray:
    """The crop as another scanner might have shown it: each of blur, sharpening and noise with `probability`.

    Reconstruction kernels, doses and native pixel sizes differ, so the same anatomy reaches the network softer
    or sharper and with more or less grain (the training patients are enlarged from 1.37-3 mm, lung1 is
    averaged down from 0.57 mm and has less fine detail than the three chest patients). Blur (Gaussian, sigma
    0.4-1.2 px), unsharp masking (amount 0.3-1.0) and additive noise (0-0.08 z-units, about 0-35 HU, slightly
    correlated) teach the network to look past the sharpness of an edge and the grain; the label stays the same.
    """
    if rng.uniform() < probability:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.2)))
    if rng.uniform() < probability:
        soft = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.6, 1.5)))
        img = img + float(rng.uniform(0.3, 1.0)) * (img - soft)
    if rng.uniform() < probability:
        noise = rng.standard_normal(img.shape).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6)
        img = img + float(rng.uniform(0.0, 0.08)) / float(noise.std() + 1e-6) * noise
    return img.astype(np.float32)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float, lambda_ce: float,
             hard: torch.Tensor | None = None, hard_weight: float = 1.0) -> torch.Tensor:
    """λ1·soft Dice (over the batch) + λ2·binary cross-entropy (eq. 8).

    With `hard` (organ pixels that are never lesion) and `hard_weight` > 1, the cross-entropy of those pixels
    counts `hard_weight` times: a lesion called on the heart, the liver or a vessel costs more than one called
    in an unlabelled background pixel, which is where the models trained on phantoms failed on real CT.
    """
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    dice = 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)
    weight = None if hard is None or hard_weight == 1.0 else 1.0 + (hard_weight - 1.0) * hard * (1 - target)
    ce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    return lambda_dice * dice + lambda_ce * ce


@torch.no_grad()
def predict_prob(model: torch.nn.Module, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    """Probabilities (N, H, W) for preprocessed inputs (N, H, W)."""
    model.eval()
    out = []
    for s in range(0, inputs.shape[0], batch):
        t = torch.from_numpy(inputs[s:s + batch].astype(np.float32)[:, None])
        out.append(torch.sigmoid(model(t))[:, 0].numpy())
    return np.concatenate(out)


def load_training_pool(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The training split of `data` as crops are drawn from it: (x, y, hard-negative masks or None, indices of
    the slices with a lesion, indices of the slices with a hard-negative organ)."""
    x, y = load_split(data, "train")
    with np.load(data / "train.npz") as d:
        hard = d["hard"] if "hard" in d.files else None
    lesion_idx = np.nonzero(y.reshape(y.shape[0], -1).max(axis=1) > 0)[0]
    hard_idx = (np.nonzero(hard.reshape(hard.shape[0], -1).max(axis=1) > 0)[0] if hard is not None
                else np.zeros(0, np.int64))
    return x, y, hard, lesion_idx, hard_idx


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running statistics as a plain average over `batches`.

    The exponential moving average kept during training (momentum 0.1, so about the last ten batches) is
    noisy when half of each batch is lesion-centred crops: DS-Net evaluated with it swung between 76 and 7
    generated-validation Dice on consecutive epochs while its training loss fell steadily. Averaging over
    many batches of the training distribution ("precise BN") gives eval-mode statistics the weights were
    trained for. Feeding whole slices instead (the session-1 `--bn-recalib`) gives statistics they were not
    trained for, and measured worse.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the recalibration batches
    model.train()
    for batch in batches:
        model(batch)
    for m, mom in zip(norms, saved, strict=False):
        m.momentum = mom
    model.eval()


def whole_slice_batches(inputs: np.ndarray, batch: int = 8) -> Iterator[torch.Tensor]:
    """Whole preprocessed slices (N, H, W) as (B, 1, H, W) tensors."""
    for s in range(0, inputs.shape[0], batch):
        yield torch.from_numpy(inputs[s:s + batch].astype(np.float32)[:, None])


def evaluate_generated(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    prob = predict_prob(model, x)
    total = ConfusionCounts()
    for p, t in zip(prob, y, strict=False):
        total = total + confusion_counts(p >= threshold, t > 0)
    return total.percentages()


def evaluate_split(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, threshold: float,
                   meta: list[dict] | None = None) -> dict[str, Any]:
    """Network-only figures on whole validation canvases: pooled Dice etc., per patient, and the tumour-free
    slices with a false component larger than FALSE_LESION_PX."""
    prob = predict_prob(model, x, batch=4)
    total = ConfusionCounts()
    per: dict[str, dict[str, Any]] = {}
    for i, (p, t) in enumerate(zip(prob, y, strict=False)):
        pred, truth = p >= threshold, t > 0
        c = confusion_counts(pred, truth)
        total = total + c
        name = (meta[i].get("patient", "all") if meta else "all")
        d = per.setdefault(name, {"counts": ConfusionCounts(), "free": 0, "free_fp_gt20": 0})
        d["counts"] = d["counts"] + c
        if not truth.any():
            d["free"] += 1
            sizes = component_sizes(pred)
            if sizes and sizes[0] > FALSE_LESION_PX:
                d["free_fp_gt20"] += 1
    out = total.percentages()
    out["per_patient"] = {k: {"dice": round(v["counts"].percentages()["dice"], 2), "tumour_free_slices": v["free"],
                              "free_slices_with_false_lesion_gt20px": v["free_fp_gt20"]} for k, v in per.items()}
    return out


def evaluate_lung1(model: torch.nn.Module, hu: np.ndarray, truth: np.ndarray, threshold: float,
                   ) -> dict[str, Any]:
    """Every lung1 slice at its own 512x512 resolution, as the gateway would segment it."""
    inputs = np.stack([preprocess_hu(s, HU_WINDOW, MODEL_SIZE) for s in hu])
    prob = predict_prob(model, inputs)
    lesion_total = ConfusionCounts()
    per_slice: dict[str, float] = {}
    fp_components: dict[str, list[int]] = {}
    for z in range(hu.shape[0]):
        pred = probability_to_mask(prob[z], truth[z].shape, threshold)
        if truth[z].any():
            c = confusion_counts(pred, truth[z])
            lesion_total = lesion_total + c
            per_slice[str(z)] = round(c.percentages()["dice"], 2)
        else:
            sizes = component_sizes(pred)
            if sizes:
                fp_components[str(z)] = sizes[:5]
    largest = max((s[0] for s in fp_components.values()), default=0)
    return {
        "lesion_slices": lesion_total.percentages(),
        "lesion_slice_dice": per_slice,
        "free_slices_with_false_lesion_gt20px": sum(1 for s in fp_components.values() if s[0] > FALSE_LESION_PX),
        "largest_false_component_px": largest,
        "false_components_top5": fp_components,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("dsnet", "unet"), default="dsnet")
    parser.add_argument("--base", type=int, default=8)
    parser.add_argument("--data", type=Path, default=Path("runs/dsnet-data"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=45, help="optimisation steps per epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96, help="multiple of 32")
    parser.add_argument("--val-count", type=int, default=48, help="generated slices validated each epoch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lambda-dice", type=float, default=1.0)
    parser.add_argument("--lambda-ce", type=float, default=1.0)
    parser.add_argument("--lesion-fraction", type=float, default=0.5)
    parser.add_argument("--hard-fraction", type=float, default=0.0,
                        help="share of crops centred on a hard-negative organ pixel (data with a `hard` array)")
    parser.add_argument("--hard-weight", type=float, default=1.0,
                        help="cross-entropy weight of hard-negative organ pixels (1 = the plain eq. 8)")
    parser.add_argument("--select", choices=("dice", "dice+clean"), default="dice",
                        help="checkpoint kept: best validation Dice, or best mean of Dice and the percentage "
                             "of tumour-free validation slices without a false component > 20 px")
    parser.add_argument("--max-zoom", type=float, default=1.0, help="random crop scale in [1/z, z] (1 = off)")
    parser.add_argument("--mirror", type=float, default=0.0,
                        help="probability of a left-right flip per crop (the session-1 models used 0.5)")
    parser.add_argument("--texture", type=float, default=0.0,
                        help="probability of each of blur, sharpening and noise per crop (scanner_texture; 0 = off)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (fine-tune)")
    parser.add_argument("--init-onnx", type=Path, default=None,
                        help="start from a committed ONNX model's weights (models.dsnet.onnx_init)")
    parser.add_argument("--bn-recalib", type=int, default=0,
                        help="before each validation, re-estimate BatchNorm statistics on this many whole slices")
    parser.add_argument("--precise-bn", type=int, default=0,
                        help="before each validation, re-estimate BatchNorm statistics as the average over this "
                             "many training batches (saved checkpoints keep them)")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="also write epoch_<N>.pt after every epoch (models.dsnet.select chooses among them)")
    parser.add_argument("--cosine", action="store_true", help="cosine-decay the learning rate to 0 over the run")
    parser.add_argument("--log", type=Path, default=None, help="JSON-lines log (default results/<arch>_train.jsonl)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = args.out or Path("runs") / args.arch
    out.mkdir(parents=True, exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = args.log or RESULTS_DIR / f"{args.arch}_train.jsonl"

    x, y, hard, lesion_idx, hard_idx = load_training_pool(args.data)
    vx, vy = load_split(args.data, "val")
    vx, vy = vx[:args.val_count], vy[:args.val_count]
    # Data on real anatomy at a physical pixel size (models.data.build) validates on its held-out patients;
    # the older generated-only data validates on generated slices and reports lung1 alone.
    physical = (args.data / "train.json").is_file() and "pixel_spacing_mm" in json.loads(
        (args.data / "train.json").read_text())
    val_meta = json.loads((args.data / "val.json").read_text()).get("slices") if physical else None
    if not physical:
        lung_hu, lung_mask = load_lung1()

    model = build(args.arch, args.base)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, weights_only=False)["model"])
    elif args.init_onnx is not None and not (args.resume and (out / "last.pt").exists()):
        from models.dsnet.onnx_init import calibrate_folded, load_onnx_weights

        folded = load_onnx_weights(model, args.init_onnx)
        cal_rng = np.random.default_rng([args.seed, 99])
        calibrate_folded(model, folded, (sample_batch(cal_rng, x, y, lesion_idx, args.batch, args.crop,
                                                      args.lesion_fraction, args.max_zoom, args.mirror, hard,
                                                      hard_idx, args.hard_fraction)[0] for _ in range(20)))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    total_steps = args.epochs * args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps)) if args.cosine else 1.0)
    rng = np.random.default_rng(args.seed)
    start_epoch, best = 0, -1.0
    last = out / "last.pt"
    if args.resume and last.exists():
        state = torch.load(last, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if "sched" in state:
            sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best = state["epoch"] + 1, state["best"]
    elif log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0 = time.time()
        losses = []
        bar = tqdm(range(args.steps), desc=f"{args.arch} epoch {epoch + 1}/{args.epochs}", unit="step")
        for _ in bar:
            bx, by, bh = sample_batch(rng, x, y, lesion_idx, args.batch, args.crop, args.lesion_fraction,
                                      args.max_zoom, args.mirror, hard, hard_idx, args.hard_fraction, args.texture)
            loss = seg_loss(model(bx), by, args.lambda_dice, args.lambda_ce, bh, args.hard_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
        train_s = time.time() - t0
        if args.precise_bn:
            # A separate generator, so the training stream is the same with or without it.
            bn_rng = np.random.default_rng([args.seed, epoch])
            recalibrate_batchnorm(model, (sample_batch(bn_rng, x, y, lesion_idx, args.batch, args.crop,
                                                       args.lesion_fraction, args.max_zoom, args.mirror, hard,
                                                       hard_idx, args.hard_fraction)[0]
                                          for _ in range(args.precise_bn)))
        elif args.bn_recalib:
            pick = np.random.default_rng(args.seed + epoch).choice(x.shape[0], args.bn_recalib, replace=False)
            recalibrate_batchnorm(model, whole_slice_batches(x[np.sort(pick)]))
        record = {"epoch": epoch + 1, "steps": (epoch + 1) * args.steps, "loss": float(np.mean(losses)),
                  "lr": opt.param_groups[0]["lr"], "train_seconds": round(train_s, 1), "config": config}
        if physical:
            gen = evaluate_split(model, vx, vy, args.threshold, val_meta)
            real = gen["per_patient"]
            record["val_real"] = gen
            summary = " ".join(f"{k} dice {v['dice']:.1f} fp>20px {v['free_slices_with_false_lesion_gt20px']}/"
                               f"{v['tumour_free_slices']}" for k, v in real.items())
        else:
            gen = evaluate_generated(model, vx, vy, args.threshold)
            real = evaluate_lung1(model, lung_hu, lung_mask, args.threshold)
            record.update(val_generated=gen, lung1=real)
            summary = (f"lung1 dice {real['lesion_slices']['dice']:.1f} "
                       f"false>20px slices {real['free_slices_with_false_lesion_gt20px']}")
        score = gen["dice"]
        if args.select == "dice+clean" and physical:
            free = sum(v["tumour_free_slices"] for v in real.values())
            dirty = sum(v["free_slices_with_false_lesion_gt20px"] for v in real.values())
            score = 0.5 * (gen["dice"] + 100.0 * (free - dirty) / max(free, 1))
        record["selection_score"] = round(score, 3)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"epoch {epoch + 1}: loss {record['loss']:.4f} val dice {gen['dice']:.1f} {summary}", flush=True)
        if score > best:
            best = score
            torch.save({"model": model.state_dict(), "epoch": epoch, "arch": args.arch, "base": args.base,
                        "val": gen, "val_per_patient": real, "config": config}, out / "best.pt")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "best": best,
                "arch": args.arch,
                "base": args.base,
                "config": config,
            },
            last,
        )
        if args.keep_epochs:
            torch.save({"model": model.state_dict(), "epoch": epoch, "arch": args.arch, "base": args.base,
                        "val": gen, "val_per_patient": real, "config": config}, out / f"epoch_{epoch + 1}.pt")


if __name__ == "__main__":
    main()
