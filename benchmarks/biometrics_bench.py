"""Biometric benchmark: preprocessing and MSE-Net (ONNX Runtime CPU) latency per capture, enrolment and key
release end to end (4-capture enrolment incl. scrypt profile sealing; 1-capture release incl. TOTP check).

    .venv/bin/python benchmarks/biometrics_bench.py [--repeats 20] [--out benchmarks/results/biometrics_bench.json]

Reports p50/p95 in milliseconds and the machine it ran on. Generated identities only (no personal data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# The generators live in models/ (not an installed package): run from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.bench.stats import latency_ms, time_calls
from gateway.biometrics.features import FeatureExtractor
from gateway.biometrics.keyrelease import RELEASE_CAPTURES, enrol, release_private_key
from gateway.biometrics.preprocess import fingerprint_input, iris_input
from gateway.otp import STEP_S, generate_secret, totp_at
from models.synth import fingerprint, iris


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/biometrics_bench.json"))
    a = ap.parse_args()
    ext = FeatureExtractor()
    fps = fingerprint.impressions(4_000_001, 4 + RELEASE_CAPTURES)
    eyes = iris.captures(4_000_001, 4 + RELEASE_CAPTURES)
    fp_in = fingerprint_input(fps[0])[None]
    ir_in = iris_input(eyes[0])[None]
    ext.run(fp_in, ir_in)  # warm-up
    res: dict[str, object] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "note": "2-core CPU shared with other jobs (contended)"},
        "fingerprint_preprocess": latency_ms(time_calls(lambda: fingerprint_input(fps[0]), a.repeats)),
        "iris_preprocess": latency_ms(time_calls(lambda: iris_input(eyes[0]), a.repeats)),
        "msenet_onnx_cpu_one_pair": latency_ms(time_calls(lambda: ext.run(fp_in, ir_in), a.repeats)),
    }
    secret = generate_secret()
    with tempfile.TemporaryDirectory() as tmp:
        pw = b"benchmark passphrase"
        enrol_t = []
        for i in range(max(3, a.repeats // 4)):
            t = time.perf_counter()
            profile, _ = enrol(f"bench{i}", fps[:4], eyes[:4], secret, "ws-bench", Path(tmp), pw, extractor=ext)
            enrol_t.append(time.perf_counter() - t)
        res["enrolment_4_captures"] = latency_ms(enrol_t)
        rel_t = []
        now = time.time_ns()
        for i in range(max(3, a.repeats // 4)):
            clock_ns = now + i * STEP_S * 1_000_000_000  # a fresh step per release (replay refusal)
            code = totp_at(secret, clock_ns // (STEP_S * 1_000_000_000))
            t = time.perf_counter()
            release_private_key(profile, fps[4:], eyes[4:], code, device_id="ws-bench", passphrase=pw,
                                extractor=ext, otp_state_dir=Path(tmp) / "state", clock=lambda c=clock_ns: c)
            rel_t.append(time.perf_counter() - t)
        res[f"key_release_{RELEASE_CAPTURES}_captures"] = latency_ms(rel_t)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
