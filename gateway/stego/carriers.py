"""Which pixels may carry hidden bits: the carrier rule (DESIGN §6).

The lesion mask comes from a model, and a model misses lesions. Under the paper's rule (`non-lesion`:
every pixel outside the predicted lesion and its safety margin) a missed tumour becomes a carrier and its
least significant bits are overwritten. The default rule does not bet the tumour on the model:

- `outside-body` (default): carriers only in the air around the patient. The body is the convex hull of
  everything denser than `BODY_HU` (patient, table, clothing, arms), grown by `body_margin_px` (every pixel
  within that Euclidean distance, `gateway.stego.grow`); the hull holds the lungs and every lesion whatever
  the segmenter says, even when the scanner's field of view cuts the body.
  Where the field of view cuts the patient the hull is open at the image edge, so a carrier must also lie
  where every pixel within that margin reads as air (below `AIR_HU`; lung and tumours never do). The
  predicted lesion and its margin stay excluded as well. An image with no air around the body (a
  tightly cropped slice, a non-CT image) has no carriers, and hiding fails with the capacity error.
- `non-lesion` (the paper's rule): every pixel outside the predicted lesion dilated by the margin.

The exclusion mask actually used travels in the restoration record, so opening never needs to know the rule.
"""

from __future__ import annotations

from typing import Literal, get_args

import cv2
import numpy as np

from gateway.stego import exclusion_mask, grow

CarrierRule = Literal["outside-body", "non-lesion"]
CARRIER_RULES: tuple[str, ...] = get_args(CarrierRule)
DEFAULT_CARRIER_RULE: CarrierRule = "outside-body"
CARRIER_RULE_MEANING = {
    "outside-body": "only the air outside the body carries bits",
    "non-lesion": "every pixel outside the lesion and its margin carries bits",
}
BODY_HU = -500.0
"""Denser than this is matter (tissue, table, clothing); the air around a patient reads about -1000 HU."""
AIR_HU = -900.0
"""Carriers lie where every pixel within the body margin reads below this (after a 1.5 px Gaussian smoothing
that removes scanner noise): air, not lung parenchyma or tissue."""
BODY_MARGIN_FRACTION = 1 / 64
"""The hull is grown by this share of the image's longer side (8 px at 512, at least 2 px)."""
_MIN_COMPONENT_PX = 16  # isolated noise pixels denser than BODY_HU are not a body


def body_hull(hu: np.ndarray) -> np.ndarray:
    """Bool convex hull of everything denser than `BODY_HU` (ignoring specks under 16 pixels)."""
    dense = (np.asarray(hu, np.float32) > BODY_HU).astype(np.uint8)
    hull = np.zeros(dense.shape, np.uint8)
    # The hull of a set of pixels is the hull of its boundary: a few thousand contour points instead of every
    # dense pixel. Every contour (outer or around a hole) lies in one 8-connected component, so its first point
    # names the component whose size decides whether it counts. Component sizes from a label histogram: the
    # labelling's own statistics cost three times the labelling (1.2 of 1.6 ms at 512²).
    contours, _ = cv2.findContours(dense, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return hull.astype(bool)
    _n, labels = cv2.connectedComponents(dense, connectivity=8)
    sizes = np.bincount(labels.reshape(-1))
    kept = [c for c in contours if sizes[labels[c[0, 0, 1], c[0, 0, 0]]] >= _MIN_COMPONENT_PX]
    if not kept:
        return hull.astype(bool)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(kept)), 1)
    return hull.astype(bool)


def body_margin_px(shape: tuple[int, ...]) -> int:
    """How far the body hull is grown, in pixels, for an image of `shape`."""
    return max(2, round(max(shape) * BODY_MARGIN_FRACTION))


def carrier_exclusion(rule: str, lesion_mask: np.ndarray, margin_px: int, hu: np.ndarray | None = None,
                      ) -> np.ndarray:
    """The bool mask of pixels that must not carry bits under `rule` (see the module docstring).

    `hu` (Hounsfield units, or the segmenter's estimate of them for images without) is needed by
    `outside-body`. ValueError for an unknown rule or a missing `hu`.
    """
    return with_lesion(rule_exclusion(rule, hu), lesion_mask, margin_px)


def rule_exclusion(rule: str, hu: np.ndarray | None = None) -> np.ndarray | None:
    """The part of `rule`'s exclusion that does not depend on the lesion mask (None under `non-lesion`): it can
    be computed while the image is being segmented. `with_lesion` adds the lesion and its margin.

    ValueError for an unknown rule or a missing `hu`.
    """
    if rule == "non-lesion":
        return None
    if rule != "outside-body":
        raise ValueError(f"unknown carrier rule {rule!r}; expected one of {', '.join(CARRIER_RULES)}")
    if hu is None:
        raise ValueError("the outside-body carrier rule needs the image in Hounsfield units")
    hu = np.asarray(hu, np.float32)
    # A carrier's whole neighbourhood must be air as well: where the field of view cuts the patient (a slice
    # cropped around the spine, say) the hull is open at the image edge and the lungs lie outside it. Lung
    # parenchyma reads about -850 HU and every lesion, faint ground glass included, more; air about -1000.
    # The smoothing keeps scanner noise in the air from breaking it up.
    not_air = ~(cv2.GaussianBlur(hu, (0, 0), 1.5) < AIR_HU)
    # Excluded: the body hull grown by the margin, and every pixel whose neighbourhood within the margin (the
    # image edge replicated) is not all air. Both are growths by the same disk, and growth distributes over
    # union, so one growth of (hull | not air) gives both. The edge needs no replication: the disk's rows are
    # centred and shrink away from its middle row, so a replicated pixel is never nearer than its original.
    return grow(body_hull(hu) | not_air, body_margin_px(hu.shape))


def with_lesion(fixed: np.ndarray | None, lesion_mask: np.ndarray, margin_px: int) -> np.ndarray:
    """The whole exclusion: `rule_exclusion`'s part (`fixed`) and the lesion dilated by `margin_px`."""
    exclusion = exclusion_mask(lesion_mask, margin_px)
    if fixed is None:
        return exclusion
    if fixed.shape != exclusion.shape:
        raise ValueError(f"hu is {fixed.shape}, the lesion mask {exclusion.shape}")
    return np.asarray(exclusion | fixed, dtype=bool)
