"""GPU parity and latency: every inference backend against the CPU reference, DS-Net and MSE-Net.

    .venv/bin/python benchmarks/gpu_bench.py [--out benchmarks/results/gpu] [--state-dir DIR] [--quick]
    .venv/bin/python benchmarks/gpu_bench.py --self-check --out /tmp/x    # no GPU: exercise every code path

Variants: TensorRT FP16 and FP32 (native runner), ORT TensorRT EP, ORT CUDA EP, CPU (ORT, the gateway's
default session settings). A variant whose backend is missing is recorded with the reason and skipped.

Parity, against the CPU variant (benchmarks/gpu_check.sh fails the run when a threshold is missed):
- DS-Net: the served path (DICOM bytes → decode → Segmenter.predict) on real CT — all 48 lung1 slices as
  16-bit DICOM and pydicom's CT_small.dcm. Pooled Dice of the masks ≥ 0.99; also the network's probability
  map difference at 256² (max and mean absolute) and the mask pixel counts, so an empty-vs-empty Dice is seen
  for what it is.
- MSE-Net: generated identities (models/synth, seeded), 4 enrolment and 3 release captures each. Every
  output's cosine to the CPU's ≥ 0.999; enrolment (both fuzzy extractors) on the CPU, then each genuine and
  impostor release decided by `keyrelease.raw_secrets` on the CPU's and on the variant's key features (whitened
  embeddings): the decisions and the released secrets must match.

Latency (p50/p95, ms, warm-up excluded): DS-Net network alone at 256², DS-Net served path on a 512² 16-bit
DICOM slice (decode + predict), MSE-Net network alone (batch 1 and 3), MSE-Net served path for one capture
pair (preprocess + network). The JSON records the GPU, driver, CUDA, TensorRT and ONNX Runtime versions.

`--self-check` (for a machine without a GPU) adds a second CPU variant with one thread, so the parity and
latency code runs end to end against a real second runner; its figures are not GPU results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # models.synth lives in the checkout

from gateway import codecs  # noqa: E402
from gateway.inference import ModelRunner, available_backends, create_runner  # noqa: E402
from gateway.logging import configure_logging  # noqa: E402
from gateway.resources import MODELS_DIR, shared_data_dir  # noqa: E402
from gateway.segment import Segmenter, preprocess_hu  # noqa: E402
from medshield_tools.bench.machine import describe  # noqa: E402
from medshield_tools.bench.stats import RepetitionRule, latency_ms, repeat, timed  # noqa: E402
from medshield_tools.scanner_sim import dicom_from_hu  # noqa: E402

DSNET = MODELS_DIR / "dsnet" / "dsnet.onnx"
MSENET = MODELS_DIR / "msenet" / "msenet.onnx"
DICE_MIN = 0.99
COSINE_MIN = 0.999
TARGET_DSNET_TRT_FP16_MS = 2.0
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tensorrt-fp16": ("tensorrt", {"precision": "fp16"}),
    "tensorrt-fp32": ("tensorrt", {"precision": "fp32"}),
    "tensorrt-ep": ("tensorrt-ep", {}),
    "cuda": ("cuda", {}),
    "cpu": ("cpu", {}),
}
SELF_CHECK_VARIANT = ("cpu-1-thread", ("cpu", {"threads": 1}))


def versions() -> dict[str, Any]:
    """GPU, driver, CUDA (driver and runtime), TensorRT and ONNX Runtime versions; what is missing says why."""
    out: dict[str, Any] = {}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
            out["nvidia_smi"] = [line.strip() for line in query.strip().splitlines()]
            header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
            cuda = [part for part in header.split("|") if "CUDA Version" in part]
            out["nvidia_smi_cuda"] = cuda[0].split("CUDA Version:")[1].strip() if cuda else None
        except (OSError, subprocess.SubprocessError) as exc:
            out["nvidia_smi"] = f"failed: {exc}"
    else:
        out["nvidia_smi"] = "not found"
    try:
        from gateway.inference.cudart import CudaRuntime

        cuda_rt = CudaRuntime()
        out["cuda"] = cuda_rt.versions()
        out["gpu"] = cuda_rt.device_name()
        out["compute_capability"] = "{:d}.{:d}".format(*cuda_rt.compute_capability())
    except Exception as exc:  # noqa: BLE001 - record why, whatever it is
        out["cuda"] = f"unavailable: {exc}"
    try:
        import tensorrt

        out["tensorrt"] = str(tensorrt.__version__)
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from its libraries
        out["tensorrt"] = f"unavailable: {exc}"
    try:
        import onnxruntime as ort

        out["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers(),
                              "device": ort.get_device()}
    except ImportError as exc:
        out["onnxruntime"] = f"unavailable: {exc}"
    out["backends"] = available_backends()
    return out


def make_runner(variant: tuple[str, dict[str, Any]], model: Path, state_dir: Path) -> ModelRunner:
    backend, options = variant
    if backend == "tensorrt":
        from gateway.inference.tensorrt_native import TensorRTRunner

        runner: ModelRunner = TensorRTRunner(model, state_dir=state_dir, **options)
        runner.warmup()
        return runner
    return create_runner(model, backend, state_dir=state_dir, **options)


def measure(fn: Callable[[], Any], quick: bool) -> dict[str, float]:
    rule = RepetitionRule(warmup=2 if quick else 3, min_reps=5 if quick else 30, max_reps=20 if quick else 300,
                          budget_s=0.5 if quick else 4.0, target_rel_ci=0.01)
    return latency_ms(repeat(timed(fn), rule).total)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


# ---------------------------------------------------------------- inputs


def real_ct() -> list[tuple[str, bytes]]:
    """(name, DICOM bytes): every lung1 slice as signed 16-bit DICOM with its pixel spacing, and CT_small.dcm."""
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        volume, spacing = data["image_hu"], data["spacing_zyx_mm"]
    slices = [(f"lung1/z{z:02d}", dicom_from_hu(volume[z], instance=z + 1, spacing_mm=(float(spacing[1]),
               float(spacing[2])), thickness_mm=float(spacing[0]))) for z in range(volume.shape[0])]
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
        if path:
            slices.append(("pydicom/CT_small", Path(path).read_bytes()))
    except ImportError:
        pass
    return slices


def identities(count: int) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Generated (fingerprints, irises) of `count` identities, 7 captures each (4 enrol + 3 release)."""
    from models.synth import fingerprint, iris

    return [(fingerprint.impressions(7_100_000 + i, 7), iris.captures(7_100_000 + i, 7)) for i in range(count)]


