"""Seeded synthetic fingerprints: a master print per identity and noisy impressions of it.

The master print follows the classic SFinGe recipe: an orientation field from a zero-pole model of core and
delta singularities (arch, loop or whorl), then Gabor-filtered noise "grown" along that field until ridges
with a realistic period appear (minutiae emerge where the grown ridges end or fork). An impression applies
what a sensor sees, tuned against the real impressions in shared/data/fingerprints (ridge period 7.8-9.2 px,
22-36 % of the print dark, foreground ~45 % of the frame): elastic skin distortion (smooth field plus a
contact-centred compression), rotation up to ~25 degrees, translation, partial contact (an ellipse clipped at
random, sometimes by the frame edge), pressure and dryness (a per-impression ridge threshold plus smooth dry
patches where ridges break into dots), pores, creases (thin white lines crossing the ridge flow, mostly
across the finger) and scars (wider white strokes, per finger, so they repeat across impressions), sensor
texture (grain on ridges, faint background speckle and an uneven background level) and noise. Output:
500x400 (h x w) uint8, dark near-binary ridges on a light background.

Everything is a pure function of its seed, so identities and impressions are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HEIGHT = 500
WIDTH = 400
_N_ORIENT = 16


@dataclass(frozen=True)
class MasterPrint:
    """One finger: its grown ridge image (float32 in [-1, 1], ridge > 0), the finger's contact mask, and its
    scars and permanent creases (uint8 mask: skin that never prints)."""

    ridges: np.ndarray
    mask: np.ndarray
    scars: np.ndarray


def _orientation_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Ridge orientation (radians, modulo pi) from a zero-pole model with a random fingerprint class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    z = xx + 1j * yy
    kind = rng.choice(["arch", "loop_l", "loop_r", "whorl"], p=[0.15, 0.3, 0.3, 0.25])
    cx, cy = w / 2 + rng.normal(0, w * 0.05), h * 0.45 + rng.normal(0, h * 0.05)
    cores: list[complex] = []
    deltas: list[complex] = []
    if kind in ("loop_l", "loop_r"):
        side = -1 if kind == "loop_l" else 1
        cores.append(complex(cx, cy))
        deltas.append(complex(cx + side * rng.uniform(0.25, 0.4) * w, cy + rng.uniform(0.25, 0.4) * h))
    elif kind == "whorl":
        d = rng.uniform(0.03, 0.08) * h
        cores += [complex(cx, cy - d), complex(cx + rng.normal(0, 5), cy + d)]
        deltas += [complex(cx - rng.uniform(0.3, 0.45) * w, cy + rng.uniform(0.3, 0.4) * h),
                   complex(cx + rng.uniform(0.3, 0.45) * w, cy + rng.uniform(0.3, 0.4) * h)]
    theta = np.zeros((h, w))
    # Sherlock-Monro zero-pole model: +1/2 turn around a core, -1/2 around a delta.
    for c in cores:
        theta += 0.5 * np.angle(z - c)
    for d in deltas:
        theta -= 0.5 * np.angle(z - d)
    if kind == "arch":
        # An arch has no singularity: ridges are horizontal with a bump that grows towards the centre.
        amp = rng.uniform(0.5, 0.9)
        theta = amp * np.arctan((xx - cx) / (0.25 * w)) * np.exp(-((yy - cy) / (0.6 * h)) ** 2)
        theta = -theta
    # A smooth random perturbation makes two identities of the same class differ in their flow too.
    pert = cv2.resize(rng.normal(0, 0.25, (6, 5)), (w, h), interpolation=cv2.INTER_CUBIC)
    return (theta + pert + rng.normal(0, 0.05)) % np.pi


def _gabor_bank(period: float) -> list[np.ndarray]:
    kernels = []
    for k in range(_N_ORIENT):
        # Gabor kernels are parameterised by the normal to the ridge; ridges run along `theta`.
        theta = k * np.pi / _N_ORIENT + np.pi / 2
        kern = cv2.getGaborKernel((9, 9), sigma=period * 0.42, theta=theta, lambd=period, gamma=0.8, psi=0)
        kern -= kern.mean()
        kernels.append((kern / np.abs(kern).sum()).astype(np.float32))
    return kernels


def _finger_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    centre = (int(w / 2 + rng.normal(0, 6)), int(h * 0.52 + rng.normal(0, 6)))
    # Elongated like a real distal phalanx on a 500x400 frame (the real prints are ~0.5 w by ~0.9 h).
    axes = (int(w * rng.uniform(0.25, 0.33)), int(h * rng.uniform(0.42, 0.49)))
    cv2.ellipse(mask, centre, axes, float(rng.normal(0, 4)), 0, 360, 1, -1)
    return mask.astype(bool)


def master_print(identity_seed: int, flow_seed: int | None = None) -> MasterPrint:
    """The master ridge pattern of one finger, a pure function of `identity_seed`. With `flow_seed`, the ridge
    flow (orientation field, ridge period) and the finger's outline are those of finger `flow_seed`, and only the
    ridges grown along them, the scars and the creases are this finger's own: a finger of the same class and
    shape whose minutiae differ, the hardest impostor for a matcher that reads the flow."""
    rng = np.random.default_rng([identity_seed, 0x51F])
    flow = rng if flow_seed is None else np.random.default_rng([flow_seed, 0x51F])
    # Ridges are grown at half resolution (4x cheaper) and upsampled; the period is set for full size.
    h, w = HEIGHT // 2, WIDTH // 2
    theta = _orientation_field(flow, h, w)
    period = flow.uniform(7.5, 9.5) / 2
    bank = _gabor_bank(period)
    bins = np.round(theta / np.pi * _N_ORIENT).astype(int) % _N_ORIENT
    img = rng.normal(0, 1, (h, w)).astype(np.float32)
    if flow is not rng:
        flow.normal(0, 1, (h, w))  # the flow finger's own ridge noise, drawn so that its outline comes next
    for _ in range(7):
        out = np.zeros_like(img)
        for k, kern in enumerate(bank):
            sel = bins == k
            if sel.any():
                out[sel] = cv2.filter2D(img, -1, kern, borderType=cv2.BORDER_REFLECT)[sel]
        img = np.clip(out / (out.std() + 1e-6) * 1.5, -1, 1)
    full = cv2.resize(img, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    mask = _finger_mask(flow, HEIGHT, WIDTH)
    scars = np.zeros((HEIGHT, WIDTH), np.uint8)
    for _ in range(int(rng.integers(0, 3))):
        # A scar: a wide curved stroke somewhere on the pad.
        pts = np.cumsum(rng.normal(0, 12, (6, 2)), axis=0) + [rng.uniform(100, 300), rng.uniform(120, 380)]
        cv2.polylines(scars, [pts.astype(np.int32)], False, 1, int(rng.integers(3, 7)))
    for _ in range(int(rng.integers(2, 7))):
        # Permanent flexion creases: thin lines mostly across the finger.
        y0, ang, length = rng.uniform(80, 450), np.deg2rad(rng.normal(0, 20)), rng.uniform(60, 220)
        x0 = rng.uniform(60, 340)
        dx, dy = np.cos(ang) * length / 2, np.sin(ang) * length / 2
        cv2.line(scars, (int(x0 - dx), int(y0 - dy)), (int(x0 + dx), int(y0 + dy)), 1, int(rng.integers(1, 3)))
    return MasterPrint(ridges=np.clip(full, -1, 1).astype(np.float32), mask=mask, scars=scars)


def _smooth_field(rng: np.random.Generator, h: int, w: int, amp: float, cells: int = 4) -> np.ndarray:
    coarse = rng.normal(0, amp, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def impression(master: MasterPrint, capture_seed: int, *, severity: float = 1.0) -> np.ndarray:
    """One sensor impression of `master`: (500, 400) uint8, dark ridges (near 0) on a light background."""
    rng = np.random.default_rng([capture_seed, 0x1A9])
    h, w = master.ridges.shape
    s = severity
    # Elastic skin distortion + rotation + translation, composed into one remap.
    ang = np.deg2rad(np.clip(rng.normal(0, 10 * s), -25, 25))
    tx, ty = rng.normal(0, 15 * s), rng.normal(0, 18 * s)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w / 2, h / 2
    ca, sa = np.cos(ang), np.sin(ang)
    src_x = ca * (xx - cx - tx) + sa * (yy - cy - ty) + cx
    src_y = -sa * (xx - cx - tx) + ca * (yy - cy - ty) + cy
    # Skin is pressed outwards from where the finger touches first (Cappelli's plastic-distortion model, in
    # spirit): a radial displacement that grows then fades with distance from a contact centre.
    pcx, pcy = cx + rng.normal(0, 30), cy + rng.normal(0, 40)
    r = np.hypot(xx - pcx, yy - pcy) + 1e-3
    push = rng.uniform(0, 6 * s) * np.exp(-((r - 90) / 70) ** 2)
    src_x = (src_x - push * (xx - pcx) / r + _smooth_field(rng, h, w, 4.0 * s)).astype(np.float32)
    src_y = (src_y - push * (yy - pcy) / r + _smooth_field(rng, h, w, 4.0 * s)).astype(np.float32)
    ridges = cv2.remap(master.ridges, src_x, src_y, cv2.INTER_LINEAR, borderValue=-1.0)
    mask = cv2.remap(master.mask.astype(np.float32), src_x, src_y, cv2.INTER_LINEAR) > 0.5
    scars = cv2.remap(master.scars.astype(np.float32), src_x, src_y, cv2.INTER_LINEAR) > 0.3
    # Partial contact: the finger touches only part of the platen, a smooth ellipse clipped at random.
    contact = np.zeros((h, w), np.uint8)
    ccx = int(w / 2 + rng.normal(0, 20 * s))
    ccy = int(h / 2 + rng.normal(0, 30 * s))
    axes = (int(w * rng.uniform(0.28, 0.45)), int(h * rng.uniform(0.36, 0.52)))
    cv2.ellipse(contact, (ccx, ccy), axes, float(rng.normal(0, 10)), 0, 360, 1, -1)
    mask &= contact.astype(bool)
    if rng.random() < 0.15:  # finger placed off the sensor: one side cut by the frame
        edge = int(rng.uniform(0.1, 0.25) * (w if rng.random() < 0.5 else h))
        side = rng.integers(4)
        sl = [np.s_[:, :edge], np.s_[:, w - edge:], np.s_[:edge, :], np.s_[h - edge:, :]][side]
        mask[sl] = False
    # Pressure / dryness: real prints show thin ridges (22-36 % dark) broken into dots in dry patches.
    pressure = rng.normal(-0.25, 0.2 * s) + _smooth_field(rng, h, w, 0.15 * s, cells=3)
    dry = _smooth_field(rng, h, w, 1.0, cells=5) > rng.uniform(0.6, 1.6)
    noisy = ridges + pressure + rng.normal(0, 0.35 * s, (h, w)).astype(np.float32)
    base_break = rng.uniform(0.01, 0.12) * s  # how dry this finger is today: ridges broken into dots
    breaks = (rng.random((h, w)) < np.where(dry, rng.uniform(0.15, 0.3), base_break))
    breaks = cv2.dilate(breaks.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
    # Creases of this impression (skin folds that come and go) on top of the finger's permanent ones.
    creases = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(0, 8))):
        y0, a, length = rng.uniform(50, 470), np.deg2rad(rng.normal(0, 30)), rng.uniform(20, 120)
        x0 = rng.uniform(40, 360)
        dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
        cv2.line(creases, (int(x0 - dx), int(y0 - dy)), (int(x0 + dx), int(y0 + dy)), 1, 1)
    ridge = (noisy > 0) & mask & ~breaks & ~scars & ~creases.astype(bool)
    # Sensor texture: grain on the ridges, an uneven light background with faint speckle.
    background = (rng.uniform(225, 255) + _smooth_field(rng, h, w, 8.0, cells=3)
                  + rng.normal(0, rng.uniform(0, 6), (h, w)))
    ink = rng.integers(1, 60, (h, w))
    img = np.clip(np.where(ridge, ink, background), 0, 255).astype(np.uint8)
    # Near-binary like the real sensor images, with a little blur at ridge edges.
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return img


def impressions(identity_seed: int, count: int, *, first_capture: int = 0, severity: float = 1.0,
                flow_seed: int | None = None) -> list[np.ndarray]:
    """`count` impressions of identity `identity_seed` (capture seeds first_capture, first_capture+1, ...);
    `flow_seed` as in `master_print`."""
    master = master_print(identity_seed, flow_seed)
    return [impression(master, identity_seed * 100_003 + first_capture + i, severity=severity) for i in range(count)]
