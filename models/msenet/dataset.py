"""Generated biometric identities for MSE-Net: captures → the gateway's own preprocessing → arrays.

Identity seed ranges are disjoint so that evaluation never sees a training identity:
train 10_000 + i, validation 500_000 + i, evaluation 1_000_000 + i.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gateway.biometrics.preprocess import FINGERPRINT_SIZE, fingerprint_input, iris_input
from models.synth import fingerprint, iris

SPLIT_BASE = {"train": 10_000, "val": 500_000, "eval": 1_000_000}


def identity_captures(seed: int, count: int, first_capture: int = 0,
                      flow_seed: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw captures (fingerprint images, eye images) of one generated identity; `flow_seed`: the finger has the
    ridge flow and outline of identity `flow_seed`'s (models.synth.fingerprint.master_print)."""
    return (fingerprint.impressions(seed, count, first_capture=first_capture, flow_seed=flow_seed),
            iris.captures(seed, count, first_capture=first_capture))


def flow_seeds(seeds: list[int], family: int) -> list[int | None]:
    """Families of `family` consecutive identities whose fingers share the first one's ridge flow (1: none)."""
    return [None if family <= 1 or i % family == 0 else seeds[i - i % family] for i in range(len(seeds))]


def _one(args: tuple[int, int, int | None, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, count, flow_seed, fp_size = args
    fps, eyes = identity_captures(seed, count, flow_seed=flow_seed)
    return (np.stack([fingerprint_input(f, fp_size) for f in fps]), np.stack([iris_input(e) for e in eyes]))


def build(split: str, identities: int, captures: int, workers: int = 2, family: int = 1,
          fp_size: int = FINGERPRINT_SIZE) -> dict[str, np.ndarray]:
    """Preprocessed network inputs for `identities` x `captures` of one split; `family` as in `flow_seeds`;
    fingerprint inputs of `fp_size` pixels."""
    seeds = [SPLIT_BASE[split] + i for i in range(identities)]
    flows = flow_seeds(seeds, family)
    fp, ir, labels = [], [], []
    with ProcessPoolExecutor(workers) as ex:
        jobs = [(s, captures, f, fp_size) for s, f in zip(seeds, flows, strict=True)]
        for i, (f, e) in enumerate(tqdm(ex.map(_one, jobs), total=len(seeds), desc=f"generate {split}")):
            fp.append(f)
            ir.append(e)
            labels += [i] * captures
    return {"fingerprint": np.concatenate(fp).astype(np.float16), "iris": np.concatenate(ir).astype(np.float16),
            "labels": np.asarray(labels, np.int32), "seeds": np.asarray(seeds, np.int64),
            "family": np.asarray([i // max(family, 1) for i in range(len(seeds))], np.int32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", choices=sorted(SPLIT_BASE), required=True)
    ap.add_argument("--identities", type=int, required=True)
    ap.add_argument("--captures", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--family", type=int, default=1,
                    help="identities per family sharing one ridge flow (hard impostors for the fingerprint branch)")
    ap.add_argument("--fp-size", type=int, default=FINGERPRINT_SIZE,
                    help="pixels a side of the fingerprint input (the window at 500 dpi, area-resized)")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, **build(a.split, a.identities, a.captures, a.workers, a.family, a.fp_size))


if __name__ == "__main__":
    main()
