"""MSE-Net inference on CPU through ONNX Runtime (no torch in the gateway).

This talks to `onnxruntime.InferenceSession` directly behind `FeatureExtractor`; when the shared runner layer
(`gateway.inference.create_runner`) lands, only `_session()` changes. The model file is checked against the
sha256 in its manifest before use, so a swapped model cannot silently change everyone's keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from gateway.biometrics.preprocess import fingerprint_input, iris_input, load_capture
from gateway.errors import ConfigError, InputError
from gateway.resources import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "msenet" / "msenet.onnx"
MAX_CAPTURES = 16

Capture = bytes | np.ndarray | Path


def _capture(c: Capture) -> np.ndarray:
    if isinstance(c, (str, Path)):
        try:
            c = Path(c).read_bytes()
        except OSError as exc:
            raise InputError("unreadable", f"cannot read capture {Path(c).name}: {exc.strerror}") from None
    return load_capture(c)


@dataclass(frozen=True)
class Embeddings:
    """Unit-norm embeddings, one row per capture pair."""

    fingerprint: np.ndarray
    iris: np.ndarray
    fused: np.ndarray
    key: np.ndarray

    def key_features(self) -> np.ndarray:
        """What the fuzzy extractor binarises: fingerprint ‖ iris embeddings (feature-level fusion), centred
        and PCA-whitened with the population statistics of the training identities (fixed in the model)."""
        return self.key.astype(np.float64)


def model_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def _session(path: str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    p = Path(path)
    manifest = p.with_name("manifest.json")
    try:
        expected = json.loads(manifest.read_text("utf-8"))["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"MSE-Net manifest missing or invalid: {manifest}") from exc
    actual = model_sha256(p)
    if actual != expected:
        raise ConfigError(f"MSE-Net model {p.name} does not match its manifest sha256")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]), actual


class FeatureExtractor:
    """Preprocess captures and run MSE-Net; `sha256` identifies the model a profile was enrolled with."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self._sess, self.sha256 = _session(str(self.path))

    def inputs(self, fingerprints: Sequence[Capture], irises: Sequence[Capture]) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed network inputs; InputError on bad captures or mismatched counts."""
        if not fingerprints or len(fingerprints) != len(irises):
            raise InputError("bad_capture", "give the same number (at least one) of fingerprint and iris captures")
        if len(fingerprints) > MAX_CAPTURES:
            raise InputError("bad_capture", f"at most {MAX_CAPTURES} capture pairs")
        fp = np.stack([fingerprint_input(_capture(c)) for c in fingerprints]).astype(np.float32)
        ir = np.stack([iris_input(_capture(c)) for c in irises]).astype(np.float32)
        return fp, ir

    def run(self, fp: np.ndarray, ir: np.ndarray) -> Embeddings:
        """MSE-Net on preprocessed inputs (batch)."""
        ef, ei, eu, key = self._sess.run(None, {"fingerprint": fp.astype(np.float32), "iris": ir.astype(np.float32)})
        return Embeddings(fingerprint=ef, iris=ei, fused=eu, key=key)

    def embed(self, fingerprints: Sequence[Capture], irises: Sequence[Capture]) -> Embeddings:
        """Embeddings of capture pairs (fingerprints[i], irises[i])."""
        return self.run(*self.inputs(fingerprints, irises))
