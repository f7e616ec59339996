"""Train MSE-Net with a supervised-contrastive (SupCon) metric-learning loss on generated identities.

Batches are P identities x K captures. The loss is SupCon on the fused embedding plus SupCon on each
modality embedding (so each branch is usable alone and the fused vector cannot lean on one modality).
Adam, lr 5e-4 (paper Table II), cosine decay; CPU, `--threads` torch threads. Checkpoints every
`--ckpt-every` steps to runs/msenet/ckpt.pt and resumes from it; a wall-clock budget stops training cleanly.
Metrics (loss, validation EER per modality) are appended as JSON lines to models/msenet/results/train_log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.msenet.model import MSENet
from models.msenet.scores import eer

RESULTS = Path(__file__).resolve().parent / "results"


def supcon(emb: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on unit-norm embeddings."""
    sim = emb @ emb.T / temperature
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logprob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(logprob * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


def pair_scores(emb: np.ndarray, labels: np.ndarray,
                family: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of genuine and impostor pairs; with `family` (per identity), only impostors of one family
    (fingers sharing a ridge flow)."""
    sim = emb @ emb.T
    iu = np.triu_indices(len(labels), 1)
    same = labels[:, None] == labels[None, :]
    impostor = ~same
    if family is not None:
        fam = family[labels]
        impostor &= fam[:, None] == fam[None, :]
    return sim[iu][same[iu]], sim[iu][impostor[iu]]


@torch.no_grad()
def embed_all(model: MSENet, fp: np.ndarray, ir: np.ndarray, bs: int = 128) -> list[np.ndarray]:
    model.eval()
    outs: list[list[np.ndarray]] = [[], [], []]
    for i in range(0, len(fp), bs):
        res = model(
            torch.from_numpy(fp[i : i + bs].astype(np.float32)), torch.from_numpy(ir[i : i + bs].astype(np.float32))
        )
        for k in range(3):
            outs[k].append(res[k].numpy())
    model.train()
    return [np.concatenate(o) for o in outs]


def augment(fp: torch.Tensor, ir: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cheap extra variation: the residual pose error of the fingerprint normalisation (a few degrees of
    rotation, a few per cent of scale from skin pressure, small shifts), iris rotation (circular shift),
    intensity jitter."""
    b = fp.shape[0]
    ang = torch.deg2rad(torch.clamp(4.0 * torch.randn(b, generator=gen), -8.0, 8.0))
    scale = 1 + 0.05 * (2 * torch.rand(b, generator=gen) - 1)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    # Outside the print the z-scored input is ~0, so zero padding is the background.
    fp = F.grid_sample(fp, F.affine_grid(theta, list(fp.shape), align_corners=False), align_corners=False)
    reach = round(6 * fp.shape[-1] / 96)  # ±6 px of the 96-px input, the same ±14 px at 500 dpi at any input size
    shifts = torch.randint(-reach, reach + 1, (b, 2), generator=gen)
    fp = torch.stack([torch.roll(fp[i], (int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2)) for i in range(b)])
    rot = torch.randint(-10, 11, (b,), generator=gen)
    ir = torch.stack([torch.roll(ir[i], int(rot[i]), dims=2) for i in range(b)])
    gain = 1 + 0.1 * torch.randn((b, 1, 1, 1), generator=gen)
    return fp * gain, ir * gain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=Path, default=Path("runs/msenet/train.npz"))
    ap.add_argument("--val", type=Path, default=Path("runs/msenet/val.npz"))
    ap.add_argument("--ckpt", type=Path, default=Path("runs/msenet/ckpt.pt"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--ids-per-batch", type=int, default=16)
    ap.add_argument("--per-id", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--budget-s", type=float, default=1800.0, help="stop (checkpointed) after this wall time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", type=Path, default=RESULTS / "train_log.jsonl", help="JSON-lines metrics (appended)")
    ap.add_argument("--new-cycle", action="store_true",
                    help="on resume, start a fresh cosine cycle (warm restart, SGDR) from the checkpoint's step to "
                         "--steps at peak --lr; weights and Adam moments are kept")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    tr = np.load(a.train)
    va = np.load(a.val)
    fp_all, ir_all, labels = tr["fingerprint"], tr["iris"], tr["labels"]
    by_id = [np.nonzero(labels == k)[0] for k in range(labels.max() + 1)]
    # Identities whose fingers share one ridge flow (dataset.py --family): a batch takes whole families, so each
    # finger meets its hardest impostors and the fingerprint branch cannot separate fingers by their flow alone.
    family = tr["family"] if "family" in tr.files else np.arange(len(by_id))
    families = [np.nonzero(family == f)[0] for f in np.unique(family)]
    per_family = len(families[0])
    if any(len(f) != per_family for f in families) or a.ids_per_batch % per_family:
        raise SystemExit(f"families must all have {per_family} identities and --ids-per-batch be a multiple of it")

    model = MSENet()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.steps, eta_min=a.lr * 0.05)
    step = 0
    if a.ckpt.exists():
        state = torch.load(a.ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
        rng = state["rng"]
        gen.set_state(state["gen"])
        print(f"resumed at step {step}")
        if a.new_cycle and step < a.steps:
            # A finished cosine schedule sits at eta_min; stepping it past T_max would wander back up along the
            # cosine. A warm restart with its own horizon keeps the tail of the new cycle at a low LR.
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] = a.lr
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.steps - step, eta_min=a.lr * 0.05)
            print(f"new cosine cycle: lr {a.lr} -> {a.lr * 0.05} over steps {step}..{a.steps}")
    a.log.parent.mkdir(parents=True, exist_ok=True)
    log = a.log.open("a")

    def save() -> None:
        a.ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "step": step, "rng": rng, "gen": gen.get_state()}, a.ckpt)

    t0 = time.time()
    model.train()
    bar = tqdm(total=a.steps, initial=step, desc="train msenet")
    running = 0.0
    best_path = a.ckpt.with_name("weights_best.pt")
    best = json.loads(best_path.with_suffix(".json").read_text())["selected_on"] if best_path.exists() else 1.0
    while step < a.steps:
        ids = np.concatenate([families[f] for f in
                              rng.choice(len(families), a.ids_per_batch // per_family, replace=False)])
        idx = np.concatenate([rng.choice(by_id[k], a.per_id, replace=False) for k in ids])
        fp = torch.from_numpy(fp_all[idx].astype(np.float32))
        ir = torch.from_numpy(ir_all[idx].astype(np.float32))
        fp, ir = augment(fp, ir, gen)
        lab = torch.from_numpy(np.repeat(np.arange(a.ids_per_batch), a.per_id))
        ef, ei, eu = model(fp, ir)
        loss = supcon(eu, lab) + 0.5 * supcon(ef, lab) + 0.5 * supcon(ei, lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running = 0.95 * running + 0.05 * loss.item() if step > 1 else loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if step % a.ckpt_every == 0:
            save()
        if step % a.eval_every == 0 or step == a.steps:
            embs = embed_all(model, va["fingerprint"], va["iris"])
            names = ("fingerprint", "iris", "fused")
            eers = {name: eer(*pair_scores(e, va["labels"])) for name, e in zip(names, embs, strict=False)}
            rec = {"step": step, "loss_ema": round(running, 4), "lr": sched.get_last_lr()[0],
                   "val_eer": {k: round(v, 4) for k, v in eers.items()}, "elapsed_s": round(time.time() - t0, 1)}
            if "family" in va.files and len(np.unique(va["family"])) < len(va["family"]):
                # Reported, not selected on: the fingerprint branch against fingers with the same ridge flow.
                rec["val_eer_same_flow_fingerprint"] = round(
                    eer(*pair_scores(embs[0], va["labels"], va["family"])), 4)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            tqdm.write(json.dumps(rec))
            # Model selection on the generated validation identities only (never the test set). Each modality
            # feeds its own fuzzy extractor and must match on its own, so the weaker branch decides.
            score = max(eers["fingerprint"], eers["iris"])
            if score < best:
                best = score
                torch.save(model.state_dict(), best_path)
                best_path.with_suffix(".json").write_text(json.dumps({"step": step, "selected_on": score, **eers}))
        if time.time() - t0 > a.budget_s:
            tqdm.write(f"wall-clock budget reached at step {step}; checkpointed")
            break
    save()
    torch.save(model.state_dict(), a.ckpt.with_name("weights.pt"))
    bar.close()


if __name__ == "__main__":
    main()
