"""Biometric benchmark: preprocessing and MSE-Net (ONNX Runtime CPU) latency per capture, enrolment and key
release (4-capture enrolment incl. the Argon2id-stretched R and profile sealing; 3-capture release incl. the
Argon2id profile key, R, and the key-release service's decision, in process: no network).

    .venv/bin/python benchmarks/biometrics_bench.py [--repeats 20] [--out benchmarks/results/biometrics_bench.json]

Also the fuzzy extractor's reproduction alone (rotation, selection and decoding of 3 averaged captures), for the
default codes and the RM(1,3) codes they replaced, interleaved in one run.

Reports p50/p95 in milliseconds and the machine it ran on. Generated identities only (no personal data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The generators live in models/ (not an installed package): run from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.biometrics import fuzzy
from gateway.biometrics import profile as profiles
from gateway.biometrics.features import FeatureExtractor
from gateway.biometrics.keyrelease import DEFAULT_CODES, RELEASE_CAPTURES, enrol_features, release_k_enc
from gateway.biometrics.preprocess import fingerprint_input, iris_input
from gateway.keyserver.service import KeyService, bio_key, release_proof, share_pad
from gateway.otp import STEP_S, totp_at
from gateway.rng import SeededRandom
from medshield_tools.bench.machine import describe
from medshield_tools.bench.stats import interleaved_latency_ms, latency_ms, time_calls
from models.synth import fingerprint, iris


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/biometrics_bench.json"))
    ap.add_argument("--note", default=None, help="what else ran on the machine, for the record")
    a = ap.parse_args()
    ext = FeatureExtractor()
    fps = fingerprint.impressions(4_000_001, 4 + RELEASE_CAPTURES)
    eyes = iris.captures(4_000_001, 4 + RELEASE_CAPTURES)
    fp_in = fingerprint_input(fps[0], ext.fp_size)[None]
    ir_in = iris_input(eyes[0])[None]
    ext.run(fp_in, ir_in)  # warm-up
    res: dict[str, object] = {
        "machine": describe(a.note),
        "fingerprint_preprocess": latency_ms(time_calls(lambda: fingerprint_input(fps[0], ext.fp_size), a.repeats)),
        "iris_preprocess": latency_ms(time_calls(lambda: iris_input(eyes[0]), a.repeats)),
        "msenet_onnx_cpu_one_pair": latency_ms(time_calls(lambda: ext.run(fp_in, ir_in), a.repeats)),
    }
    enrol_kf, fresh_kf = ext.key_features(fps[:4], eyes[:4]), ext.key_features(fps[4:], eyes[4:])
    previous = {"fingerprint": fuzzy.RmCode(m=3, blocks=8), "iris": fuzzy.RmCode(m=3, blocks=6)}
    calls = {}
    for modality in ("fingerprint", "iris"):
        for code in (DEFAULT_CODES[modality], previous[modality]):
            _, helper = fuzzy.generate(getattr(enrol_kf, modality), code, SeededRandom(code.label.encode()))
            fresh = getattr(fresh_kf, modality)
            calls[f"{modality} {code.label}"] = lambda f=fresh, h=helper: fuzzy.reproduce(f, h)
    res["fuzzy_reproduce_3_captures"] = interleaved_latency_ms(calls, a.repeats * 10)
    with tempfile.TemporaryDirectory() as tmp:
        pw = b"benchmark passphrase, long enough"
        ref = profiles.KeyServerRef(url="https://127.0.0.1:1", account="bench", ca_pem="")
        enrol_t = []
        for _ in range(max(3, a.repeats // 4)):
            t = time.perf_counter()
            e = enrol_features("bench", ext.key_features(fps[:4], eyes[:4]), "ws-bench", ref, ext.sha256)
            profiles.save(Path(tmp) / "bench.profile", e.profile, pw)
            enrol_t.append(time.perf_counter() - t)
        res["enrolment_4_captures"] = latency_ms(enrol_t)
        now = [time.time_ns()]
        svc = KeyService(Path(tmp) / "ks", clock=lambda: now[0])
        acct = svc.add_account("bench")
        svc.enrol("bench", acct.enrol_token, e.service_share, e.service_bio_key)

        def ask(prof: profiles.Profile, r: bytes) -> bytes | None:
            code = totp_at(acct.totp_secret, now[0] // (STEP_S * 1_000_000_000))
            nonce = os.urandom(16)
            padded = svc.release("bench", code, nonce, release_proof(bio_key(r), "bench", code, nonce))
            if padded is None:
                return None
            return bytes(x ^ y for x, y in zip(padded, share_pad(bio_key(r), "bench", nonce), strict=False))

        rel_t = []
        for _ in range(max(3, a.repeats // 4)):
            now[0] += STEP_S * 1_000_000_000  # a fresh step per release (replay refusal)
            t = time.perf_counter()
            prof = profiles.load(Path(tmp) / "bench.profile", pw)
            release_k_enc(prof, ext.key_features(fps[4:], eyes[4:]), "ws-bench", ext.sha256, ask)
            rel_t.append(time.perf_counter() - t)
        res[f"key_release_{RELEASE_CAPTURES}_captures"] = latency_ms(rel_t)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
