"""Real fingerprints from another source than the evaluation trio: how often the fingerprint gate confuses two
different real fingers.

    .venv/bin/python -m models.msenet.real_dev [--cache runs/realprints] [--out models/msenet/results/real_dev.json]

The prints come from the source package of libfprint 1.94.9 in Debian (trixie), fetched with apt
(`models.data.debian_source`) and pinned by the sha256 of `libfprint_1.94.9.orig.tar.xz`; nothing is read from
the archive before the hash matches. Ten of its images are real fingers, each a different one (there are no two
impressions of one finger in it):

- `examples/prints/*.jpg`: four inked NIST impressions ("example images from NIST and in the public domain",
  their README), scanned at about 250 dpi;
- `tests/<driver>/capture.png`: six live captures recorded with the drivers' tests (LGPL-2.1+ package), from
  area and swipe sensors of about 450-1000 dpi. The package's other captures are skin that is not a fingertip
  or blank, and are left out.

Each finger is enrolled like a profile (its print as 4 captures, `DEFAULT_CODES`, a fresh helper and secret per
enrolment) and every other finger, the shared data's three real prints included, is presented as 3 capture
pairs. Only the fingerprint extractor is measured: the question is whether the fingerprint alone refuses
another finger. Nothing is chosen on these prints; they are a development set for real captures, kept apart from
the evaluation trio in shared/data/fingerprints and from the reserved database.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np

from gateway.biometrics.features import FeatureExtractor
from gateway.biometrics.keyrelease import DEFAULT_CODES
from gateway.biometrics.preprocess import IRIS_STRIP, fingerprint_input, load_capture
from gateway.resources import shared_data_dir
from models.data.debian_source import download_source_file
from models.msenet.evaluate import ENROL, Target, rate_with_ci

PACKAGE, VERSION, SUITE = "libfprint", "1:1.94.9-1", "trixie"
ARCHIVE = "libfprint_1.94.9.orig.tar.xz"
SHA256 = "0af811e8b70e8e27d711d0b50d4e628c4092332a1a7e25927ab1b1726b0b515f"
ROOT = "libfprint-1.94.9"
PRINTS = {
    "nist_arch": "examples/prints/arch.jpg",
    "nist_loop_right": "examples/prints/loop-right.jpg",
    "nist_tented_arch": "examples/prints/tented_arch.jpg",
    "nist_whorl": "examples/prints/whorl.jpg",
    "egis0570": "tests/egis0570/capture.png",
    "upektc_img": "tests/upektc_img/capture.png",
    "vfs5011": "tests/vfs5011/capture.png",
    "vfs0050": "tests/vfs0050/capture.png",
    "nb1010": "tests/nb1010/capture.png",
    "aes3500": "tests/aes3500/capture.png",
}
SHARED = ("p1_1", "p1_2", "p2_1")  # p1_1 and p1_2 are one finger
RELEASE_PAIRS = 3
ENROLMENTS = 20
HERE = Path(__file__).resolve().parent


def fetch(cache: Path) -> dict[str, bytes]:
    """The ten prints' bytes, from the pinned archive (downloaded once into `cache`)."""
    path = download_source_file(PACKAGE, VERSION, SUITE, ARCHIVE, SHA256, cache)
    with tarfile.open(path) as tar:
        out = {}
        for name, member in PRINTS.items():
            f = tar.extractfile(f"{ROOT}/{member}")
            if f is None:
                raise SystemExit(f"{member} missing from {ARCHIVE}")
            out[name] = f.read()
    return out


def measure(prints: dict[str, bytes], ext: FeatureExtractor) -> dict[str, object]:
    """False matches of the fingerprint extractor between different real fingers, and the genuine pair."""
    base = shared_data_dir() / "fingerprints"
    captures = dict(prints) | {f"shared_{n}": (base / f"{n}.png").read_bytes() for n in SHARED}
    names, inputs, refused = [], [], {}
    for name, raw in captures.items():
        try:
            inputs.append(fingerprint_input(load_capture(raw), ext.fp_size))
            names.append(name)
        except Exception as exc:  # noqa: BLE001 - a refused capture is a result to report
            refused[name] = str(exc)
    fp = np.stack(inputs).astype(np.float32)
    emb = ext.run(fp, np.zeros((len(fp), 1, *IRIS_STRIP), np.float32))  # the fingerprint branch ignores the iris
    kf = ext.whitening.apply(emb).fingerprint
    same = {frozenset(("shared_p1_1", "shared_p1_2"))}
    no_iris = np.random.default_rng(0).normal(size=(ENROL, ext.whitening.iris_w.shape[1]))
    impostor: dict[str, list[int]] = {}
    genuine: list[int] = []
    for i, enrolled in enumerate(names):
        for t in range(ENROLMENTS):
            tg = Target(np.repeat(kf[i:i + 1], ENROL, 0), no_iris, DEFAULT_CODES, f"real-dev-{enrolled}-{t}".encode())
            for j, probe in enumerate(names):
                if j == i:
                    continue
                ok = int(tg.match("fingerprint", np.repeat(kf[j][None, None], RELEASE_PAIRS, 1))[0])
                if frozenset((enrolled, probe)) in same:
                    genuine.append(ok)
                else:
                    impostor.setdefault(f"{enrolled}<-{probe}", []).append(ok)
    hits = sum(sum(v) for v in impostor.values())
    attempts = sum(len(v) for v in impostor.values())
    dev_only = {k: v for k, v in impostor.items() if not k.startswith("shared_") and "<-shared_" not in k}
    dev_hits, dev_attempts = sum(sum(v) for v in dev_only.values()), sum(len(v) for v in dev_only.values())
    cos = emb.fingerprint @ emb.fingerprint.T

    return {
        "source": f"Debian source package {PACKAGE} {VERSION} ({SUITE}), {ARCHIVE} (sha256 {SHA256}), "
                  "and shared/data/fingerprints",
        "fingers": names, "refused": refused,
        "enrolments_per_finger": ENROLMENTS, "release_pairs": RELEASE_PAIRS, "code": DEFAULT_CODES["fingerprint"].label,
        "impostor_all": rate_with_ci(hits, attempts),
        "impostor_libfprint_fingers_only": rate_with_ci(dev_hits, dev_attempts),
        "finger_pairs_that_ever_match": sorted(k for k, v in impostor.items() if sum(v)),
        "genuine_shared_p1": rate_with_ci(sum(genuine), len(genuine)),
        "cosine": {f"{a}~{b}": round(float(cos[i, j]), 3) for i, a in enumerate(names)
                   for j, b in enumerate(names) if i < j},
        "note": "one image per finger: the attempts of a pair differ only in the enrolment's helper and secret, "
                "so they are not independent; the per-pair outcome is what to read",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("runs/realprints"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "real_dev.json")
    a = ap.parse_args()
    res = measure(fetch(a.cache), FeatureExtractor())
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("refused", "impostor_all", "impostor_libfprint_fingers_only",
                                          "finger_pairs_that_ever_match", "genuine_shared_p1")}, indent=2))


if __name__ == "__main__":
    main()
