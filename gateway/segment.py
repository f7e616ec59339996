"""Lesion segmentation of CT slices with the committed DS-Net ONNX model.

The pre- and post-processing here is the single definition used by training, evaluation and the gateway.
For a model whose manifest names a physical pixel size (`preprocessing.pixel_spacing_mm`):

    HU window -> resample from the slice's PixelSpacing to that size -> crop to the body's bounding box (at
    least one tile) -> z-score over that canvas (paper eq. 3) -> network on overlapping tiles of the model's
    input size -> lung-field gate (when the manifest asks for it) -> probability map placed back and
    resized (bilinear) to the input resolution -> threshold.

So a nodule of 10 mm covers the same number of network pixels whether the scanner wrote 0.57 or 1.5 mm
pixels. Models without a physical size in their manifest are served as they were trained: the whole slice
area-resized to the input size. `models/dsnet` imports these functions so the model is trained on exactly
what the gateway feeds it.
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
from gateway.reasons import Reason
from gateway.resources import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "dsnet" / "dsnet.onnx"
DEFAULT_MANIFEST = MODELS_DIR / "dsnet" / "manifest.json"
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)
UINT16_INTERCEPT = -1024.0
"""Unsigned 16-bit pixels without a rescale are CT stored values with this intercept (the manifest's)."""
MODEL_SIZE = 256
# Largest slice side accepted: beyond this a "slice" is not a CT slice and resizing it would waste memory.
MAX_SIDE = 8192


def window_resize(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW, size: int = MODEL_SIZE) -> np.ndarray:
    """HU slice (H, W) -> windowed HU (size, size) float32 (area resize when shrinking)."""
    clipped: np.ndarray = np.clip(np.asarray(hu, dtype=np.float32), window[0], window[1])
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


# Physical scale. Cropping to the body keeps the z-score statistics (eq. 3) about the patient, not about
# how much air the scanner's field of view happened to include.
BODY_HU = -500.0
BODY_MARGIN_PX = 8
TILE_OVERLAP_PX = 32


@dataclass(frozen=True)
class Canvas:
    """A slice at the network's pixel size, cropped to the body: what the network reads, and how to map back.

    `windowed` (h, w) float32 windowed HU, each side at least the model size; `resampled_shape` is the whole
    slice at the network's pixel size; the canvas covers rows `top .. top+h` and columns `left .. left+w`
    of it (outside the slice, padded with air); `shape` is the input slice's own (rows, cols).
    """

    windowed: np.ndarray
    resampled_shape: tuple[int, int]
    top: int
    left: int
    shape: tuple[int, int]


def resampled_shape(shape: tuple[int, int], spacing_mm: tuple[float, float], target_mm: float) -> tuple[int, int]:
    """(rows, cols) of a slice of `shape` and `spacing_mm` (row, col) resampled to `target_mm` pixels."""
    return (max(8, round(shape[0] * spacing_mm[0] / target_mm)),
            max(8, round(shape[1] * spacing_mm[1] / target_mm)))


def resample(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float32 `img` resized to `shape`: area averaging when shrinking, bilinear when enlarging."""
    img = np.asarray(img, np.float32)
    if img.shape == shape:
        return img
    interp = cv2.INTER_AREA if shape[0] <= img.shape[0] and shape[1] <= img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (shape[1], shape[0]), interpolation=interp)


def body_box(windowed: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of everything denser than `BODY_HU` (body, table), or None when nothing is."""
    body = cv2.morphologyEx((windowed > BODY_HU).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _span(lo: int, hi: int, n: int, size: int) -> tuple[int, int]:
    """A window [a, b) holding [lo, hi) of length at least `size`, inside [0, n) when n allows."""
    lo, hi = max(0, lo - BODY_MARGIN_PX), min(n, hi + BODY_MARGIN_PX)
    length = max(hi - lo, size)
    a = (lo + hi - length) // 2
    if n >= length:
        a = min(max(a, 0), n - length)
    else:
        a = (n - length) // 2  # the slice is smaller than one tile: centre it, pad with air
    return a, a + length


def _trim(lo: int, hi: int, length: int) -> tuple[int, int]:
    """[lo, hi) shortened about its centre to at most `length`."""
    if hi - lo <= length:
        return lo, hi
    a = (lo + hi - length) // 2
    return a, a + length


def _fit_spacing(box_mm: float, target_mm: float, size: int) -> float:
    """The pixel size at which a body `box_mm` across, plus the margin on both sides, fits `size` pixels."""
    return max(target_mm, box_mm / (size - 2 * BODY_MARGIN_PX - 1))


def make_canvas(hu: np.ndarray, spacing_mm: tuple[float, float] | None, target_mm: float | None,
                window: tuple[float, float] = HU_WINDOW, size: int = MODEL_SIZE, fit: bool = False) -> Canvas:
    """The network's view of an HU slice. `target_mm` None: the whole slice resized to size x size (models
    trained before the physical scale); otherwise resampled from `spacing_mm` to `target_mm` and cropped to
    the body. With `fit`, a body larger than one `size` tile at `target_mm` is resampled to the coarser pixel
    that makes it fit, so the network runs once per slice whatever the field of view."""
    arr = np.asarray(hu, np.float32)
    clipped = np.clip(arr, window[0], window[1])
    if target_mm is None or spacing_mm is None:
        return Canvas(window_resize(arr, window, size), (size, size), 0, 0, arr.shape)
    rshape = resampled_shape(arr.shape, spacing_mm, target_mm)
    img = resample(clipped, rshape)
    box = body_box(img) or (0, rshape[0], 0, rshape[1])
    if fit and max(box[1] - box[0], box[3] - box[2]) + 2 * BODY_MARGIN_PX > size:
        # The body's extent in mm, measured at target_mm, sets the coarser pixel; rounding of the resampled
        # grid can leave it a pixel over, so the box is measured again and trimmed to the tile below.
        extent_mm = max(box[1] - box[0], box[3] - box[2]) * target_mm
        coarse = _fit_spacing(extent_mm, target_mm, size)
        rshape = resampled_shape(arr.shape, spacing_mm, coarse)
        img = resample(clipped, rshape)
        box = body_box(img) or (0, rshape[0], 0, rshape[1])
        box = _trim(box[0], box[1], size - 2 * BODY_MARGIN_PX) + _trim(box[2], box[3], size - 2 * BODY_MARGIN_PX)
    top, bottom = _span(box[0], box[1], rshape[0], size)
    left, right = _span(box[2], box[3], rshape[1], size)
    canvas = np.full((bottom - top, right - left), window[0], np.float32)
    st, sl = max(top, 0), max(left, 0)
    sb, sr = min(bottom, rshape[0]), min(right, rshape[1])
    canvas[st - top:sb - top, sl - left:sr - left] = img[st:sb, sl:sr]
    return Canvas(canvas, rshape, top, left, arr.shape)


def mask_to_canvas(mask: np.ndarray, canvas: Canvas) -> np.ndarray:
    """A bool mask of the input slice taken to the canvas the way the pixels were (area, >= half covered)."""
    m = resample(np.asarray(mask, np.float32), canvas.resampled_shape) >= 0.5
    h, w = int(canvas.windowed.shape[0]), int(canvas.windowed.shape[1])
    out = np.zeros((h, w), bool)
    st, sl = max(canvas.top, 0), max(canvas.left, 0)
    sb, sr = min(canvas.top + h, m.shape[0]), min(canvas.left + w, m.shape[1])
    out[st - canvas.top:sb - canvas.top, sl - canvas.left:sr - canvas.left] = m[st:sb, sl:sr]
    return out


def canvas_to_mask(prob: np.ndarray, canvas: Canvas, threshold: float) -> np.ndarray:
    """Canvas probability map -> bool mask at the input slice's resolution (bilinear, then threshold)."""
    full = np.zeros(canvas.resampled_shape, np.float32)
    h, w = prob.shape
    st, sl = max(canvas.top, 0), max(canvas.left, 0)
    sb, sr = min(canvas.top + h, full.shape[0]), min(canvas.left + w, full.shape[1])
    full[st:sb, sl:sr] = prob[st - canvas.top:sb - canvas.top, sl - canvas.left:sr - canvas.left]
    return probability_to_mask(full, canvas.shape, threshold)


def tile_origins(length: int, size: int, overlap: int = TILE_OVERLAP_PX) -> list[int]:
    """Start offsets of tiles of `size` covering [0, length) with at least `overlap` pixels shared."""
    if length <= size:
        return [0]
    count = int(np.ceil((length - overlap) / (size - overlap)))
    return [round(v) for v in np.linspace(0, length - size, count)]


def run_tiled(net: Any, zscored: np.ndarray, size: int) -> np.ndarray:
    """`net` ((1,1,size,size) float32 -> same) over overlapping tiles of a canvas; overlaps averaged."""
    h, w = zscored.shape
    acc = np.zeros((h, w), np.float32)
    hits = np.zeros((h, w), np.float32)
    for y in tile_origins(h, size):
        for x in tile_origins(w, size):
            acc[y:y + size, x:x + size] += net(np.ascontiguousarray(zscored[y:y + size, x:x + size])[None, None])[0, 0]
            hits[y:y + size, x:x + size] += 1.0
    return acc / hits


LUNG_HU = -400.0
LUNG_CLOSE_PX = 11  # at 256x256 (~12 mm): closes over nodules that touch the pleura or the mediastinum


def lung_field(windowed: np.ndarray) -> np.ndarray:
    """Bool lung field of a windowed HU slice: air-like regions not connected to the outside air, closed
    and hole-filled so that nodules inside or against the lung wall fall inside it."""
    air = (windowed < LUNG_HU).astype(np.uint8)
    _n, labels = cv2.connectedComponents(air, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    lungs = (air > 0) & ~np.isin(labels, border[border > 0])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LUNG_CLOSE_PX, LUNG_CLOSE_PX))
    closed = cv2.morphologyEx(lungs.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    # Fill holes: everything not reachable from the border through non-lung pixels.
    outside = np.pad(1 - closed, 1, constant_values=1).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return np.asarray((outside[1:-1, 1:-1] != 2) | (closed > 0), dtype=bool)


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
    return np.asarray(keep[labels], dtype=bool)


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
    pixel_spacing_mm: float | None = None
    """The network's physical pixel size (None: a model that reads the whole slice resized)."""
    assumed_field_of_view_mm: float = 350.0
    """Inputs without PixelSpacing (PNG, NPY) are taken to span this many mm across their longer side."""
    fit_body_to_input: bool = False
    """A body wider than one input tile at `pixel_spacing_mm` is resampled coarser to fit it (one network run
    per slice) instead of being tiled."""

    @classmethod
    def load(cls, path: Path) -> Manifest:
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
                pixel_spacing_mm=(float(pre["pixel_spacing_mm"]) if pre.get("pixel_spacing_mm") else None),
                assumed_field_of_view_mm=float(pre.get("assumed_field_of_view_mm", 350.0)),
                fit_body_to_input=bool(pre.get("fit_body_to_input", False)),
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
    raise InputError(Reason.UNSUPPORTED_PIXEL_TYPE, f"cannot segment pixels of type {pixels.dtype}")


def check_slice(hu: np.ndarray) -> np.ndarray:
    """The slice as float32 (H, W), or InputError when it is not a usable 2-D image."""
    arr = np.asarray(hu)
    if arr.ndim != 2:
        raise InputError(Reason.NOT_A_SLICE, f"expected a 2-D slice, got {arr.ndim} dimensions")
    if min(arr.shape) < 8 or max(arr.shape) > MAX_SIDE:
        raise InputError(Reason.BAD_DIMENSIONS, f"slice size {arr.shape[0]}x{arr.shape[1]} is out of range")
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise InputError(Reason.UNSUPPORTED_PIXEL_TYPE, f"cannot segment values of type {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(Reason.NON_FINITE, "slice contains NaN or infinite values")
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

    def spacing_for(self, shape: tuple[int, int], spacing_mm: tuple[float, float] | None) -> tuple[float, float]:
        """The pixel spacing to use: the input's own, else the manifest's assumed field of view."""
        if spacing_mm is not None:
            sy, sx = float(spacing_mm[0]), float(spacing_mm[1])
            if np.isfinite(sy) and np.isfinite(sx) and 0.05 <= sy <= 20 and 0.05 <= sx <= 20:
                return sy, sx
            raise InputError(Reason.BAD_PIXEL_SPACING, f"pixel spacing {spacing_mm} mm is out of range")
        side = self.manifest.assumed_field_of_view_mm / max(shape)
        return side, side

    def probability(self, hu: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                    ) -> tuple[Canvas, np.ndarray]:
        """The canvas the network read and its lesion probability there (after the lung gate when it is on:
        dropped regions read 0), for an HU slice of any size and pixel spacing."""
        arr = check_slice(hu)
        canvas = make_canvas(arr, self.spacing_for(arr.shape, spacing_mm), self.manifest.pixel_spacing_mm,
                             self.manifest.hu_window, self.size, fit=self.manifest.fit_body_to_input)
        prob = run_tiled(self.runner.run, zscore(canvas.windowed), self.size)
        if self.lung_gate:
            keep = gate_to_lung(prob >= self.manifest.threshold, lung_field(canvas.windowed))
            prob = np.where(keep, prob, np.float32(0.0))
        return canvas, prob

    def predict_hu(self, hu: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
        """Bool lesion mask at the slice's resolution for a 2-D array of Hounsfield units with pixel spacing
        `spacing_mm` (row, column; None: the manifest's assumed field of view)."""
        canvas, prob = self.probability(hu, spacing_mm)
        return canvas_to_mask(prob, canvas, self.manifest.threshold)

    def predict(self, image: _HasPixels | np.ndarray) -> np.ndarray:
        """Bool lesion mask at the input's resolution for a `gateway.codecs.DecodedImage` (or an HU array).

        Uses `image.hu` when the decoder produced Hounsfield units (DICOM CT); otherwise maps the stored
        pixels to HU as the manifest prescribes (see `pixels_to_hu`). The pixel spacing is the DICOM
        PixelSpacing when there is one.
        """
        if isinstance(image, np.ndarray):
            return self.predict_hu(image)
        hu = getattr(image, "hu", None)
        if hu is None:
            pixels = np.asarray(image.pixels)
            hu = pixels_to_hu(pixels, bool(getattr(image, "signed", False)), self.manifest.hu_window,
                              self.manifest.uint16_intercept)
        return self.predict_hu(hu, pixel_spacing_of(image))


def pixel_spacing_of(image: object) -> tuple[float, float] | None:
    """(row, column) PixelSpacing in mm of a decoded DICOM image, or None when it has none."""
    ds = getattr(image, "dataset", None)
    value = getattr(ds, "PixelSpacing", None) if ds is not None else None
    try:
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return None