# ---------------------------------------------------------------- DS-Net


def segmenter_on(runner: ModelRunner) -> Segmenter:
    """The served segmenter (manifest, gate, resizing) with `runner` as its network."""
    seg = Segmenter(backend="cpu", threads=1)
    seg.runner = runner
    return seg


def dsnet_masks(seg: Segmenter, images: list[codecs.DecodedImage]) -> list[np.ndarray]:
    return [np.asarray(seg.predict(img), bool) for img in images]


def dsnet_parity(ref_masks: list[np.ndarray], ref_probs: np.ndarray, seg: Segmenter,
                 images: list[codecs.DecodedImage], net_inputs: np.ndarray) -> dict[str, Any]:
    masks = dsnet_masks(seg, images)
    a = np.concatenate([m.ravel() for m in masks])
    b = np.concatenate([m.ravel() for m in ref_masks])
    probs = np.stack([seg.runner.run(x[None, None])[0, 0] for x in net_inputs])
    diff = np.abs(probs - ref_probs)
    return {
        "dice_pooled": dice(a, b), "pass": dice(a, b) >= DICE_MIN, "threshold": DICE_MIN,
        "mask_pixels": int(a.sum()), "mask_pixels_cpu": int(b.sum()),
        "slices_differing": int(sum(bool((m != r).any()) for m, r in zip(masks, ref_masks, strict=False))),
        "slices": len(masks),
        "prob_max_abs_diff": float(diff.max()), "prob_mean_abs_diff": float(diff.mean()),
    }


