"""Lesion segmentation of CT slices with the committed DS-Net ONNX model.

The pre- and post-processing here is the single definition used by training, evaluation and the gateway:
HU window -> area resize to the model size -> z-score (paper eq. 3) -> network -> lung-field gate (when
the manifest asks for it) -> bilinear resize of the probability map back to the input resolution -> threshold. `models/dsnet` imports these functions so the
model is trained on exactly what the gateway feeds it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gateway.errors import ConfigError, InputError
from gateway.resources import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"
DEFAULT_MANIFEST = MODELS_DIR / "dsnet" / "manifest.json"
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)
MODEL_SIZE = 256
# Largest slice side accepted: beyond this a "slice" is not a CT slice and resizing it would waste memory.
MAX_SIDE = 8192


def window_resize(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW, size: int = MODEL_SIZE) -> np.ndarray:
    """HU slice (H, W) -> windowed HU (size, size) float32 (area resize when shrinking)."""
    clipped = np.clip(np.asarray(hu, dtype=np.float32), window[0], window[1])
    if clipped.shape != (size, size):
        interp = cv2.INTER_AREA if min(clipped.shape) >= size else cv2.INTER_LINEAR
        clipped = cv2.resize(clipped, (size, size), interpolation=interp)
    return clipped


def zscore(img: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the slice (paper eq. 3)."""
    mu = float(img.mean())
    sigma = float(img.std())
    return ((img - mu) / max(sigma, 1e-3)).astype(np.float32)


def preprocess_hu(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW, size: int = MODEL_SIZE,
                  ) -> np.ndarray:
    """HU slice (H, W) -> network input (size, size) float32: window, area resize, z-score (eq. 3)."""
    return zscore(window_resize(hu, window, size))


LUNG_HU = -400.0
LUNG_CLOSE_PX = 11  # at 256x256 (~12 mm): closes over nodules that touch the pleura or the mediastinum


def lung_field(windowed: np.ndarray) -> np.ndarray:
    """Bool lung field of a windowed HU slice: air-like regions not connected to the outside air, closed
    and hole-filled so that nodules inside or against the lung wall fall inside it."""
    air = (windowed < LUNG_HU).astype(np.uint8)
    n, labels = cv2.connectedComponents(air, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    lungs = (air > 0) & ~np.isin(labels, border[border > 0])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LUNG_CLOSE_PX, LUNG_CLOSE_PX))
    closed = cv2.morphologyEx(lungs.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    # Fill holes: everything not reachable from the border through non-lung pixels.
    outside = np.pad(1 - closed, 1, constant_values=1).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2) | (closed > 0)


GATE_MIN_INSIDE = 0.5
# A lesion against the chest wall or the mediastinum (pleural-based) lies mostly outside the air-defined lung
# field, yet much of its border faces the lung. Chosen on generated validation slices, where 0.3 keeps every
# lesion the network found; a border-blind gate dropped 71 of the 176 it found, those against the lung wall.
GATE_MIN_BORDER_IN_LUNG = 0.3
_GATE_RING = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def gate_to_lung(pred: np.ndarray, field: np.ndarray, min_inside: float = GATE_MIN_INSIDE,
                 min_border_in_lung: float = GATE_MIN_BORDER_IN_LUNG) -> np.ndarray:
    """Keep the predicted components that lie at least `min_inside` within the lung field, or whose
    surrounding 2-pixel ring lies at least `min_border_in_lung` in it (lesions growing from the lung wall)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pred.astype(np.uint8), connectivity=8)
    if n <= 1:
        return pred.astype(bool)
    inside = np.bincount(labels[field], minlength=n)
    keep = inside >= min_inside * stats[:, cv2.CC_STAT_AREA]
    keep[0] = False
    for k in range(1, n):
        if keep[k]:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        # Work in the component's box grown by the ring width; the ring is the dilation minus the component.
        y0, y1, x0, x1 = max(0, y - 2), min(pred.shape[0], y + h + 2), max(0, x - 2), min(pred.shape[1], x + w + 2)
        comp = labels[y0:y1, x0:x1] == k
        ring = (cv2.dilate(comp.astype(np.uint8), _GATE_RING) > 0) & ~comp
        if ring.any() and field[y0:y1, x0:x1][ring].mean() >= min_border_in_lung:
            keep[k] = True
    return keep[labels]


def resize_mask_to(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to `shape` by area (a pixel is set when at least half of it is covered)."""
    if mask.shape == shape:
        return mask.astype(bool)
    interp = cv2.INTER_AREA if shape[0] <= mask.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=interp) >= 0.5


