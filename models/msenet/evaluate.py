"""Evaluate MSE-Net and the biometric key release on identity-disjoint splits, as an attacker would.

Splits (models/msenet/dataset.py seeds; no identity in two of them): training 10 000+ (weights and the
whitening), validation 500 000+ (every choice: the code of each modality), test 1 000 000+ (every figure).
Through the gateway's own pipeline (preprocess → ONNX Runtime → per-modality whitening → fuzzy extractor):

  * cosine-score distributions and EER per modality and fused, ROC → results/roc.png;
  * choice on validation: for each modality a code from CANDIDATE_CODES; among pairs whose joint FRR with
    RELEASE_CAPTURES capture pairs is ≤ MAX_FRR at the upper end of its 95 % interval (so that a handful of
    validation failures cannot place the code at the limit), the pair whose weaker modality has the lowest
    impostor match rate (each modality must refuse on its own), then the most bits (−log2 of the product of the
    two smoothed per-modality rates);
  * test, with that pair: FRR over genuine attempts (targets' own fresh captures); false releases over
    independent impostor attempts: each impostor identity's captures are used in exactly one attempt, against
    one target, with Clopper–Pearson 95 % intervals; the same for single-modality impostors (the victim's own
    genuine iris with another finger, and the reverse);
  * the capture-bank attack with the helper data: for each target, an attacker holding the profile (so the
    helper data) decodes every bank identity's captures through each modality's helper, ranks the candidate
    secrets of each modality by how often the bank produces them, and tries pairs in rank order; the guesses
    needed to reach the true pair are the measured strength of the biometric against an offline attacker
    (each guess costs one Argon2id; online, each costs a TOTP code and counts towards the lock-out);
  * the real prints (shared/data/fingerprints: p1_1/p1_2 one finger, p2_1 another) with the iris of ≥ 40 test
    identities: enrol p1_1, release with p1_2 (genuine) and with p2_1 (impostor).
Results → results/eval.json (the numbers in MODEL_CARD.md and docs/THREAT_MODEL.md).

    .venv/bin/python -m models.msenet.evaluate --generate-only     # inputs, cached under runs/msenet/eval/
    .venv/bin/python -m models.msenet.evaluate
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gateway.biometrics import fuzzy
from gateway.biometrics.features import Embeddings, FeatureExtractor, KeyFeatures
from gateway.biometrics.keyrelease import DEFAULT_CODES, RELEASE_CAPTURES
from gateway.biometrics.preprocess import FINGERPRINT_SIZE, fingerprint_input, iris_input, load_capture
from gateway.resources import shared_data_dir
from gateway.rng import SeededRandom
from models.msenet.dataset import SPLIT_BASE, identity_captures
from models.msenet.scores import eer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CANDIDATE_CODES: list[fuzzy.Code] = [
    *(fuzzy.RmCode(m, b) for m, b in ((3, 8), (4, 4), (5, 2), (3, 6), (4, 3), (3, 4), (4, 2), (5, 1))),
    *(fuzzy.BchCode(t, flips) for flips in (0, 4) for t in (1, 2, 3, 4, 5, 6, 7, 10)),
]
ENROL = 4
MAX_FRR = 0.05
IMPOSTOR_BASE = SPLIT_BASE["eval"] + 100_000  # test-split impostors, disjoint from the test targets
SAME_FLOW_BASE = SPLIT_BASE["eval"] + 200_000  # a finger per test target with that target's ridge flow
SHARD = 250


def _inputs(job: tuple[int, int, tuple[int, ...], int | None]) -> tuple[list[np.ndarray], np.ndarray]:
    seed, count, fp_sizes, flow_seed = job
    fps, eyes = identity_captures(seed, count, flow_seed=flow_seed)
    return ([np.stack([fingerprint_input(f, size) for f in fps]).astype(np.float16) for size in fp_sizes],
            np.stack([iris_input(e) for e in eyes]).astype(np.float16))


def inputs(first_seed: int, identities: int, captures: int, cache: Path, workers: int = 2,
           flow_base: int | None = None, fp_size: int = FINGERPRINT_SIZE,
           also_fp_sizes: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Preprocessed inputs (identities, captures, ...) of seeds first_seed.., cached in shards. With
    `flow_base`, identity i's finger has the ridge flow of identity flow_base + i (`master_print`);
    fingerprint inputs of `fp_size` pixels. A shard that has to be generated is also cached at
    `also_fp_sizes`, from the same captures (synthesis is half the cost of a capture)."""
    cache.mkdir(parents=True, exist_ok=True)
    fp, ir = [], []
    for start in range(0, identities, SHARD):
        n = min(SHARD, identities - start)
        flow_tag = "" if flow_base is None else f"_flow{flow_base + start}"
        shard = {size: cache / f"{first_seed + start}_{n}x{captures}{flow_tag}_fp{size}.npz"
                 for size in dict.fromkeys((fp_size, *also_fp_sizes))}
        path = shard[fp_size]
        if not path.exists():
            sizes = tuple(size for size, p in shard.items() if not p.exists())
            jobs = [(first_seed + start + i, captures, sizes,
                     None if flow_base is None else flow_base + start + i) for i in range(n)]
            with ProcessPoolExecutor(workers) as ex:
                out = list(tqdm(ex.map(_inputs, jobs), total=n, desc=f"generate {path.name}"))
            eyes = np.stack([o[1] for o in out])
            for j, size in enumerate(sizes):
                np.savez(shard[size], fingerprint=np.stack([o[0][j] for o in out]), iris=eyes)
        with np.load(path) as d:
            fp.append(d["fingerprint"])
            ir.append(d["iris"])
    return {"fingerprint": np.concatenate(fp), "iris": np.concatenate(ir)}


