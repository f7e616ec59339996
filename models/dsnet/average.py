"""Average the weights of kept epochs of one training run, then re-estimate the BatchNorm statistics.

    .venv-train/bin/python -m models.dsnet.average --run runs/train-dsnet-border --epochs 4,5,6 \
        --out runs/avg-border/epoch_1.pt

Epochs of one fine-tuning run lie in one basin of the loss; their average (stochastic weight averaging)
is the same graph, so it serves at the same cost as any one epoch, and it is often better calibrated than
each. BatchNorm statistics of averaged weights are not the average of the statistics, so they are estimated
again as `models.dsnet.train --precise-bn` does, over training batches drawn as the run drew them (its
saved config). The output is a checkpoint `models.dsnet.select` and `models.dsnet.export` read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from models.dsnet.model import build
from models.dsnet.train import load_training_pool, recalibrate_batchnorm, sample_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder with epoch_<N>.pt")
    parser.add_argument("--epochs", required=True, help="comma-separated epochs to average")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=16, help="training batches for the BatchNorm statistics")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = [int(e) for e in args.epochs.split(",") if e]
    states = [torch.load(args.run / f"epoch_{e}.pt", weights_only=False, map_location="cpu") for e in epochs]
    first = states[0]
    config = first["config"]
    model = build(first["arch"], first["base"])
    averaged = {}
    for key, value in first["model"].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s["model"][key] for s in states]).mean(dim=0)
        else:
            averaged[key] = value  # counters (num_batches_tracked)
    model.load_state_dict(averaged)
    x, y, hard, lesion_idx, hard_idx = load_training_pool(Path(config["data"]))
    rng = np.random.default_rng([int(config["seed"]), 7, *epochs])
    recalibrate_batchnorm(model, (sample_batch(rng, x, y, lesion_idx, int(config["batch"]), int(config["crop"]),
                                               float(config["lesion_fraction"]), float(config["max_zoom"]),
                                               float(config["mirror"]), hard, hard_idx,
                                               float(config["hard_fraction"]))[0] for _ in range(args.batches)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "epoch": max(s["epoch"] for s in states), "arch": first["arch"],
                "base": first["base"], "averaged_epochs": epochs,
                "config": dict(config, averaged_epochs=epochs, run=str(args.run))}, args.out)
    print(f"averaged epochs {epochs} of {args.run} -> {args.out}")


if __name__ == "__main__":
    main()
