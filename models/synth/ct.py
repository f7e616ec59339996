"""Seeded generator of chest-CT-like axial slices in Hounsfield units, with exact lesion masks.

The phantoms are built to resemble the real chest CT in shared/data/ct/lung1.npz (512x512 slices at
~0.57 mm pixel spacing): air around the body at about -1000 HU with scanner noise, a body outline of soft
tissue (~0-60 HU) under a subcutaneous fat layer (~-100 HU), two lungs (~-860 HU, parenchymal texture)
crossed by branching vessels and their round cross-sections (the look-alikes a detector must not call
lesions), a mediastinum with heart, aorta and an air-filled trachea, and bone (spine, ribs, sternum,
~300-1200 HU). Slices come from three levels: mid-chest, lung bases (liver and spleen domes rising into the
lungs, the descending aorta beside the spine) and apices (small lungs); thick hilar vessels are drawn
elongated so that round blobs wider than the largest vessel dot remain lesions. Lesions are placed inside
the lungs, often touching the pleura or the mediastinum like the real nodule: small solid nodules (the real
one is ~20 px across at 512), larger lobulated masses and ground-glass opacities, each with its own contrast
and texture. The mask is exactly the set of pixels whose value was written by a lesion (clipped to the lung,
as a radiologist's label would be).

Everything is a pure function of the seed (`numpy.random.Generator`), so data sets are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIZE = 512
PIXEL_SPACING_MM = 0.5703
HU_AIR = -1000.0


@dataclass(frozen=True)
class CTSlice:
    """One generated slice: `hu` float32 (H, W) Hounsfield units, `mask` bool (H, W), and what was drawn."""

    hu: np.ndarray
    mask: np.ndarray
    lesions: tuple[str, ...]


def _ellipse_mask(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float = 0.0,
                  power: float = 2.0) -> np.ndarray:
    """Super-ellipse |u/rx|^p + |v/ry|^p <= 1, rotated by `angle` radians (evaluated in its bounding box)."""
    out = np.zeros(shape, bool)
    # A super-ellipse with p >= 1 fits in a box of half-side max(rx, ry) * 2^(1/2 - 1/p) * sqrt(2) at most.
    reach = max(rx, ry) * 1.5 + 2
    y0, y1 = max(0, int(cy - reach)), min(shape[0], int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(shape[1], int(cx + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / max(rx, 1e-3)
    v = (-dx * s + dy * c) / max(ry, 1e-3)
    out[y0:y1, x0:x1] = (np.abs(u) ** power + np.abs(v) ** power) <= 1.0
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed with a Gaussian of `sigma` pixels (texture)."""
    field = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0:
        k = int(sigma * 3) * 2 + 1
        field = cv2.GaussianBlur(field, (k, k), sigma)
    std = float(field.std())
    return field / std if std > 0 else field


