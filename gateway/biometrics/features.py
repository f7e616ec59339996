"""MSE-Net inference on CPU through ONNX Runtime (no torch in the gateway).

This talks to `onnxruntime.InferenceSession` directly behind `FeatureExtractor`; when the shared runner layer
(`gateway.inference.create_runner`) lands, only `_session()` changes. The model file and the key-space
transform (`whitening.npz`) are checked against the sha256 in the manifest before use, so a swapped file cannot
silently change everyone's keys.

Key features are per modality: each embedding is centred and PCA-whitened (regularised) on its own, with
statistics of the training identities (`models/msenet/whiten.py`), so that the fingerprint and the iris each
feed their own fuzzy extractor and each must match on its own.

Each embedding is the normalised mean over a few views of the capture: the fingerprint input shifted by
FP_SHIFTS pixels of a 96-pixel input on both axes, scaled to the model's input (the residual error of the
core/pose normalisation; the input size is the model's, from its manifest), the iris strip rolled by
IRIS_SHIFTS angular columns (eye rotation is a circular shift of the rubber-sheet strip). The views were chosen
on validation identities (models/msenet/MODEL_CARD.md): they make a person's embedding steadier across
captures, so a stricter code can be used at the same false rejection rate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gateway.biometrics.preprocess import fingerprint_input, iris_input, load_capture
from gateway.errors import BiometricError, ConfigError
from gateway.resources import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "msenet" / "msenet.onnx"
WHITENING_FILE = "whitening.npz"
MAX_CAPTURES = 16
FP_SHIFTS = (-4, 0, 4)  # pixels of a FP_SHIFTS_SIZE-pixel input (about 9 px at 500 dpi), on both axes: 9 views
FP_SHIFTS_SIZE = 96
IRIS_SHIFTS = (-4, 0, 4)  # angular columns of the 256-column strip (5.6 degrees each way): 3 views
_VIEW_BATCH = 512

Capture = bytes | np.ndarray | Path


def _capture(c: Capture) -> np.ndarray:
    if isinstance(c, (str, Path)):
        path = Path(c)
        try:
            c = path.read_bytes()
        except OSError as exc:
            raise BiometricError("unreadable", f"cannot read capture {path.name}: {exc.strerror}") from None
    return load_capture(c)


@dataclass(frozen=True)
class Embeddings:
    """Unit-norm embeddings, one row per capture pair."""

    fingerprint: np.ndarray
    iris: np.ndarray
    fused: np.ndarray


@dataclass(frozen=True)
class KeyFeatures:
    """What the two fuzzy extractors binarise: each modality's embedding, centred and whitened on its own."""

    fingerprint: np.ndarray
    iris: np.ndarray


@dataclass(frozen=True)
class Whitening:
    """Per-modality mean and whitening matrix (frozen with the model)."""

    fp_mean: np.ndarray
    fp_w: np.ndarray
    iris_mean: np.ndarray
    iris_w: np.ndarray

    def apply(self, emb: Embeddings) -> KeyFeatures:
        return KeyFeatures(fingerprint=(emb.fingerprint.astype(np.float64) - self.fp_mean) @ self.fp_w,
                           iris=(emb.iris.astype(np.float64) - self.iris_mean) @ self.iris_w)


def model_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint_shifts(size: int) -> tuple[int, ...]:
    """FP_SHIFTS for a fingerprint input of `size` pixels: the same distance on the print."""
    return tuple(round(s * size / FP_SHIFTS_SIZE) for s in FP_SHIFTS)


def views_id(fp_size: int) -> str:
    """The views' part of a model identity (a profile's bits depend on them)."""
    return f"views/v1/fp{fingerprint_shifts(fp_size)}/iris{IRIS_SHIFTS}"


def _manifest(p: Path) -> dict:  # type: ignore[type-arg]
    manifest = p.with_name("manifest.json")
    try:
        doc = json.loads(manifest.read_text("utf-8"))
        doc["sha256"], doc["whitening"]["sha256"]
        if not isinstance(doc["inputs"]["fingerprint"]["shape"][-1], int):
            raise TypeError("fingerprint input size")
        return doc  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"MSE-Net manifest missing or invalid: {manifest}") from exc


