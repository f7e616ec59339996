"""Lesions inserted into real CT slices where real lung tumours sit, with exact masks.

Every function is a pure function of its `numpy.random.Generator`, the slice and its pixel spacing, so a
data set is reproducible from its seed. Lesions are drawn at the slice's own pixel spacing (4x supersampled,
then area-averaged, then blurred by a scanner-like point spread), so their partial-volume edges match the
background's resolution; the network sees both only after the gateway's own resampling.

Kinds (paper-free, from radiology): solid (round to oval), lobulated, spiculated (radial spikes), part-solid
(a ground-glass halo around a solid core) and ground-glass (hazy, vessels stay visible). Sizes 5-70 mm.
Places: inside the lung field, or against its wall (chest wall, mediastinum, diaphragm), on whatever slice
level the background is: apex, hilum, base. The mask is the set of pixels at least half covered by lesion,
inside the lung region (a radiologist labels the tumour, not the chest wall it touches).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("solid", "lobulated", "spiculated", "part_solid", "ground_glass")
KIND_P = (0.25, 0.2, 0.2, 0.17, 0.18)
MIN_MM, MAX_MM = 5.0, 70.0
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Inserted:
    """One inserted lesion: its kind, equivalent diameter in mm, and whether it touches the lung wall."""

    kind: str
    diameter_mm: float
    at_wall: bool
    source: str


def lung_region(hu: np.ndarray, spacing_mm: tuple[float, float], lung_label: np.ndarray | None = None,
                organ: np.ndarray | None = None) -> np.ndarray:
    """Bool lung region of a real slice: air-like tissue (< -400 HU) not connected to the outside air, in
    components of at least 4 cm^2 whose median is parenchyma (-960 .. -600 HU: not bowel gas or the
    trachea, which are pure air), closed over 5 mm and hole-filled (vessels and juxtapleural nodules in).
    With `lung_label` (TotalSegmentator's lobes), only components mostly inside it; with `organ` (labels of
    what is never lung: stomach, bowel ...), none mostly inside those."""
    hu = np.asarray(hu, np.float32)
    air = (hu < -400).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(air, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    px_mm2 = spacing_mm[0] * spacing_mm[1]
    keep = stats[:, cv2.CC_STAT_AREA] * px_mm2 >= 400.0
    keep[0] = False
    keep[border] = False
    for k in np.flatnonzero(keep):
        median = float(np.median(hu[labels == k]))
        if not -960.0 <= median <= -600.0:
            keep[k] = False
        elif lung_label is not None and not np.asarray(lung_label)[labels == k].mean() > 0.5:
            keep[k] = False
        elif organ is not None and (np.asarray(organ)[labels == k] > 0).mean() > 0.3:
            keep[k] = False
    lungs = keep[labels].astype(np.uint8)
    r = max(1, int(round(5.0 / spacing_mm[0])))
    closed = cv2.morphologyEx(lungs, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    outside = np.pad(1 - closed, 1, constant_values=1).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2) | (closed > 0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _shape(rng: np.random.Generator, kind: str, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(occupancy in [0, 1], normalised radius r/R) on a square patch around the lesion centre."""
    half = int(np.ceil(radius_px * 1.9)) + 3
    n = 2 * half + 1
    ss = SUPERSAMPLE
    coords = (np.arange(n * ss, dtype=np.float32) + 0.5) / ss - half - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    theta = np.arctan2(yy, xx)
    rr = np.hypot(yy, xx)
    aspect = rng.uniform(0.75, 1.0)
    rot = rng.uniform(0, np.pi)
    # Ellipticity: scale the radius by direction.
    r_dir = 1.0 / np.sqrt((np.cos(theta - rot) / 1.0) ** 2 + (np.sin(theta - rot) / aspect) ** 2)
    bound = radius_px * r_dir
    lob = 0.04 if kind in ("solid", "ground_glass") else rng.uniform(0.08, 0.2)
    for k in range(2, 7):
        bound = bound * (1 + rng.uniform(0, lob) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)))
    if kind == "spiculated":
        for _ in range(int(rng.integers(6, 17))):
            centre = rng.uniform(-np.pi, np.pi)
            width = rng.uniform(0.03, 0.09)
            length = rng.uniform(0.3, 0.9) * radius_px
            d = np.angle(np.exp(1j * (theta - centre)))
            bound = bound + length * np.exp(-((d / width) ** 2))
    if kind == "ground_glass":
        bound = bound * (1 + 0.08 * cv2.resize(_smooth_noise(rng, (n, n), 2.0), (n * ss, n * ss)))
    inside = (rr <= bound).astype(np.float32)
    occ = cv2.resize(inside, (n, n), interpolation=cv2.INTER_AREA)
    occ = cv2.GaussianBlur(occ, (0, 0), 0.6)  # the scanner's point spread: partial-volume edges
    rnorm = cv2.resize((rr / max(radius_px, 1e-3)).astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    return occ, rnorm


def _hu(rng: np.random.Generator, kind: str, rnorm: np.ndarray, diameter_mm: float) -> tuple[np.ndarray, bool]:
    """(lesion HU on the patch, whether it is ground-glass-like i.e. blended without hiding vessels)."""
    n = rnorm.shape[0]
    tex = _smooth_noise(rng, (n, n), rng.uniform(0.8, 2.0))
    solid = rng.uniform(-5, 70) + rng.uniform(6, 25) * tex
    if kind in ("solid", "lobulated", "spiculated"):
        if diameter_mm > 25 and rng.uniform() < 0.3:  # a necrotic centre in a large mass
            solid = solid - rng.uniform(15, 45) * (rnorm < rng.uniform(0.3, 0.55))
        return solid.astype(np.float32), False
    ggo = rng.uniform(-700, -380) + rng.uniform(20, 60) * tex
    if kind == "part_solid":
        core = rnorm < rng.uniform(0.3, 0.6)
        return np.where(core, solid, ggo).astype(np.float32), True
    return ggo.astype(np.float32), True


def _place(rng: np.random.Generator, region: np.ndarray, dist: np.ndarray, radius_px: float,
           at_wall: bool) -> tuple[int, int] | None:
    if at_wall:
        cand = (dist >= 1) & (dist >= 0.1 * radius_px) & (dist <= 0.6 * radius_px + 1)
    else:
        cand = dist >= 0.6 * radius_px + 1
    ys, xs = np.nonzero(cand & region)
    if ys.size == 0:
        return None
    k = int(rng.integers(ys.size))
    return int(ys[k]), int(xs[k])


def _blend(hu: np.ndarray, mask: np.ndarray, patch_hu: np.ndarray, occ: np.ndarray, allowed: np.ndarray,
           region: np.ndarray, cy: int, cx: int, glass: bool, noise_hu: float, rng: np.random.Generator,
           ) -> tuple[int, int] | None:
    """Write one lesion patch centred at (cy, cx); returns (kept mask px, unclipped px) or None if off-image."""
    half = occ.shape[0] // 2
    y0, x0 = cy - half, cx - half
    ty0, tx0 = max(0, y0), max(0, x0)
    ty1, tx1 = min(hu.shape[0], y0 + occ.shape[0]), min(hu.shape[1], x0 + occ.shape[1])
    if ty0 >= ty1 or tx0 >= tx1:
        return None
    py, px = slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0)
    a = occ[py, px] * allowed[ty0:ty1, tx0:tx1]
    bg = hu[ty0:ty1, tx0:tx1]
    les = patch_hu[py, px]
    if glass:
        out = bg + a * np.maximum(les - bg, 0.0)  # vessels brighter than the haze stay visible
    else:
        out = bg * (1 - a) + les * a
    out = out + a * noise_hu * rng.standard_normal(a.shape).astype(np.float32)
    hu[ty0:ty1, tx0:tx1] = out
    lab = (a >= 0.5) & region[ty0:ty1, tx0:tx1]
    mask[ty0:ty1, tx0:tx1] |= lab
    return int(lab.sum()), int((occ >= 0.5).sum())