# ---------------------------------------------------------------- MSE-Net


def msenet_inputs(people: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    from gateway.biometrics.features import FeatureExtractor

    extractor = FeatureExtractor(MSENET)
    return [extractor.inputs(fps, irs) for fps, irs in people]


def key_features(extractor: Any, outs: dict[str, np.ndarray], rows: slice) -> Any:
    """The key release's per-modality key features (whitened embeddings) of some capture rows."""
    from gateway.biometrics.features import Embeddings

    return extractor.whitening.apply(Embeddings(fingerprint=outs["emb_fingerprint"][rows],
                                                iris=outs["emb_iris"][rows], fused=outs["emb_fused"][rows]))


def msenet_parity(cpu: ModelRunner, runner: ModelRunner, inputs: list[tuple[np.ndarray, np.ndarray]], extractor: Any
                  ) -> dict[str, Any]:
    """Cosine of every output, and key-release decisions: enrolment (both fuzzy extractors) on the CPU's key
    features, then each genuine and impostor release decided by `keyrelease.raw_secrets` on the CPU's and on
    the variant's features: the same verdicts and the same secrets."""
    from types import SimpleNamespace

    from gateway.biometrics import fuzzy
    from gateway.biometrics.keyrelease import DEFAULT_CODES, raw_secrets
    from gateway.rng import system_random

    cos: dict[str, float] = {}
    cpu_outs, gpu_outs = [], []
    for fp, ir in inputs:
        want = cpu.run_all({"fingerprint": fp, "iris": ir})
        # Enrolment batch (4) and release batch (3) as the gateway's callers present them.
        got_enrol = runner.run_all({"fingerprint": fp[:4], "iris": ir[:4]})
        got_release = runner.run_all({"fingerprint": fp[4:], "iris": ir[4:]})
        got = {name: np.concatenate([got_enrol[name], got_release[name]]) for name in cpu.output_names}
        for name in cpu.output_names:
            cos[name] = min(cos.get(name, 1.0), float(cosine_rows(got[name], want[name]).min()))
        cpu_outs.append(want)
        gpu_outs.append(got)
    enrolled = []
    for outs in cpu_outs:
        enrol = key_features(extractor, outs, slice(0, 4))
        r_fp, helper_fp = fuzzy.generate(enrol.fingerprint, DEFAULT_CODES["fingerprint"], system_random)
        r_ir, helper_ir = fuzzy.generate(enrol.iris, DEFAULT_CODES["iris"], system_random)
        enrolled.append(((r_fp, r_ir), SimpleNamespace(helper_fingerprint=helper_fp, helper_iris=helper_ir)))
    agree = released = attempts = genuine_ok = false_releases = 0
    for i, (secrets, prof) in enumerate(enrolled):
        for j in range(len(inputs)):
            if j != i and (j - i) % len(inputs) > 3:  # genuine + 3 impostors per identity
                continue
            # Release succeeds exactly when both decoded secrets equal the enrolled ones (they give R, R gives
            # the key whose id the profile holds); the same decodings on both sides mean the same verdicts.
            r_cpu = raw_secrets(key_features(extractor, cpu_outs[j], slice(4, None)), prof)
            r_gpu = raw_secrets(key_features(extractor, gpu_outs[j], slice(4, None)), prof)
            attempts += 1
            agree += int(r_cpu == r_gpu)
            released += int(r_gpu == secrets)
            genuine_ok += int(j == i and r_cpu == secrets)
            false_releases += int(j != i and r_cpu == secrets)
    worst = min(cos.values())
    return {"cosine_min": cos, "cosine_threshold": COSINE_MIN, "identities": len(inputs),
            "release_attempts": attempts, "decisions_agree": agree, "released_by_variant": released,
            "genuine_released_by_cpu": genuine_ok, "impostors_released_by_cpu": false_releases,
            "pass": worst >= COSINE_MIN and agree == attempts}


# ---------------------------------------------------------------- the run


def run_variant(name: str, variant: tuple[str, dict[str, Any]], ctx: dict[str, Any], args: argparse.Namespace
                ) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": variant[0], **variant[1]}
    t0 = time.perf_counter()
    dsnet = make_runner(variant, DSNET, args.state_dir)
    out["dsnet_load_s"] = round(time.perf_counter() - t0, 2)
    out["dsnet_engine_built"] = getattr(dsnet, "built", None)
    seg = segmenter_on(dsnet)
    x = ctx["latency_x"]
    served = ctx["served_512"]
    out["latency_ms"] = {
        "dsnet_network_256": measure(lambda: dsnet.run(x[None, None]), args.quick),
        "dsnet_served_512_16bit": measure(lambda: seg.predict(codecs.decode(served)), args.quick),
    }
    if name != "cpu":
        out["dsnet_parity"] = dsnet_parity(ctx["ref_masks"], ctx["ref_probs"], seg, ctx["images"], ctx["net_inputs"])
    t0 = time.perf_counter()
    mse = make_runner(variant, MSENET, args.state_dir)
    out["msenet_load_s"] = round(time.perf_counter() - t0, 2)
    fp, ir = ctx["mse_inputs"][0]
    one = {"fingerprint": fp[:1], "iris": ir[:1]}
    three = {"fingerprint": fp[4:], "iris": ir[4:]}
    capture = ctx["mse_capture"]
    extractor = ctx["extractor"]

    def served_pair() -> None:
        f, i = extractor.inputs([capture[0]], [capture[1]])
        mse.run_all({"fingerprint": f, "iris": i})

    out["latency_ms"].update({
        "msenet_network_batch1": measure(lambda: mse.run_all(one), args.quick),
        "msenet_network_batch3": measure(lambda: mse.run_all(three), args.quick),
        "msenet_served_one_pair": measure(served_pair, args.quick),
    })
    if name != "cpu":
        out["msenet_parity"] = msenet_parity(ctx["mse_cpu"], mse, ctx["mse_inputs"], ctx["extractor"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu")
    parser.add_argument("--state-dir", type=Path, help="engine cache (default: a folder under --out's parent tmp)")
    parser.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--identities", type=int, default=12, help="generated MSE-Net identities for parity")
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--max-slices", type=int, help="DS-Net parity on the first N real slices only (smoke run)")
    parser.add_argument("--self-check", action="store_true", help="no GPU: add a 1-thread CPU variant as the subject")
    parser.add_argument("--note", default="")
    parser.add_argument("--versions-only", action="store_true", help="write versions.json and stop")
    parser.add_argument("--summarize", action="store_true",
                        help="write summary.md / summary.json from what is in --out (gpu_check.sh's last step)")
    parser.add_argument("--steps", type=Path, help="with --summarize: gpu_check.sh's steps.tsv")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    configure_logging("warning", stream=sys.stderr)
    if args.versions_only:
        found = versions()
        (args.out / "versions.json").write_text(json.dumps(found, indent=2, default=str) + "\n")
        print(json.dumps(found, indent=2, default=str))
        return 0
    if args.summarize:
        return summarize(args.out, args.steps)
    if args.state_dir is not None:
        return measure_all(args)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="medshield-gpu-bench-") as tmp:  # engines built for this run only
        args.state_dir = Path(tmp)
        return measure_all(args)


def measure_all(args: argparse.Namespace) -> int:
    """Parity and latency of every variant (see the module doc); 1 when a parity check failed."""
    variants = dict(VARIANTS)
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
        variants = {k: VARIANTS[k] for k in wanted}
        variants.setdefault("cpu", VARIANTS["cpu"])
    if args.self_check:
        variants[SELF_CHECK_VARIANT[0]] = SELF_CHECK_VARIANT[1]
    started = time.perf_counter()
    report: dict[str, Any] = {"when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "versions": versions(), "machine": describe(note=args.note or None),
                              "self_check": args.self_check, "variants": {}}

    # The CPU reference, computed once.
    ct = real_ct()
    if args.max_slices:
        ct = ct[: max(args.max_slices, 34)][-args.max_slices:]  # keep z=33, the served slice, among them
    served = next(item for item in ct if item[0] == "lung1/z33")
    images = [codecs.decode(data) for _, data in ct]
    ref_seg = Segmenter(backend="cpu")
    ref_masks = dsnet_masks(ref_seg, images)
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        volume = data["image_hu"]
    zs = [int(name.split("/z")[1]) for name, _ in ct if name.startswith("lung1/z")]
    net_inputs = np.stack([preprocess_hu(volume[z]) for z in zs])
    latency_x = preprocess_hu(volume[33])
    ref_probs = np.stack([ref_seg.runner.run(x[None, None])[0, 0] for x in net_inputs])
    from gateway.biometrics.features import FeatureExtractor

    people = identities(args.identities)
    ctx = {
        "images": images, "ref_masks": ref_masks, "ref_probs": ref_probs, "net_inputs": net_inputs,
        "latency_x": latency_x,
        "served_512": served[1], "mse_inputs": msenet_inputs(people),
        "mse_cpu": create_runner(MSENET, "cpu"), "extractor": FeatureExtractor(MSENET),
        "mse_capture": (people[0][0][0], people[0][1][0]),
    }
    report["inputs"] = {"dsnet_parity": [name for name, _ in ct], "served_512": served[0] + " (signed 16-bit DICOM)",
                        "reference_mask_pixels": int(sum(int(m.sum()) for m in ref_masks)),
                        "msenet_identities": args.identities}
    available = available_backends()
    for name, variant in variants.items():
        reason = available.get(variant[0])
        if reason is not None:
            report["variants"][name] = {"backend": variant[0], "unavailable": reason}
            print(f"{name:14s} unavailable: {reason}", flush=True)
            continue
        try:
            report["variants"][name] = run_variant(name, variant, ctx, args)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others' figures
            report["variants"][name] = {"backend": variant[0], "error": f"{type(exc).__name__}: {exc}",
                                        "traceback": traceback.format_exc(limit=6)}
        print(summary_line(name, report["variants"][name]), flush=True)
    report["checks"] = checks(report["variants"])
    report["wall_s"] = round(time.perf_counter() - started, 1)
    path = args.out / "parity_latency.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path} ({report['wall_s']} s)")
    failed = [c for c in report["checks"] if c["ok"] is False and not c.get("target")]
    return 1 if failed else 0


def summary_line(name: str, v: dict[str, Any]) -> str:
    if "error" in v:
        return f"{name:14s} ERROR {v['error']}"
    lat = v["latency_ms"]
    parts = [
        f"{name:14s} DS-Net 256² p50 {lat['dsnet_network_256']['p50_ms']:7.3f} p95 "
        f"{lat['dsnet_network_256']['p95_ms']:7.3f} | served 512² p50 {lat['dsnet_served_512_16bit']['p50_ms']:7.2f}"
        f" | MSE-Net b1 p50 {lat['msenet_network_batch1']['p50_ms']:7.3f} ms"
    ]
    if "dsnet_parity" in v:
        parts.append(f"Dice {v['dsnet_parity']['dice_pooled']:.4f}")
    if "msenet_parity" in v:
        mp = v["msenet_parity"]
        parts.append(
            f"cos {min(mp['cosine_min'].values()):.5f} decisions {mp['decisions_agree']}/{mp['release_attempts']}"
        )
    return "  ".join(parts)


def checks(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each threshold of the issue: ok True/False, or None where the variant did not run."""
    out = []
    for name, v in variants.items():
        if name == "cpu":
            continue
        ran = "latency_ms" in v
        out.append({"check": f"{name}: DS-Net Dice ≥ {DICE_MIN}",
                    "ok": v["dsnet_parity"]["pass"] if ran else None, "why": v.get("unavailable") or v.get("error")})
        out.append({"check": f"{name}: MSE-Net cosine ≥ {COSINE_MIN} and same release decisions",
                    "ok": v["msenet_parity"]["pass"] if ran and "msenet_parity" in v else None,
                    "why": v.get("unavailable") or v.get("error")})
    fp16 = variants.get("tensorrt-fp16", {})
    p50 = fp16.get("latency_ms", {}).get("dsnet_network_256", {}).get("p50_ms")
    out.append({"check": f"tensorrt-fp16: DS-Net network ≤ {TARGET_DSNET_TRT_FP16_MS} ms at 256² (target)",
                "ok": None if p50 is None else p50 <= TARGET_DSNET_TRT_FP16_MS, "value_ms": p50,
                "target": True})
    return out


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarize(out: Path, steps_path: Path | None) -> int:
    """summary.json (steps, versions, checks, latency table, e2e) and summary.md, from the files in `out`."""
    steps: dict[str, dict[str, str]] = {}
    if steps_path and steps_path.is_file():
        for line in steps_path.read_text().splitlines()[1:]:
            name, status, seconds, note = (line.split("\t") + ["", "", ""])[:4]
            if status == "not-selected" and name in steps:
                continue  # a rerun (--only) left this step's earlier result standing
            steps[name] = {"status": status, "seconds": seconds, "note": note}  # a rerun's row replaces
    log = out / "log.txt"
    if "pytest-gpu" in steps and log.is_file():
        tests = [
            line for line in log.read_text(errors="replace").splitlines() if line.startswith("pytest-gpu summary:")
        ]
        if tests:
            steps["pytest-gpu"]["note"] = tests[-1].split(":", 1)[1].strip()
    found = _load(out / "versions.json") or {}
    bench = _load(out / "parity_latency.json") or {}
    e2e = _load(out / "e2e.json")
    checks_ = list(bench.get("checks", []))
    if e2e:
        p50 = e2e["latency_ms"]["p50"]
        checks_.append({"check": "e2e p50 ≤ 15 ms, 512² 16-bit slice (target)", "ok": p50 <= 15.0,
                        "value_ms": p50, "target": True})
    summary = {"steps": steps, "versions": found, "checks": checks_,
               "e2e": {k: e2e[k] for k in ("backend", "latency_ms", "throughput_images_per_s", "workers")
                       if k in e2e} if e2e else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = ["# GPU check", "", f"GPU: {found.get('gpu', found.get('nvidia_smi'))}; CUDA: {found.get('cuda')};"
             f" TensorRT: {found.get('tensorrt')}; ONNX Runtime: {found.get('onnxruntime')}", "",
             "| step | status | s | note |", "|---|---|---:|---|"]
    lines += [f"| {n} | {s['status']} | {s['seconds']} | {s['note']} |" for n, s in steps.items()]
    lines += ["", "| check | result |", "|---|---|"]
    for c in checks_:
        verdict = {True: "ok", False: "FAILED" if not c.get("target") else "missed", None: "not run"}[c["ok"]]
        extra = (
            f" ({c['value_ms']:.3f} ms)"
            if c.get("value_ms") is not None
            else (f" ({c['why']})" if c.get("why") else "")
        )
        lines.append(f"| {c['check']} | {verdict}{extra} |")
    lines += ["", "p50 / p95 in ms (warm-up excluded):", "",
              "| variant | DS-Net 256² | DS-Net served 512² 16-bit | MSE-Net b1 | MSE-Net b3 | MSE-Net served pair |",
              "|---|---:|---:|---:|---:|---:|"]
    keys = ("dsnet_network_256", "dsnet_served_512_16bit", "msenet_network_batch1", "msenet_network_batch3",
            "msenet_served_one_pair")
    for name, v in bench.get("variants", {}).items():
        if "latency_ms" in v:
            cells = [f"{v['latency_ms'][k]['p50_ms']:.3f} / {v['latency_ms'][k]['p95_ms']:.3f}" for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {name} | " + (v.get("unavailable") or v.get("error", "?"))[:160] + " |||||")
    if e2e:
        lat = e2e["latency_ms"]
        lines += ["", f"End to end through mosquitto ({e2e.get('backend')}): p50 {lat['p50']:.2f} ms, p95 "
                  f"{lat['p95']:.2f} ms, {e2e['throughput_images_per_s']:.1f} images/s"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
