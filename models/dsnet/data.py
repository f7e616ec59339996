"""Cached training data: generated CT phantoms preprocessed exactly as the gateway does, and the real lung1.

`python -m models.dsnet.data --out runs/dsnet-data` writes train/val shards of 256x256 network inputs
(float16, windowed + z-scored) with their 256x256 masks, generated at 512x512 (~0.57 mm pixels, like the real
scan) and area-resized, so small nodules are seen at the size the gateway will see them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gateway.resources import shared_data_dir
from gateway.segment import HU_WINDOW, MODEL_SIZE, preprocess_hu, resize_mask_to
from models.synth.ct import generate_slice

TRAIN_SEED = 20261121
VAL_SEED = 7


def make_split(seed: int, count: int, *, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated slices from `seed`: (inputs float16 (N,256,256), masks uint8 (N,256,256))."""
    rng = np.random.default_rng(seed)
    xs = np.empty((count, MODEL_SIZE, MODEL_SIZE), np.float16)
    ys = np.empty((count, MODEL_SIZE, MODEL_SIZE), np.uint8)
    for i in tqdm(range(count), desc=desc, unit="slice"):
        sl = generate_slice(rng)
        xs[i] = preprocess_hu(sl.hu, HU_WINDOW, MODEL_SIZE)
        ys[i] = resize_mask_to(sl.mask, (MODEL_SIZE, MODEL_SIZE))
    return xs, ys


def load_lung1() -> tuple[np.ndarray, np.ndarray]:
    """The real CT: (HU int16 (48,512,512), lesion mask bool (48,512,512))."""
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as d:
        return d["image_hu"], d["lesion_mask"].astype(bool)


def load_split(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A cached split written by `main`."""
    with np.load(directory / f"{name}.npz") as d:
        return d["x"], d["y"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/dsnet-data"))
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--val", type=int, default=200)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, seed, count in (("val", VAL_SEED, args.val), ("train", TRAIN_SEED, args.train)):
        x, y = make_split(seed, count, desc=name)
        np.savez(args.out / f"{name}.npz", x=x, y=y)
        info = {"seed": seed, "count": count, "lesion_slices": int((y.reshape(count, -1).sum(1) > 0).sum()),
                "window": HU_WINDOW, "size": MODEL_SIZE}
        (args.out / f"{name}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