def probability_to_mask(prob: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """Model-size probability map -> bool mask at `shape` (bilinear resize, then threshold)."""
    if prob.shape != shape:
        prob = cv2.resize(prob.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return prob >= threshold


class _HasPixels(Protocol):
    """The part of `gateway.codecs.DecodedImage` the segmenter reads."""

    @property
    def pixels(self) -> np.ndarray: ...

    @property
    def hu(self) -> np.ndarray | None: ...

    @property
    def signed(self) -> bool: ...


@dataclass(frozen=True)
class Manifest:
    """What the committed model promises (models/dsnet/manifest.json)."""

    sha256: str
    input_shape: tuple[int, int, int, int]
    hu_window: tuple[float, float]
    threshold: float
    uint16_intercept: float
    lung_field_gate: bool
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            raw = json.loads(Path(path).read_text())
            pre = raw["preprocessing"]
            return cls(
                sha256=str(raw["sha256"]).lower(),
                input_shape=tuple(int(d) for d in raw["input"]["shape"]),  # type: ignore[arg-type]
                hu_window=(float(pre["hu_window"][0]), float(pre["hu_window"][1])),
                threshold=float(raw["threshold"]),
                uint16_intercept=float(pre["non_hu_input"]["uint16_intercept"]),
                lung_field_gate=bool(raw.get("postprocessing", {}).get("lung_field_gate", False)),
                raw=raw,
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(f"model manifest {path} is unreadable or incomplete: {exc}") from exc


def verify_model(model_path: Path, manifest: Manifest) -> None:
    """ConfigError unless the model file's sha256 equals the manifest's (constant-time compare)."""
    h = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    if not hmac.compare_digest(h, manifest.sha256):
        raise ConfigError(f"model {Path(model_path).name}: sha256 does not match its manifest")


def pixels_to_hu(pixels: np.ndarray, signed: bool, window: tuple[float, float], uint16_intercept: float,
                 ) -> np.ndarray:
    """HU estimate for images that carry no Hounsfield units (PNG, raw NPY), as the manifest prescribes.

    - 8-bit images are display renderings: 0..255 spans the model's HU window linearly.
    - 16-bit unsigned: CT stored values with the usual rescale intercept (HU = value + intercept).
    - 16-bit flagged signed (signed stored values viewed as uint16): HU = the signed value.
    """
    if pixels.dtype == np.uint8:
        return window[0] + pixels.astype(np.float32) * ((window[1] - window[0]) / 255.0)
    if pixels.dtype == np.uint16:
        if signed:
            return pixels.view(np.int16).astype(np.float32)
        return pixels.astype(np.float32) + uint16_intercept
    if np.issubdtype(pixels.dtype, np.floating) or np.issubdtype(pixels.dtype, np.signedinteger):
        return pixels.astype(np.float32)  # already Hounsfield units (e.g. an HU .npy)
    raise InputError("unsupported_pixel_type", f"cannot segment pixels of type {pixels.dtype}")


def check_slice(hu: np.ndarray) -> np.ndarray:
    """The slice as float32 (H, W), or InputError when it is not a usable 2-D image."""
    arr = np.asarray(hu)
    if arr.ndim != 2:
        raise InputError("not_a_slice", f"expected a 2-D slice, got {arr.ndim} dimensions")
    if min(arr.shape) < 8 or max(arr.shape) > MAX_SIDE:
        raise InputError("bad_dimensions", f"slice size {arr.shape[0]}x{arr.shape[1]} is out of range")
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise InputError("unsupported_pixel_type", f"cannot segment values of type {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("non_finite", "slice contains NaN or infinite values")
    return arr


class Segmenter:
    """Lesion masks from the committed DS-Net ONNX model (or another model with a matching manifest).

    Loading verifies the model's sha256 against its manifest and warms the runner up. `predict` takes a
    decoded image and returns a bool mask of the image's own height and width. When the manifest asks for
    it (`postprocessing.lung_field_gate`), predicted regions that lie mostly outside the lung field are
    dropped: the model was trained on lung lesions only, and on real CT its false positives sit in soft
    tissue outside the lungs. `lung_gate` overrides the manifest (evaluation reports both).
    """

    def __init__(self, model_path: Path | str = DEFAULT_MODEL, manifest_path: Path | str | None = None, *,
                 backend: str = "auto", threads: int | None = None, state_dir: Path | None = None,
                 lung_gate: bool | None = None) -> None:
        from gateway.inference import create_runner

        self.model_path = Path(model_path)
        mpath = Path(manifest_path) if manifest_path else self.model_path.with_name("manifest.json")
        self.manifest = Manifest.load(mpath)
        verify_model(self.model_path, self.manifest)
        self.runner = create_runner(self.model_path, backend, threads=threads, state_dir=state_dir)
        if tuple(self.runner.input_shape) != self.manifest.input_shape:
            raise ConfigError(f"model input {self.runner.input_shape} != manifest {self.manifest.input_shape}")
        self.size = self.manifest.input_shape[-1]
        self.lung_gate = self.manifest.lung_field_gate if lung_gate is None else lung_gate

    @property
    def backend(self) -> str:
        """The backend type actually serving (after `auto` chose)."""
        return self.runner.type_name

    def probability(self, hu: np.ndarray) -> np.ndarray:
        """Lesion probability at the model's size (size, size) for an HU slice of any size (after the lung
        gate when it is on: dropped regions read 0)."""
        windowed = window_resize(check_slice(hu), self.manifest.hu_window, self.size)
        prob = self.runner.run(zscore(windowed)[None, None])[0, 0]
        if self.lung_gate:
            keep = gate_to_lung(prob >= self.manifest.threshold, lung_field(windowed))
            prob = np.where(keep, prob, np.float32(0.0))
        return prob

    def predict_hu(self, hu: np.ndarray) -> np.ndarray:
        """Bool lesion mask at the slice's resolution for a 2-D array of Hounsfield units."""
        arr = check_slice(hu)
        return probability_to_mask(self.probability(arr), arr.shape, self.manifest.threshold)

    def predict(self, image: _HasPixels | np.ndarray) -> np.ndarray:
        """Bool lesion mask at the input's resolution for a `gateway.codecs.DecodedImage` (or an HU array).

        Uses `image.hu` when the decoder produced Hounsfield units (DICOM CT); otherwise maps the stored
        pixels to HU as the manifest prescribes (see `pixels_to_hu`).
        """
        if isinstance(image, np.ndarray):
            return self.predict_hu(image)
        hu = getattr(image, "hu", None)
        if hu is None:
            pixels = np.asarray(image.pixels)
            hu = pixels_to_hu(pixels, bool(getattr(image, "signed", False)), self.manifest.hu_window,
                              self.manifest.uint16_intercept)
        return self.predict_hu(hu)