def insert_lesions(rng: np.random.Generator, hu: np.ndarray, spacing_mm: tuple[float, float], count: int,
                   nodule_bank: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] | None = None,
                   paste_fraction: float = 0.2, lung_label: np.ndarray | None = None,
                   organ: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[Inserted]]:
    """`count` lesions inserted into the lung region of a real HU slice: (new HU float32, mask, what)."""
    out = np.asarray(hu, np.float32).copy()
    mask = np.zeros(out.shape, bool)
    region = lung_region(out, spacing_mm, lung_label, organ)
    done: list[Inserted] = []
    if not region.any():
        return out, mask, done
    r_allow = max(1, int(round(2.0 / spacing_mm[0])))
    allowed = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_allow + 1,) * 2))
    allowed = cv2.GaussianBlur(allowed.astype(np.float32), (0, 0), 0.7)
    px_mm = float(np.sqrt(spacing_mm[0] * spacing_mm[1]))
    for _ in range(count):
        for _attempt in range(5):
            free = region & ~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            dist = cv2.distanceTransform(free.astype(np.uint8), cv2.DIST_L2, 5)
            at_wall = bool(rng.uniform() < 0.5)
            if nodule_bank and rng.uniform() < paste_fraction:
                pasted = _paste_nodule(rng, out, mask, region, dist, allowed, spacing_mm, nodule_bank, at_wall)
                if pasted is not None:
                    done.append(pasted)
                    break
                continue
            if rng.uniform() < 0.5:
                diameter = float(np.exp(rng.uniform(np.log(MIN_MM), np.log(MAX_MM))))
            else:
                diameter = float(np.exp(rng.uniform(np.log(8.0), np.log(35.0))))
            kind = str(rng.choice(KINDS, p=KIND_P))
            radius_px = diameter / 2 / px_mm
            centre = _place(rng, region, dist, radius_px, at_wall)
            if centre is None:
                continue
            occ, rnorm = _shape(rng, kind, radius_px)
            patch_hu, glass = _hu(rng, kind, rnorm, diameter)
            trial_mask = mask.copy()
            trial_hu = out.copy()
            res = _blend(trial_hu, trial_mask, patch_hu, occ, allowed, region, centre[0], centre[1], glass,
                         float(rng.uniform(4, 18)), rng)
            if res is None or res[0] < 0.5 * res[1] or res[0] < 3:
                continue
            out, mask = trial_hu, trial_mask
            done.append(Inserted(kind, diameter, at_wall, "drawn"))
            break
    return out, mask, done