@lru_cache(maxsize=4)
def _session(path: str) -> tuple[Any, str, Whitening, int]:
    import onnxruntime as ort

    p = Path(path)
    manifest = _manifest(p)
    actual = model_sha256(p)
    if actual != manifest["sha256"]:
        raise ConfigError(f"MSE-Net model {p.name} does not match its manifest sha256")
    wpath = p.with_name(WHITENING_FILE)
    try:
        raw = wpath.read_bytes()
    except OSError as exc:
        raise ConfigError(f"MSE-Net key-space transform missing: {wpath}") from exc
    if hashlib.sha256(raw).hexdigest() != manifest["whitening"]["sha256"]:
        raise ConfigError(f"{wpath.name} does not match its manifest sha256")
    with np.load(wpath) as w:
        whitening = Whitening(*(w[k].astype(np.float64) for k in ("fp_mean", "fp_w", "iris_mean", "iris_w")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    # The model's identity for profiles covers both files: changing either changes everyone's bits.
    # The views are part of it too: the same files with other views give other bits.
    fp_size = int(manifest["inputs"]["fingerprint"]["shape"][-1])
    ident = hashlib.sha256((actual + manifest["whitening"]["sha256"] + views_id(fp_size)).encode()).hexdigest()
    return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]), ident, whitening, fp_size


def shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Inputs (..., H, W) moved by (dy, dx) pixels; what moves in from outside is 0 (the z-scored background)."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
    return out


def multi_view(single_pass: Callable[[np.ndarray, np.ndarray], Embeddings], fp: np.ndarray,
               ir: np.ndarray) -> Embeddings:
    """Per modality the normalised mean of `single_pass` over the views (`fingerprint_shifts` of the input's
    size, IRIS_SHIFTS); the fused embedding is that of the unshifted pair. Shared by the runtime and the
    whitening fit."""
    fp, ir = fp.astype(np.float32), ir.astype(np.float32)
    n = len(fp)
    shifts = fingerprint_shifts(fp.shape[-1])
    fp_views = np.concatenate([shifted(fp, dy, dx) for dy in shifts for dx in shifts])
    fp_pass = single_pass(fp_views, np.tile(ir, (len(shifts) ** 2, 1, 1, 1)))
    ef, eu = fp_pass.fingerprint, fp_pass.fused
    centre = shifts.index(0) * (len(shifts) + 1)  # the (0, 0) view
    ir_views = np.concatenate([np.roll(ir, s, axis=-1) for s in IRIS_SHIFTS])
    ei = single_pass(np.tile(fp, (len(IRIS_SHIFTS), 1, 1, 1)), ir_views).iris
    return Embeddings(fingerprint=_unit(ef.reshape(-1, n, ef.shape[-1]).sum(axis=0)),
                      iris=_unit(ei.reshape(-1, n, ei.shape[-1]).sum(axis=0)),
                      fused=eu[centre * n:(centre + 1) * n])


class FeatureExtractor:
    """Preprocess captures and run MSE-Net; `sha256` identifies the model a profile was enrolled with and
    `fp_size` is the side of its fingerprint input (from its manifest)."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self._sess, self.sha256, self.whitening, self.fp_size = _session(str(self.path))

    def inputs(self, fingerprints: Sequence[Capture], irises: Sequence[Capture]) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed network inputs; BiometricError on bad captures or mismatched counts."""
        if not fingerprints or len(fingerprints) != len(irises):
            raise BiometricError("bad_capture", "give the same number (at least one) of fingerprint and iris captures")
        if len(fingerprints) > MAX_CAPTURES:
            raise BiometricError("bad_capture", f"at most {MAX_CAPTURES} capture pairs")
        fp = np.stack([fingerprint_input(_capture(c), self.fp_size) for c in fingerprints]).astype(np.float32)
        ir = np.stack([iris_input(_capture(c)) for c in irises]).astype(np.float32)
        return fp, ir

    def single_pass(self, fp: np.ndarray, ir: np.ndarray) -> Embeddings:
        """The graph's own outputs for each pair, one pass, no views (what another runner of the same model
        file must reproduce)."""
        fp, ir = fp.astype(np.float32), ir.astype(np.float32)
        outs = [self._sess.run(["emb_fingerprint", "emb_iris", "emb_fused"],
                               {"fingerprint": fp[i:i + _VIEW_BATCH], "iris": ir[i:i + _VIEW_BATCH]})
                for i in range(0, len(fp), _VIEW_BATCH)]
        ef, ei, eu = (np.concatenate([o[j] for o in outs]) for j in range(3))
        return Embeddings(fingerprint=ef, iris=ei, fused=eu)

    def run(self, fp: np.ndarray, ir: np.ndarray) -> Embeddings:
        """MSE-Net on preprocessed inputs (batch): per modality the normalised mean over its views; the fused
        embedding is that of the unshifted pair."""
        return multi_view(self.single_pass, fp, ir)

    def embed(self, fingerprints: Sequence[Capture], irises: Sequence[Capture]) -> Embeddings:
        """Embeddings of capture pairs (fingerprints[i], irises[i])."""
        return self.run(*self.inputs(fingerprints, irises))

    def key_features(self, fingerprints: Sequence[Capture], irises: Sequence[Capture]) -> KeyFeatures:
        """Per-modality key features of capture pairs (fingerprints[i], irises[i])."""
        return self.whitening.apply(self.embed(fingerprints, irises))
