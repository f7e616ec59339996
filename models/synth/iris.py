"""Seeded synthetic eye images: an iris texture per identity and near-infrared captures of that eye.

The identity is an iris texture in normalised polar coordinates (radius 0 at the pupil edge, 1 at the
limbus): radial fibres, crypts, furrows and a collarette ring, all from the identity's seed. A capture renders
the eye as an NIR sensor would: dark pupil (dilation varies between captures, so the texture stretches
radially), iris, sclera and skin, eye rotation (head tilt), gaze offset, eyelid occlusion with lashes,
specular reflections of the illuminator, defocus blur and sensor noise. Output: (240, 320) uint8.
"""

from __future__ import annotations

import cv2
import numpy as np

HEIGHT = 240
WIDTH = 320
TEXTURE_SHAPE = (64, 512)  # (radial, angular) samples of the identity's texture


def iris_texture(identity_seed: int) -> np.ndarray:
    """The identity's iris texture, float32 (radial, angular) in [0, 1], angular axis periodic."""
    rng = np.random.default_rng([identity_seed, 0x1215])
    nr, na = TEXTURE_SHAPE
    # Radial fibres: noise that varies fast along the angle and slowly along the radius, wrapped in angle.
    fibres = np.zeros((nr, na), np.float32)
    for scale, weight in ((4, 1.0), (8, 0.7), (16, 0.5)):
        coarse = rng.normal(0, 1, (max(2, nr // (scale * 2)), na // scale)).astype(np.float32)
        coarse = np.concatenate([coarse, coarse[:, :3]], axis=1)
        up = cv2.resize(coarse, (na + 3 * na // (na // scale), nr), interpolation=cv2.INTER_CUBIC)[:, :na]
        fibres += weight * up
    fibres /= fibres.std() + 1e-6
    tex = 0.5 + 0.12 * fibres
    rr = np.linspace(0, 1, nr, dtype=np.float32)[:, None]
    aa = np.linspace(0, 2 * np.pi, na, endpoint=False, dtype=np.float32)[None, :]
    # Collarette: a wavy bright ring a third of the way out.
    coll_r = rng.uniform(0.25, 0.4) + 0.04 * np.sin(aa * rng.integers(5, 11) + rng.uniform(0, 6.28))
    tex += 0.15 * np.exp(-((rr - coll_r) / 0.04) ** 2)
    # Crypts: dark lacunae, the most distinctive features of a real iris.
    for _ in range(rng.integers(12, 25)):
        r0, a0 = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * np.pi)
        sr, sa = rng.uniform(0.03, 0.09), rng.uniform(0.03, 0.12)
        da = np.angle(np.exp(1j * (aa - a0)))
        tex -= rng.uniform(0.15, 0.35) * np.exp(-((rr - r0) / sr) ** 2 - (da / sa) ** 2)
    # Concentric furrows in the outer part.
    for _ in range(rng.integers(2, 5)):
        r0 = rng.uniform(0.55, 0.95)
        tex -= 0.08 * np.exp(-((rr - r0) / 0.015) ** 2) * (0.5 + 0.5 * np.cos(aa * rng.integers(1, 4)))
    tex *= rng.uniform(0.7, 1.0)
    return np.clip(tex, 0, 1).astype(np.float32)


def capture(texture: np.ndarray, capture_seed: int, *, severity: float = 1.0) -> np.ndarray:
    """One NIR eye image of the eye with `texture`: (240, 320) uint8."""
    rng = np.random.default_rng([capture_seed, 0xE7E])
    s = severity
    h, w = HEIGHT, WIDTH
    cx = w / 2 + rng.normal(0, 10 * s)
    cy = h / 2 + rng.normal(0, 6 * s)
    r_iris = rng.uniform(78, 88)
    r_pupil = r_iris * np.clip(rng.normal(0.38, 0.06 * s), 0.25, 0.55)
    # The pupil is rarely concentric with the limbus.
    pcx, pcy = cx + rng.normal(0, 2), cy + rng.normal(0, 2)
    rot = rng.normal(0, np.deg2rad(6) * s)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(yy - pcy, xx - pcx)
    dist_p = np.hypot(xx - pcx, yy - pcy)
    dist_i = np.hypot(xx - cx, yy - cy)
    # Normalised radius between the pupil edge and the limbus along each ray (first-order approximation).
    rad = np.clip((dist_p - r_pupil) / np.maximum(r_iris - r_pupil + (dist_p - dist_i), 1.0), 0, 1)
    # Dilation is not a linear stretch of the tissue: bend the radial mapping a little.
    rad = rad ** rng.uniform(0.9, 1.1)
    nr, na = texture.shape
    map_x = (((ang - rot) % (2 * np.pi)) / (2 * np.pi) * na).astype(np.float32)
    map_y = (rad * (nr - 1)).astype(np.float32)
    tex_big = np.concatenate([texture, texture[:, :1]], axis=1)
    iris = cv2.remap(tex_big, map_x, map_y, cv2.INTER_LINEAR)
    skin = 0.75 + 0.05 * cv2.resize(rng.normal(0, 1, (6, 8)).astype(np.float32), (w, h))
    sclera = np.float32(rng.uniform(0.8, 0.92))
    img = np.where(dist_i <= r_iris, 0.15 + 0.55 * iris, sclera).astype(np.float32)
    img = np.where(dist_p <= r_pupil, np.float32(rng.uniform(0.03, 0.08)), img)
    # Eye opening: between two parabolic lids; outside it is skin.
    open_up = r_iris * rng.uniform(0.55, 1.1) / max(s, 1e-3) ** 0.3
    open_dn = r_iris * rng.uniform(0.75, 1.2)
    upper = cy - open_up + ((xx - cx) / (w * 0.45)) ** 2 * open_up * 1.4
    lower = cy + open_dn - ((xx - cx) / (w * 0.45)) ** 2 * open_dn * 1.4
    eye = (yy > upper) & (yy < lower)
    img = np.where(eye, img, skin)
    # Lashes: dark thin strokes from the upper lid.
    lashes = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(10, 40) * s)):
        x0 = rng.uniform(cx - 1.2 * r_iris, cx + 1.2 * r_iris)
        y0 = cy - open_up + ((x0 - cx) / (w * 0.45)) ** 2 * open_up * 1.4
        cv2.line(lashes, (int(x0), int(y0)), (int(x0 + rng.normal(0, 6)), int(y0 + rng.uniform(8, 25))), 1, 1)
    img = np.where(lashes > 0, img * 0.35, img)
    # Specular reflections of the NIR illuminator, usually inside the pupil or on its border.
    for _ in range(rng.integers(1, 3)):
        sx = int(pcx + rng.normal(0, r_pupil * 0.6))
        sy = int(pcy + rng.normal(0, r_pupil * 0.6))
        spot = np.zeros((h, w), np.uint8)
        cv2.circle(spot, (sx, sy), int(rng.integers(3, 7)), 1, -1)
        img = np.where(spot > 0, 0.98, img)
    sigma = abs(rng.normal(0, 0.9 * s)) + 0.3
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02 * s, (h, w))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def captures(identity_seed: int, count: int, *, first_capture: int = 0, severity: float = 1.0) -> list[np.ndarray]:
    """`count` eye images of identity `identity_seed` (capture seeds first_capture, first_capture+1, ...)."""
    tex = iris_texture(identity_seed)
    return [capture(tex, identity_seed * 100_019 + first_capture + i, severity=severity) for i in range(count)]