def nodule_bank_from(hu: np.ndarray, lesion: np.ndarray, spacing_mm: tuple[float, float],
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Patches (HU, feathered alpha, mask, pixel mm) of a real nodule on each slice where it appears."""
    bank = []
    for z in np.flatnonzero(lesion.reshape(lesion.shape[0], -1).any(axis=1)):
        m = lesion[z].astype(bool)
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min() - 6, ys.max() + 7, xs.min() - 6, xs.max() + 7
        patch = hu[z, y0:y1, x0:x1].astype(np.float32)
        pm = m[y0:y1, x0:x1]
        alpha = np.clip(cv2.GaussianBlur(pm.astype(np.float32), (0, 0), 1.0) * 1.6, 0, 1) * \
            cv2.dilate(pm.astype(np.uint8), np.ones((3, 3), np.uint8))
        bank.append((patch, alpha.astype(np.float32), pm, float(spacing_mm[0])))
    return bank


def _paste_nodule(rng: np.random.Generator, hu: np.ndarray, mask: np.ndarray, region: np.ndarray,
                  dist: np.ndarray, allowed: np.ndarray, spacing_mm: tuple[float, float],
                  bank: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], at_wall: bool) -> Inserted | None:
    """Copy one real nodule (rescaled 0.8-1.6x in mm, rotated) into the background's lung region."""
    patch, alpha, pm, src_mm = bank[int(rng.integers(len(bank)))]
    scale = src_mm / spacing_mm[0] * rng.uniform(0.8, 1.6)
    size = (max(3, int(round(patch.shape[1] * scale))), max(3, int(round(patch.shape[0] * scale))))
    side = int(max(size) * 1.5) | 1
    canvas_hu = np.zeros((side, side), np.float32)
    canvas_a = np.zeros((side, side), np.float32)
    ph = cv2.resize(patch, size, interpolation=cv2.INTER_LINEAR)
    pa = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)
    oy, ox = (side - size[1]) // 2, (side - size[0]) // 2
    canvas_hu[oy:oy + size[1], ox:ox + size[0]] = ph
    canvas_a[oy:oy + size[1], ox:ox + size[0]] = pa
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(0, 360)), 1.0)
    canvas_hu = cv2.warpAffine(canvas_hu, rot, (side, side), flags=cv2.INTER_LINEAR)
    canvas_a = np.clip(cv2.warpAffine(canvas_a, rot, (side, side), flags=cv2.INTER_LINEAR), 0, 1)
    radius_px = float(np.sqrt((canvas_a >= 0.5).sum() / np.pi))
    centre = _place(rng, region, dist, radius_px, at_wall)
    if centre is None:
        return None
    trial_hu, trial_mask = hu.copy(), mask.copy()
    res = _blend(trial_hu, trial_mask, canvas_hu, canvas_a, allowed, region, centre[0], centre[1], False, 0.0, rng)
    if res is None or res[0] < 0.5 * res[1] or res[0] < 3:
        return None
    hu[...], mask[...] = trial_hu, trial_mask
    return Inserted("lung1_nodule", 2 * radius_px * spacing_mm[0], at_wall, "lung1 copy-paste")