def _blob(rng: np.random.Generator, shape: tuple[int, int], cy: float, cx: float, radius: float,
          irregularity: float) -> np.ndarray:
    """A star-shaped blob: radius modulated by a few random harmonics (lobulated, spiculated or round)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    r = np.full_like(theta, radius)
    for k in range(2, 7):
        amp = irregularity * radius * rng.uniform(0.0, 1.0) / k
        r = r + amp * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    elong = rng.uniform(0.75, 1.0)
    ang = rng.uniform(0, np.pi)
    c, s = np.cos(ang), np.sin(ang)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / elong
    return np.sqrt(u * u + v * v) <= np.maximum(r, 1.0)


def _blob_at(rng: np.random.Generator, shape: tuple[int, int], cy: float, cx: float, radius: float,
             irregularity: float) -> np.ndarray:
    """`_blob` drawn into a full-size mask, evaluated only in its bounding box."""
    out = np.zeros(shape, bool)
    reach = int(radius * (1 + irregularity) * 1.5) + 3
    y0, y1 = max(0, int(cy) - reach), min(shape[0], int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(shape[1], int(cx) + reach + 1)
    out[y0:y1, x0:x1] = _blob(rng, (y1 - y0, x1 - x0), cy - y0, cx - x0, radius, irregularity)
    return out


def _draw_vessel_tree(rng: np.random.Generator, canvas: np.ndarray, start: tuple[float, float], angle: float,
                      length: float, width: float, depth: int) -> None:
    """Recursive branching vessels drawn as anti-aliased lines of decreasing width into `canvas` (0..1)."""
    if depth <= 0 or width < 0.6 or length < 4:
        return
    y0, x0 = start
    y1 = y0 + length * np.sin(angle)
    x1 = x0 + length * np.cos(angle)
    cv2.line(canvas, (int(round(x0 * 4)), int(round(y0 * 4))), (int(round(x1 * 4)), int(round(y1 * 4))), 1.0,
             thickness=max(1, int(round(width))), lineType=cv2.LINE_AA, shift=2)
    for _ in range(int(rng.integers(1, 3)) + (1 if depth > 2 else 0)):
        _draw_vessel_tree(rng, canvas, (y1, x1), angle + rng.uniform(-0.7, 0.7), length * rng.uniform(0.55, 0.85),
                          width * rng.uniform(0.6, 0.85), depth - 1)


def _lesion(rng: np.random.Generator, lung: np.ndarray, lung_edge: np.ndarray, kind: str,
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """Place one lesion of `kind` in the lung; returns (mask, HU values on the mask) or None if no room."""
    h, w = lung.shape
    if kind == "nodule":
        radius = float(np.exp(rng.uniform(np.log(4.0), np.log(22.0))))
        irregularity, hu_mean, hu_tex = rng.uniform(0.0, 0.5), rng.uniform(-120, 80), rng.uniform(15, 90)
    elif kind == "mass":
        radius = rng.uniform(22.0, 55.0)
        irregularity, hu_mean, hu_tex = rng.uniform(0.2, 0.9), rng.uniform(-40, 70), rng.uniform(20, 70)
    else:  # ground-glass opacity
        radius = rng.uniform(7.0, 32.0)
        irregularity, hu_mean, hu_tex = rng.uniform(0.1, 0.6), rng.uniform(-700, -350), rng.uniform(30, 90)
    # Like the real nodule, many lesions touch the pleura or mediastinum: pick a centre near the edge.
    candidates = lung_edge if rng.uniform() < 0.45 and lung_edge.any() else lung
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    cy, cx = float(ys[i]), float(xs[i])
    box = int(radius * 2.2) + 4
    y0, y1 = max(0, int(cy) - box), min(h, int(cy) + box + 1)
    x0, x1 = max(0, int(cx) - box), min(w, int(cx) + box + 1)
    local = _blob(rng, (y1 - y0, x1 - x0), cy - y0, cx - x0, radius, irregularity)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = local
    mask &= lung
    if mask.sum() < 12:
        return None
    texture = _smooth_noise(rng, (y1 - y0, x1 - x0), rng.uniform(0.8, 3.0))
    # A slightly brighter core and softer rim (partial volume), as in the real nodule (mean ~-60, sd ~120).
    dist = cv2.distanceTransform(np.pad(mask[y0:y1, x0:x1], 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    rim = np.clip(dist / max(2.0, radius * 0.35), 0, 1)
    local_values = hu_mean - (1 - rim) * rng.uniform(40, 250) + hu_tex * texture
    if kind == "ggo":
        local_values = local_values + 120 * (rng.uniform() < 0.3) * (rim > 0.8) * rng.uniform(0.5, 1.5)
    values = np.zeros((h, w), np.float32)
    values[y0:y1, x0:x1] = local_values
    return mask, values


def generate_slice(rng: np.random.Generator, *, lesion_probability: float = 0.8, size: int = SIZE) -> CTSlice:
    """One random chest slice (size x size, ~0.57 mm pixels at 512) with its exact lesion mask."""
    s = size / SIZE
    shape = (size, size)
    hu = np.full(shape, HU_AIR, np.float32)

    # Body: a wide super-ellipse, sometimes a little flattened at the back (the patient lies on the table).
    cy, cx = size * rng.uniform(0.50, 0.58), size * rng.uniform(0.47, 0.53)
    ry, rx = size * rng.uniform(0.28, 0.36), size * rng.uniform(0.40, 0.47)
    body = _ellipse_mask(shape, cy, cx, ry, rx, rng.uniform(-0.05, 0.05), rng.uniform(2.0, 3.0))
    fat_w = rng.uniform(6, 30) * s
    inner = (
        cv2.erode(body.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(fat_w) * 2 + 1,) * 2)) > 0
    )
    hu[body] = rng.uniform(-120, -80)
    hu[inner] = rng.uniform(20, 60)
    muscle_tex = _smooth_noise(rng, shape, 4.0)
    hu[inner] += 12 * muscle_tex[inner]

    # Anatomical level: mid-chest, lung bases (liver and spleen domes rise into the lungs, the heart is large)
    # or apices (small lungs beside the trachea). The real scan covers all three, and the bases and apices are
    # where a model trained on mid-chest anatomy alone puts its false lesions.
    level = str(rng.choice(["mid", "base", "apex"], p=[0.58, 0.28, 0.14]))
    spine_cy, spine_r = cy + ry * rng.uniform(0.45, 0.6), rng.uniform(0.09, 0.13) * rx

    # Lungs: two super-ellipses inside the body, leaving the mediastinum between them.
    lung = np.zeros(shape, bool)
    gap = rng.uniform(0.06, 0.14) * rx
    for side in (-1, 1):
        lcx = cx + side * (gap + rng.uniform(0.40, 0.48) * rx)
        lcy = cy - rng.uniform(0.0, 0.12) * ry
        lry, lrx = rng.uniform(0.55, 0.75) * ry, rng.uniform(0.34, 0.44) * rx
        if level == "apex":
            lcx = cx + side * (gap + rng.uniform(0.22, 0.38) * rx)
            lcy = cy + rng.uniform(-0.05, 0.2) * ry
            lry, lrx = lry * rng.uniform(0.25, 0.55), lrx * rng.uniform(0.3, 0.6)
        lung |= _ellipse_mask(shape, lcy, lcx, lry, lrx, side * rng.uniform(0.0, 0.35), rng.uniform(1.8, 2.6))
    lung &= cv2.erode(inner.astype(np.uint8), np.ones((int(14 * s) + 1,) * 2, np.uint8)) > 0
    if rng.uniform() < 0.08:  # neck or abdomen level: no lung, hence no lesion
        lung[:] = False
    # Mediastinal bite out of the medial side of each lung (the heart / great vessels).
    heart_r = rng.uniform(0.18, 0.30) * rx * (rng.uniform(1.1, 1.35) if level == "base" else 1.0)
    heart = _ellipse_mask(shape, cy + rng.uniform(-0.1, 0.25) * ry, cx + rng.uniform(-0.05, 0.12) * rx,
                          heart_r * rng.uniform(0.8, 1.2), heart_r, rng.uniform(0, np.pi))
    if rng.uniform() < (0.85 if level == "base" else 0.5):
        lung &= ~heart
        hu[heart & inner] = rng.uniform(30, 50)
    # Descending aorta and oesophagus beside the spine, bulging into the medial lung (a classic look-alike).
    if level != "apex" and rng.uniform() < 0.7:
        # Left of the patient (right of the image), as in real anatomy; training does not mirror slices.
        ar = rng.uniform(0.06, 0.09) * rx
        daorta = _ellipse_mask(shape, spine_cy - spine_r * rng.uniform(1.3, 1.9),
                               cx + rng.uniform(0.08, 0.2) * rx, ar, ar)
        lung &= ~daorta
        hu[daorta & inner] = rng.uniform(30, 55)
    # Liver / spleen domes at the bases: soft tissue rising into the lung with a blurred (oblique) surface.
    domes = np.zeros(shape, np.float32)
    dome_hu = rng.uniform(45, 70)
    if level == "base" and lung.any():
        for side in (-1, 1):
            half = lung & ((np.arange(size)[None, :] - cx) * side > 0)
            ys_h, xs_h = np.nonzero(half)
            if ys_h.size == 0 or rng.uniform() < 0.2:
                continue
            dy_c = ys_h.mean() + rng.uniform(0.0, 0.5) * (ys_h.max() - ys_h.mean())
            dx_c = xs_h.mean() + side * rng.uniform(0.0, 0.5) * (np.abs(xs_h - xs_h.mean()).max())
            extent = 0.5 * (xs_h.max() - xs_h.min())
            dr = extent * rng.uniform(0.45, 1.0)
            dome = _blob_at(rng, shape, dy_c, dx_c, dr, rng.uniform(0.0, 0.3))
            lung &= ~dome
            # The diaphragm crosses a thick axial slice obliquely: a partial-volume band up to ~1 cm wide.
            sigma = rng.uniform(1.5, 10.0) * s
            k = int(sigma * 3) * 2 + 1
            domes = np.maximum(domes, cv2.GaussianBlur(dome.astype(np.float32), (k, k), sigma))
        # Epicardial fat pad in the cardiophrenic angle: fat-density tissue against the heart border.
        beside_heart = lung & (cv2.dilate(heart.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
        hy, hx = np.nonzero(beside_heart)
        if hy.size and rng.uniform() < 0.5:
            i = int(rng.integers(hy.size))
            pad = _blob_at(rng, shape, float(hy[i]), float(hx[i]), rng.uniform(8, 28) * s, 0.4) & lung
            lung &= ~pad
            hu[pad] = rng.uniform(-120, -60) + 15 * _smooth_noise(rng, shape, 2.0)[pad]
    lung_hu = rng.uniform(-900, -820)
    hu[lung] = lung_hu + 25 * _smooth_noise(rng, shape, 1.5)[lung]

    # Vessels: branching trees from each hilum, short segments and round cross-sections everywhere, and
    # larger oval vessels and bronchi at the hilum (the look-alikes a detector must not call lesions).
    vessels = np.zeros(shape, np.float32)
    hila = []
    for side in (-1, 1):
        hilum = (cy + rng.uniform(-0.15, 0.1) * ry, cx + side * gap * 1.6)
        hila.append(hilum)
        for _ in range(int(rng.integers(2, 5))):
            angle = (0.0 if side > 0 else np.pi) + rng.uniform(-1.3, 1.3)
            _draw_vessel_tree(rng, vessels, hilum, angle, rng.uniform(30, 80) * s, rng.uniform(1.2, 3.5) * s,
                              int(rng.integers(3, 6)))
    ys, xs = np.nonzero(lung)
    for _ in range(int(rng.integers(10, 60)) if ys.size else 0):
        i = int(rng.integers(ys.size))
        cv2.circle(vessels, (int(xs[i]) * 4, int(ys[i]) * 4), int(rng.uniform(1.0, 4.0 * s) * 4), 1.0, -1,
                   lineType=cv2.LINE_AA, shift=2)
    for _ in range(int(rng.integers(5, 40)) if ys.size else 0):
        i = int(rng.integers(ys.size))
        length, theta = rng.uniform(4, 25) * s, rng.uniform(0, np.pi)
        p0 = (int(xs[i] * 4), int(ys[i] * 4))
        p1 = (int((xs[i] + length * np.cos(theta)) * 4), int((ys[i] + length * np.sin(theta)) * 4))
        cv2.line(vessels, p0, p1, 1.0, thickness=max(1, int(round(rng.uniform(1, 2.5) * s))),
                 lineType=cv2.LINE_AA, shift=2)
    bronchi = np.zeros(shape, bool)
    if level != "apex" and ys.size:
        for hy, hx in hila:
            near = np.hypot(ys - hy, xs - hx) < 0.3 * rx
            ny, nx = ys[near], xs[near]
            # Thick vessels run obliquely through the slice at the hilum: elongated ovals. Round blobs wider
            # than the largest vessel dot stay reserved for lesions, as the real nodule is one such blob.
            for _ in range(int(rng.integers(2, 8)) if ny.size else 0):
                i = int(rng.integers(ny.size))
                r = rng.uniform(2.5, 5) * s
                cv2.ellipse(vessels, (int(nx[i] * 4), int(ny[i] * 4)),
                            (int(r * 4), int(r * rng.uniform(2.0, 4.0) * 4)), rng.uniform(0, 180), 0, 360, 1.0, -1,
                            lineType=cv2.LINE_AA, shift=2)
            for _ in range(int(rng.integers(0, 4)) if ny.size else 0):
                i = int(rng.integers(ny.size))
                r = rng.uniform(3, 7) * s
                wall = _ellipse_mask(shape, float(ny[i]), float(nx[i]), r, r * rng.uniform(1.0, 1.6),
                                     rng.uniform(0, np.pi))
                lumen = _ellipse_mask(shape, float(ny[i]), float(nx[i]), r * 0.6, r * 0.6)
                bronchi |= wall & ~lumen
    vessels = cv2.GaussianBlur(vessels, (5, 5), 0.8)
    vessel_hu = rng.uniform(-20, 60)
    hu = np.where(lung, hu + vessels * (vessel_hu - hu), hu).astype(np.float32)
    hu[bronchi & lung] = rng.uniform(-150, 0)
    if domes.any():
        hu = hu + domes * (dome_hu - hu)

    # Lesions.
    mask = np.zeros(shape, bool)
    kinds: list[str] = []
    if rng.uniform() < lesion_probability and lung.any():
        edge = lung & ~(cv2.erode(lung.astype(np.uint8), np.ones((int(9 * s) + 1,) * 2, np.uint8)) > 0)
        for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
            kind = str(rng.choice(["nodule", "nodule", "nodule", "mass", "ggo"]))
            placed = _lesion(rng, lung, edge, kind)
            if placed is None:
                continue
            m, values = placed
            hu[m] = values[m]
            mask |= m
            kinds.append(kind)

    # Mediastinal structures: aorta (round), trachea or oesophagus with air, sternum and spine.
    aorta_r = rng.uniform(0.07, 0.11) * rx
    aorta = _ellipse_mask(shape, cy + rng.uniform(-0.3, 0.1) * ry, cx + rng.uniform(-0.15, 0.15) * rx, aorta_r,
                          aorta_r)
    hu[aorta & inner & ~lung] = rng.uniform(35, 55) if rng.uniform() < 0.7 else rng.uniform(150, 300)
    if rng.uniform() < 0.6:
        tr = rng.uniform(0.03, 0.05) * rx
        trachea = _ellipse_mask(shape, cy - rng.uniform(0.1, 0.3) * ry, cx + rng.uniform(-0.05, 0.05) * rx, tr, tr)
        hu[trachea & ~lung] = rng.uniform(-1000, -950)
    vertebra = _ellipse_mask(shape, spine_cy, cx, spine_r, spine_r * 1.1)
    cortex = vertebra & ~_ellipse_mask(shape, spine_cy, cx, spine_r * 0.8, spine_r * 0.9)
    hu[vertebra & inner] = rng.uniform(150, 300)
    hu[cortex & inner] = rng.uniform(500, 1000)
    canal = _ellipse_mask(shape, spine_cy + spine_r * 1.5, cx, spine_r * 0.45, spine_r * 0.45)
    hu[canal & inner] = rng.uniform(0, 40)
    sternum = _ellipse_mask(shape, cy - ry * rng.uniform(0.8, 0.9), cx, 0.035 * rx, 0.12 * rx)
    hu[sternum & body] = rng.uniform(300, 700)
    # Ribs: small bright ellipses around the chest wall, just outside the lungs.
    for k in range(int(rng.integers(6, 14))):
        t = rng.uniform(0.15, np.pi - 0.15) * (1 if k % 2 else -1)
        ryy, rxx = ry * rng.uniform(0.80, 0.92), rx * rng.uniform(0.82, 0.93)
        py, px = cy - ryy * np.cos(t), cx + rxx * np.sin(t)
        rib = _ellipse_mask(shape, py, px, rng.uniform(4, 8) * s, rng.uniform(8, 18) * s, t + np.pi / 2)
        hu[rib & body & ~lung & ~mask] = rng.uniform(300, 1200)

    # Look-alikes outside the lungs, which must stay unlabelled: trabecular bone and posterior vertebral
    # elements, scapulae and clavicles, mediastinal fat with lymph nodes, arms beside the chest, the table
    # and clothing folds in the air (the false positives a model trained without them makes on real CT).
    trabecular = vertebra & ~cortex & inner
    ty, tx = np.nonzero(trabecular)
    if ty.size:
        y0, x0 = ty.min(), tx.min()
        tex = _smooth_noise(rng, (int(ty.max() - y0) + 1, int(tx.max() - x0) + 1), 1.2)
        hu[ty, tx] += 90 * tex[ty - y0, tx - x0]
    for dy, dx, ay, ax in ((spine_r * 2.3, 0.0, spine_r * 0.9, spine_r * 0.3),
                           (spine_r * 1.2, spine_r * 1.5, spine_r * 0.3, spine_r * 0.8),
                           (spine_r * 1.2, -spine_r * 1.5, spine_r * 0.3, spine_r * 0.8)):
        part = _ellipse_mask(shape, spine_cy + dy, cx + dx, ay, ax, rng.uniform(-0.3, 0.3))
        hu[part & inner & ~lung] = rng.uniform(250, 900)
    for side in (-1, 1):
        if rng.uniform() < 0.6:
            scap = _ellipse_mask(shape, cy + ry * rng.uniform(0.35, 0.65), cx + side * rx * rng.uniform(0.6, 0.8),
                                 rng.uniform(4, 9) * s, rng.uniform(30, 70) * s, side * rng.uniform(0.4, 1.1))
            hu[scap & inner & ~lung] = rng.uniform(250, 900)
        if rng.uniform() < 0.3:
            clav = _ellipse_mask(shape, cy - ry * rng.uniform(0.6, 0.85), cx + side * rx * rng.uniform(0.25, 0.5),
                                 rng.uniform(6, 11) * s, rng.uniform(25, 50) * s, side * rng.uniform(-0.3, 0.3))
            hu[clav & inner & ~lung] = rng.uniform(300, 1000)
    medi = inner & ~lung & ~vertebra
    ys_m, xs_m = np.nonzero(medi)
    for _ in range(int(rng.integers(2, 10))):
        i = int(rng.integers(ys_m.size))
        r = rng.uniform(4, 18) * s
        fat = _blob_at(rng, shape, float(ys_m[i]), float(xs_m[i]), r * 1.6, 0.4) & medi
        hu[fat] = rng.uniform(-120, -60)
        if rng.uniform() < 0.6:
            node = _blob_at(rng, shape, float(ys_m[i]), float(xs_m[i]), r * rng.uniform(0.4, 0.8), 0.3) & medi
            hu[node] = rng.uniform(10, 70)
    if rng.uniform() < 0.35:
        arm_r = rng.uniform(0.12, 0.2) * rx
        for side in (-1, 1):
            ay, ax = cy + rng.uniform(-0.2, 0.2) * ry, cx + side * (rx + arm_r * rng.uniform(0.9, 1.4))
            arm = _ellipse_mask(shape, ay, ax, arm_r * rng.uniform(1.0, 1.4), arm_r, rng.uniform(0, np.pi))
            hu[arm] = rng.uniform(-110, -70)
            hu[_ellipse_mask(shape, ay, ax, arm_r * 0.85, arm_r * 0.8) & arm] = rng.uniform(20, 60)
            bone_r = arm_r * rng.uniform(0.25, 0.35)
            hu[_ellipse_mask(shape, ay, ax, bone_r, bone_r)] = rng.uniform(700, 1300)
            hu[_ellipse_mask(shape, ay, ax, bone_r * 0.65, bone_r * 0.65)] = rng.uniform(0, 150)
            body |= arm
    if rng.uniform() < 0.7:
        table_y = int(min(size - 3, cy + ry + rng.uniform(8, 40) * s))
        curve = np.zeros(shape, np.uint8)
        cv2.ellipse(curve, (int(cx), table_y - int(size * 0.6)), (int(size * 0.6), int(size * 0.6)), 0, 45, 135, 1,
                    max(1, int(rng.uniform(2, 5) * s)))
        hu[curve > 0] = rng.uniform(100, 500)
    for _ in range(int(rng.integers(0, 4))):
        fold = np.zeros(shape, np.uint8)
        cv2.ellipse(fold, (int(cx + rng.uniform(-0.3, 0.3) * rx), int(cy)),
                    (int(rx * rng.uniform(1.02, 1.2)), int(ry * rng.uniform(1.02, 1.3))), 0,
                    rng.uniform(180, 300), rng.uniform(300, 360), 1, 1)
        hu[(fold > 0) & ~body] = rng.uniform(-700, -200)

    # Scanner noise (stronger in the body than in air) and a light blur for the reconstruction kernel.
    hu = cv2.GaussianBlur(hu, (3, 3), rng.uniform(0.4, 0.9))
    noise_sd = rng.uniform(8, 30)
    hu += noise_sd * rng.standard_normal(shape).astype(np.float32) * np.where(body, 1.0, 0.4)
    hu = np.clip(hu, -1024, 3071).astype(np.float32)
    return CTSlice(hu=hu, mask=mask, lesions=tuple(kinds))


def generate_batch(seed: int, count: int, *, lesion_probability: float = 0.8, size: int = SIZE,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`count` slices from `seed`: (hu float32 (N, size, size), mask bool (N, size, size))."""
    rng = np.random.default_rng(seed)
    hus = np.empty((count, size, size), np.float32)
    masks = np.empty((count, size, size), bool)
    for i in range(count):
        sl = generate_slice(rng, lesion_probability=lesion_probability, size=size)
        hus[i], masks[i] = sl.hu, sl.mask
    return hus, masks