def embed(ext: FeatureExtractor, d: dict[str, np.ndarray]) -> tuple[Embeddings, KeyFeatures]:
    """Embeddings and key features, shaped (identities, captures, dim)."""
    n, c = d["fingerprint"].shape[:2]
    fp = d["fingerprint"].reshape(n * c, *d["fingerprint"].shape[2:])
    ir = d["iris"].reshape(n * c, *d["iris"].shape[2:])
    parts = [ext.run(fp[i:i + 256], ir[i:i + 256]) for i in range(0, n * c, 256)]
    emb = Embeddings(*(np.concatenate([getattr(p, k) for p in parts]).reshape(n, c, -1)
                       for k in ("fingerprint", "iris", "fused")))
    flat = Embeddings(*(getattr(emb, k).reshape(n * c, -1) for k in ("fingerprint", "iris", "fused")))
    kf = ext.whitening.apply(flat)
    return emb, KeyFeatures(kf.fingerprint.reshape(n, c, -1), kf.iris.reshape(n, c, -1))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial confidence interval for k successes in n trials (bisection on the binomial tail)."""
    def tail_ge(p: float) -> float:  # P[X >= k]
        return 1.0 - _binom_cdf(k - 1, n, p) if k > 0 else 1.0

    def tail_le(p: float) -> float:  # P[X <= k]
        return _binom_cdf(k, n, p)

    lo = 0.0 if k == 0 else _bisect(lambda p: tail_ge(p) - alpha / 2, 0.0, 1.0)
    hi = 1.0 if k == n else _bisect(lambda p: alpha / 2 - tail_le(p), 0.0, 1.0)
    return lo, hi


def _binom_cdf(k: int, n: int, p: float) -> float:
    if k < 0:
        return 0.0
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(0, k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def _bisect(f, lo: float, hi: float) -> float:  # type: ignore[no-untyped-def]
    # f increasing in p, root in (lo, hi).
    for _ in range(80):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def rate_with_ci(k: int, n: int) -> dict[str, float | int]:
    """k of n with its Clopper-Pearson 95 % interval."""
    lo, hi = clopper_pearson(k, n)
    return {"count": k, "attempts": n, "rate": k / n if n else float("nan"), "ci95": [lo, hi]}


class Target:
    """One enrolled identity: helper data and raw secret of each modality."""

    def __init__(self, fp: np.ndarray, ir: np.ndarray, codes: dict[str, fuzzy.Code], seed: bytes) -> None:
        rng = SeededRandom(seed)
        self.r_fp, self.h_fp = fuzzy.generate(fp, codes["fingerprint"], rng)
        self.r_ir, self.h_ir = fuzzy.generate(ir, codes["iris"], rng)
        self.q_fp = fuzzy.rotation(self.h_fp.rotation_seed, fp.shape[1])
        self.q_ir = fuzzy.rotation(self.h_ir.rotation_seed, ir.shape[1])

    def decode(self, modality: str, feats: np.ndarray) -> list[bytes]:
        """Decoded raw secrets of attempts (attempts, captures, dim): captures averaged per attempt."""
        q, h = (self.q_fp, self.h_fp) if modality == "fingerprint" else (self.q_ir, self.h_ir)
        z = (feats.mean(axis=1) @ q.T)[:, h.selected]
        return [fuzzy.bits_to_bytes(b) for b in fuzzy.decode(z, h)]

    def match(self, modality: str, feats: np.ndarray) -> np.ndarray:
        want = self.r_fp if modality == "fingerprint" else self.r_ir
        return np.array([r == want for r in self.decode(modality, feats)])


def per_modality_rates(kf: KeyFeatures, codes: list[fuzzy.Code], k: int) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """Validation: per modality and code, genuine matches (4 enrol + k probes per identity) and impostor
    matches (every other identity's k probes against each helper)."""
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    n = kf.fingerprint.shape[0]
    for modality in ("fingerprint", "iris"):
        feats = getattr(kf, modality)
        rows = []
        for params in tqdm(codes, desc=f"validation codes, {modality}"):
            gen_ok = np.zeros(n, bool)
            imp = 0
            for i in range(n):
                t = Target(feats[i, :ENROL], feats[i, :ENROL], {"fingerprint": params, "iris": params},
                           f"val-{params.label}-{i}".encode())
                gen_ok[i] = t.match("fingerprint", feats[i:i + 1, ENROL:ENROL + k])[0]
                others = np.delete(np.arange(n), i)
                imp += int(t.match("fingerprint", feats[others, ENROL:ENROL + k]).sum())
            rows.append({"code": params, "label": params.label, "secret_bits": params.k, "code_bits": params.n,
                         "genuine_ok": gen_ok.tolist(), "impostor_matches": imp, "impostor_attempts": n * (n - 1)})
        out[modality] = rows
    return out


def _public(row: dict | None) -> dict | None:  # type: ignore[type-arg]
    """A validation row without its code objects and per-identity outcomes (what goes into eval.json)."""
    return None if row is None else {k: v for k, v in row.items() if k not in ("code", "codes", "genuine_ok")}


def choose_codes(rates: dict[str, list[dict]]) -> dict[str, object]:  # type: ignore[type-arg]
    """Among pairs whose joint FRR is <= MAX_FRR at the upper end of its Clopper-Pearson 95 % interval, the one
    whose weaker modality refuses impostors best (each modality must hold alone), then the most measured bits
    (validation only)."""
    best = None
    table = []

    def bits(r: dict) -> float:  # type: ignore[type-arg]
        return -math.log2((r["impostor_matches"] + 0.5) / (r["impostor_attempts"] + 1))

    for f in rates["fingerprint"]:
        for i in rates["iris"]:
            ok = np.logical_and(f["genuine_ok"], i["genuine_ok"])
            fails = int(ok.size - ok.sum())
            upper = clopper_pearson(fails, int(ok.size))[1]
            row = {"fingerprint": f["label"], "iris": i["label"], "codes": (f["code"], i["code"]),
                   "joint_frr": fails / ok.size, "joint_frr_upper95": upper,
                   "weaker_modality_bits": min(bits(f), bits(i)), "bits_estimate": bits(f) + bits(i)}
            table.append(row)
            rank = (row["weaker_modality_bits"], row["bits_estimate"])
            if upper <= MAX_FRR and (best is None or rank > (best["weaker_modality_bits"], best["bits_estimate"])):
                best = row
    return {"chosen": best, "pairs": table}


def impostor_rows(kf: KeyFeatures, imp: KeyFeatures, targets: list[Target], k: int) -> dict[str, object]:
    """Independent impostor attempts of k capture pairs: impostor j's captures are split into disjoint sets
    of k, and set (j, s) is used in exactly one attempt, against target (j * sets + s) mod targets. Besides the
    full impostor, the same sets attack one modality while the other is the victim's own genuine capture."""
    n_t = len(targets)
    sets = imp.fingerprint.shape[1] // k
    full = fp_only = iris_only = 0
    gsl = slice(ENROL, ENROL + k)
    j_all, s_all = np.divmod(np.arange(imp.fingerprint.shape[0] * sets), sets)
    for t, tg in enumerate(targets):  # every attempt against one target decoded as one batch
        mine = (j_all * sets + s_all) % n_t == t
        j, s = j_all[mine], s_all[mine]
        cols = s[:, None] * k + np.arange(k)[None, :]
        fp_ok = tg.match("fingerprint", imp.fingerprint[j[:, None], cols])
        ir_ok = tg.match("iris", imp.iris[j[:, None], cols])
        full += int((fp_ok & ir_ok).sum())
        fp_only += int(fp_ok.sum()) if tg.match("iris", kf.iris[t:t + 1, gsl])[0] else 0
        iris_only += int(ir_ok.sum()) if tg.match("fingerprint", kf.fingerprint[t:t + 1, gsl])[0] else 0
    attempts = imp.fingerprint.shape[0] * sets
    return {"captures_per_attempt": k, "impostor_full": rate_with_ci(full, attempts),
            "impostor_fingerprint_only": rate_with_ci(fp_only, attempts),
            "impostor_iris_only": rate_with_ci(iris_only, attempts)}


def capture_bank_attack(imp: KeyFeatures, targets: list[Target], codes: dict[str, fuzzy.Code],
                        k: int) -> dict[str, object]:
    """Every bank entry (one impostor identity's first k captures) through every target's helper data; per
    modality the candidate secrets ranked by how often the bank produces them; pairs tried in rank order.
    A secret the bank never produces must be brute-forced (2^k_modality guesses for that modality)."""
    bank_fp, bank_ir = imp.fingerprint[:, :k], imp.iris[:, :k]
    ranks, guesses = [], []
    for tg in targets:
        rk = []
        for modality, bank, want in (("fingerprint", bank_fp, tg.r_fp), ("iris", bank_ir, tg.r_ir)):
            vals, counts = np.unique(np.array(tg.decode(modality, bank), dtype=object), return_counts=True)
            order = [vals[i] for i in np.argsort(-counts, kind="stable")]
            rk.append(order.index(want) + 1 if want in order else None)
        ranks.append(rk)
        g_fp = rk[0] if rk[0] is not None else 2 ** codes["fingerprint"].k
        g_ir = rk[1] if rk[1] is not None else 2 ** codes["iris"].k
        guesses.append(g_fp * g_ir)
    g = np.array(guesses, np.float64)
    return {"bank_entries": int(bank_fp.shape[0]), "captures_per_entry": k, "targets": len(targets),
            "fingerprint_secret_in_bank": int(sum(r[0] is not None for r in ranks)),
            "iris_secret_in_bank": int(sum(r[1] is not None for r in ranks)),
            "guesses_median": float(np.median(g)), "guesses_p10": float(np.percentile(g, 10)),
            "guesses_min": float(g.min()), "bits_median": float(np.log2(np.median(g))),
            "bits_p10": float(np.log2(np.percentile(g, 10))),
            "broken_within_guesses": {str(x): int((g <= x).sum()) for x in (1, 10, 100, 10**4, 10**6)},
            "nominal_bits": codes["fingerprint"].k + codes["iris"].k}


def same_flow_rows(kf: KeyFeatures, same: KeyFeatures, targets: list[Target], k: int) -> dict[str, object]:
    """Another finger with the victim's own ridge flow (class, singular points, orientation field, outline), k
    capture pairs, one attempt per target: what the fingerprint extractor matches, and what is released when
    the iris is the victim's own genuine capture."""
    gsl = slice(ENROL, ENROL + k)
    fp_hits = released = 0
    for t, tg in enumerate(targets):
        ok = bool(tg.match("fingerprint", same.fingerprint[t:t + 1, :k])[0])
        fp_hits += int(ok)
        released += int(ok and tg.match("iris", kf.iris[t:t + 1, gsl])[0])
    return {"captures_per_attempt": k, "fingerprint_extractor_matches": rate_with_ci(fp_hits, len(targets)),
            "released_with_the_victims_iris": rate_with_ci(released, len(targets))}


def test_targets(kf: KeyFeatures, codes: dict[str, fuzzy.Code]) -> list[Target]:
    """Each test identity enrolled from its first ENROL captures (the enrolment's randomness seeded by index)."""
    return [Target(kf.fingerprint[t, :ENROL], kf.iris[t, :ENROL], codes, f"test-{t}".encode())
            for t in range(kf.fingerprint.shape[0])]


def test_figures(kf: KeyFeatures, imp: KeyFeatures, same_flow: KeyFeatures, codes: dict[str, fuzzy.Code],
                 k: int) -> dict[str, object]:
    """FRR, independent impostor attempts (1 and k capture pairs), the same-flow finger, and the capture-bank
    attack, on test."""
    targets = test_targets(kf, codes)
    genuine: dict[str, object] = {}
    for size in (1, k):
        sets = (kf.fingerprint.shape[1] - ENROL) // size
        n = fails = 0
        for t, tg in enumerate(targets):
            for s in range(sets):
                sl = slice(ENROL + s * size, ENROL + (s + 1) * size)
                ok = (
                    tg.match("fingerprint", kf.fingerprint[t : t + 1, sl])[0]
                    and tg.match("iris", kf.iris[t : t + 1, sl])[0]
                )
                n += 1
                fails += int(not ok)
        genuine[f"frr_{size}_captures"] = rate_with_ci(fails, n)
    return {"genuine": genuine, "impostor_1_capture": impostor_rows(kf, imp, targets, 1),
            f"impostor_{k}_captures": impostor_rows(kf, imp, targets, k),
            f"same_flow_finger_{k}_captures": same_flow_rows(kf, same_flow, targets, k),
            "capture_bank_attack_1_capture": capture_bank_attack(imp, targets, codes, 1),
            f"capture_bank_attack_{k}_captures": capture_bank_attack(imp, targets, codes, k)}


def real_prints(ext: FeatureExtractor, test_iris: np.ndarray, codes: dict[str, fuzzy.Code], k: int,
                identities: int, test_fp: np.ndarray) -> dict[str, object]:
    """Enrol p1_1 (with each test identity's iris), release with p1_2 (genuine) and p2_1 (another finger).
    Besides, how far the real prints sit from the generated ones: the norm of the mean single-pass fingerprint
    embedding of the three real prints and of 60 generated test prints (1 = all in one direction, a cone), and
    the mean cosine between real and generated prints."""
    base = shared_data_dir() / "fingerprints"
    fps = {n: fingerprint_input(load_capture((base / f"{n}.png").read_bytes()), ext.fp_size)
           for n in ("p1_1", "p1_2", "p2_1")}
    names = list(fps)
    e = ext.run(np.stack([fps[n] for n in names]), np.repeat(test_iris[:1, 0].astype(np.float32), 3, 0))
    cos = {f"{a}~{b}": float(e.fingerprint[i] @ e.fingerprint[j]) for i, a in enumerate(names)
           for j, b in enumerate(names) if i < j}
    real1 = ext.single_pass(np.stack([fps[n] for n in names]), np.repeat(test_iris[:1, 0], 3, 0)).fingerprint
    gen1 = ext.single_pass(test_fp[:60, 0], test_iris[:60, 0]).fingerprint
    cone = {"real_mean_norm": float(np.linalg.norm(real1.mean(0))), "generated_mean_norm":
            float(np.linalg.norm(gen1.mean(0))), "real_to_generated_cosine": float((real1 @ gen1.T).mean())}
    kf_fp = ext.whitening.apply(e).fingerprint  # (3, dim)
    sets = (test_iris.shape[1] - ENROL) // k
    out: dict[str, list[int]] = {"p1_2": [], "p2_1": [], "p1_1": []}
    fp_match: dict[str, list[int]] = {"p1_2": [], "p2_1": [], "p1_1": []}
    for t in range(identities):
        ir_emb = ext.run(np.repeat(fps["p1_1"][None], test_iris.shape[1], 0), test_iris[t].astype(np.float32))
        ir_kf = ext.whitening.apply(ir_emb).iris
        enrol_fp = np.repeat(kf_fp[:1], ENROL, 0)
        tg = Target(enrol_fp, ir_kf[:ENROL], codes, f"real-{t}".encode())
        for s in range(sets):
            ir_ok = tg.match("iris", ir_kf[None, ENROL + s * k:ENROL + (s + 1) * k])[0]
            for probe in out:
                f = np.repeat(kf_fp[names.index(probe)][None, None], k, 1)
                ok = bool(tg.match("fingerprint", f)[0])
                fp_match[probe].append(int(ok))
                out[probe].append(int(ok and ir_ok))
    return {"fingerprint_cosine": cos, "cone_single_view": cone, "iris_identities": identities,
            "release": {p: rate_with_ci(sum(v), len(v)) for p, v in out.items()},
            "fingerprint_extractor_match": {p: rate_with_ci(sum(v), len(v)) for p, v in fp_match.items()},
            "note": "one impression per real finger: every attempt presents the same fingerprint image; the iris "
                    "captures and each enrolment's random rotation and secret vary"}


def score_sets(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine scores of (identities, captures, dim) embeddings: all capture pairs."""
    n, c, _ = emb.shape
    flat = emb.reshape(n * c, -1)
    labels = np.repeat(np.arange(n), c)
    sim = flat @ flat.T
    iu = np.triu_indices(n * c, 1)
    same = (labels[:, None] == labels[None, :])[iu]
    return sim[iu][same], sim[iu][~same]


def write_manifest_metrics(res: dict, model: Path) -> None:  # type: ignore[type-arg]
    """Copy the headline test measurements into the model's manifest (next to sha256 and the input spec)."""
    path = model.with_name("manifest.json")
    manifest = json.loads(path.read_text())
    t = res["test"]
    k = RELEASE_CAPTURES
    manifest["metrics"] = {
        "test_set": res["splits"], "eer_test": {m: round(v["eer"], 4) for m, v in res["scores_test"].items()},
        "codes": res["codes_used"], "frr": t["genuine"], "impostor_1_capture": t["impostor_1_capture"],
        f"impostor_{k}_captures": t[f"impostor_{k}_captures"],
        "capture_bank_attack": t[f"capture_bank_attack_{k}_captures"],
        "real_prints_release": res["real_prints"]["release"], "details": "models/msenet/results/eval.json",
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def same_flow_only(model: Path, n: int, k: int, cache: Path, workers: int, results: Path) -> None:
    """The same-flow row for the shipped codes, with the genuine match rate and mean cosines beside it."""
    ext = FeatureExtractor(model)
    test = inputs(SPLIT_BASE["eval"], n, ENROL + 3 * k, cache, workers, fp_size=ext.fp_size)
    same = inputs(SAME_FLOW_BASE, n, k, cache, workers, flow_base=SPLIT_BASE["eval"], fp_size=ext.fp_size)
    test_emb, test_kf = embed(ext, test)
    same_emb, same_kf = embed(ext, same)
    targets = test_targets(test_kf, DEFAULT_CODES)
    row = same_flow_rows(test_kf, same_kf, targets, k)
    genuine = sum(int(tg.match("fingerprint", test_kf.fingerprint[t:t + 1, ENROL:ENROL + k])[0])
                  for t, tg in enumerate(targets))
    row["genuine_fingerprint_extractor_matches"] = rate_with_ci(genuine, n)
    tf, sf = test_emb.fingerprint, same_emb.fingerprint  # unit-norm multi-view embeddings
    row["mean_cosine"] = {"genuine": float(np.mean([tf[t, 0] @ tf[t, 1] for t in range(n)])),
                          "same_flow_finger": float(np.mean([tf[t, 0] @ sf[t, 0] for t in range(n)])),
                          "another_finger": float(np.mean([tf[t, 0] @ tf[(t + 1) % n, 0] for t in range(n)]))}
    row["model_sha256"] = ext.sha256
    results.mkdir(parents=True, exist_ok=True)
    (results / "same_flow.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val-identities", type=int, default=300)
    ap.add_argument("--test-targets", type=int, default=200)
    ap.add_argument("--impostors", type=int, default=10_000, help="test impostor identities")
    ap.add_argument("--impostor-captures", type=int, default=3, help="captures per impostor identity")
    ap.add_argument("--real-identities", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=Path("runs/msenet/eval"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--fp-size", type=int, default=None,
                    help="fingerprint input pixels a side (default: the model's, from its manifest); with "
                         "--generate-only, for a model not exported yet")
    ap.add_argument("--also-fp-size", type=int, action="append", default=[],
                    help="also cache the generated inputs at this size, from the same captures (repeatable)")
    ap.add_argument("--model", type=Path, default=HERE / "msenet.onnx",
                    help="ONNX model (its manifest and whitening beside it)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where eval.json and roc.png go")
    ap.add_argument("--choose-only", action="store_true", help="print the validation choice of codes and stop")
    ap.add_argument("--same-flow-only", action="store_true",
                    help="only the same-flow row with the default codes, into same_flow.json (no validation)")
    a = ap.parse_args()
    k = RELEASE_CAPTURES
    if a.same_flow_only:
        same_flow_only(a.model, a.test_targets, k, a.cache, a.workers, a.results)
        return
    if a.fp_size is None:
        a.fp_size = FeatureExtractor(a.model).fp_size
    elif not a.generate_only and a.fp_size != FeatureExtractor(a.model).fp_size:
        raise SystemExit(f"--fp-size {a.fp_size} is not the input of {a.model}")
    sizes = {"fp_size": a.fp_size, "also_fp_sizes": tuple(a.also_fp_size)}
    val = inputs(SPLIT_BASE["val"], a.val_identities, ENROL + k, a.cache, a.workers, **sizes)
    if a.choose_only:
        val_emb, val_kf = embed(FeatureExtractor(a.model), val)
        print("validation EER", {m: round(eer(*score_sets(getattr(val_emb, m))), 4)
                                 for m in ("fingerprint", "iris", "fused")})
        rates = per_modality_rates(val_kf, CANDIDATE_CODES, k)
        for m, rows in rates.items():
            for r in rows:
                print(m, r["label"], "FRR", round(1 - float(np.mean(r["genuine_ok"])), 3), "impostor",
                      r["impostor_matches"], "/", r["impostor_attempts"])
        print(json.dumps(_public(choose_codes(rates)["chosen"])))
        return
    test = inputs(SPLIT_BASE["eval"], a.test_targets, ENROL + 3 * k, a.cache, a.workers, **sizes)
    imp = inputs(IMPOSTOR_BASE, a.impostors, a.impostor_captures, a.cache, a.workers, **sizes)
    same = inputs(SAME_FLOW_BASE, a.test_targets, k, a.cache, a.workers, flow_base=SPLIT_BASE["eval"],
                  **sizes)
    if a.generate_only:
        return
    ext = FeatureExtractor(a.model)
    t0 = time.time()
    _, val_kf = embed(ext, val)
    test_emb, test_kf = embed(ext, test)
    _, imp_kf = embed(ext, imp)
    _, same_kf = embed(ext, same)
    res: dict[str, object] = {"model_sha256": ext.sha256, "embed_s": round(time.time() - t0, 1),
                              "splits": {"val": f"seeds {SPLIT_BASE['val']}..+{a.val_identities - 1} x {ENROL + k}",
                                         "test_targets": f"seeds {SPLIT_BASE['eval']}..+{a.test_targets - 1} x "
                                                         f"{ENROL + 3 * k}",
                                         "test_impostors": f"seeds {IMPOSTOR_BASE}..+{a.impostors - 1} x "
                                                           f"{a.impostor_captures}",
                                         "test_same_flow": f"seeds {SAME_FLOW_BASE}..+{a.test_targets - 1} x {k}, "
                                                           "each with its test target's ridge flow"}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    scores = {}
    for name in ("fingerprint", "iris", "fused"):
        g, i = score_sets(getattr(test_emb, name))
        scores[name] = {"eer": eer(g, i), "genuine_mean": float(g.mean()), "impostor_mean": float(i.mean()),
                        "impostor_std": float(i.std())}
        thr = np.linspace(-1, 1, 801)
        far = (i[None, :] >= thr[:, None]).mean(1)
        tar = (g[None, :] >= thr[:, None]).mean(1)
        ax.semilogx(np.maximum(far, 1e-6), tar, label=f"{name} (EER {100 * scores[name]['eer']:.2f} %)")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("MSE-Net on generated test identities")
    ax.legend()
    fig.tight_layout()
    a.results.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.results / "roc.png", dpi=110)
    res["scores_test"] = scores
    rates = per_modality_rates(val_kf, CANDIDATE_CODES, k)
    choice = choose_codes(rates)
    res["validation"] = {"per_modality": {m: [_public(r) | {"frr": 1 - float(np.mean(r["genuine_ok"]))} for r in rows]
                                          for m, rows in rates.items()}, "choice": _public(choice["chosen"])}
    chosen = choice["chosen"]
    codes = dict(zip(("fingerprint", "iris"), chosen["codes"], strict=True)) if chosen else DEFAULT_CODES
    res["codes_used"] = {m: c.label for m, c in codes.items()}
    res["test"] = test_figures(test_kf, imp_kf, same_kf, codes, k)
    res["real_prints"] = real_prints(ext, test["iris"], codes, k, a.real_identities, test["fingerprint"])
    (a.results / "eval.json").write_text(json.dumps(res, indent=2) + "\n")
    write_manifest_metrics(res, a.model)
    print(json.dumps({kk: res[kk] for kk in ("codes_used", "test", "real_prints")}, indent=1))


if __name__ == "__main__":
    main()
