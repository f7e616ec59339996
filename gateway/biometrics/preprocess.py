"""What a real capture goes through before MSE-Net sees it (numpy + OpenCV only; shared with training).

Fingerprint: to grey, foreground (ridge area) found from local contrast, a fixed physical window (the sensor
is 500 dpi, so pixels are a fixed size) centred on the foreground, resized to the network's input and
z-scored over the foreground (paper eq. 13).

Iris: pupil localised as the largest dark blob (lashes removed by an opening, specular spots filled), limbus
by a simplified Daugman integro-differential search (largest jump of the mean intensity over lateral arcs,
where eyelids rarely reach), then Daugman's rubber-sheet unwrap of the annulus to a fixed (radial x angular)
strip, z-scored. Eye rotation becomes a circular shift of the strip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gateway.errors import InputError

FINGERPRINT_SIZE = 96
FINGERPRINT_WINDOW = 224  # pixels at 500 dpi (about 11.4 mm), centred on the print
IRIS_STRIP = (32, 256)  # (radial, angular)
MAX_SIDE = 4096


def load_capture(data: bytes | np.ndarray) -> np.ndarray:
    """A capture (PNG/JPEG/... bytes or an array) as a 2-D uint8 grey image; bad input → InputError."""
    if isinstance(data, np.ndarray):
        img = data
    else:
        buf = np.frombuffer(data, np.uint8)
        if buf.size == 0:
            raise InputError("not_an_image", "empty biometric capture")
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError("not_an_image", "biometric capture is not a readable image")
    if img.ndim == 3:
        if img.shape[2] == 4:
            # Transparent pixels are background (white on these sensors).
            alpha = img[..., 3:4].astype(np.float32) / 255.0
            rgb = img[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
            img = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 1:
            img = img[..., 0]
    if img.ndim != 2 or min(img.shape) < 32 or max(img.shape) > MAX_SIDE:
        raise InputError("bad_capture", "biometric capture must be a 2-D image between 32 and 4096 pixels a side")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError("bad_capture", "biometric capture must be 8- or 16-bit")
    return np.ascontiguousarray(img)


def _zscore(x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    sel = x[where] if where is not None and where.any() else x
    return ((x - sel.mean()) / (sel.std() + 1e-6)).astype(np.float32)


def fingerprint_input(img: np.ndarray) -> np.ndarray:
    """Network input (1, 96, 96) float32 from a grey fingerprint image (dark ridges on light)."""
    g = load_capture(img).astype(np.float32)
    # Ridges are where local contrast is high; the background is flat.
    mean = cv2.blur(g, (15, 15))
    sq = cv2.blur(g * g, (15, 15))
    std = np.sqrt(np.maximum(sq - mean * mean, 0))
    fg = std > 25
    if fg.sum() < 0.02 * fg.size:
        raise InputError("no_fingerprint", "no fingerprint ridge area found in the capture")
    ys, xs = np.nonzero(fg)
    cy, cx = float(np.median(ys)), float(np.median(xs))
    half = FINGERPRINT_WINDOW / 2
    # Crop a fixed window around (cx, cy) (outside the image is background), then area-downsample so the
    # ridges average out instead of aliasing.
    m = np.array([[1, 0, half - cx], [0, 1, half - cy]], np.float32)
    win = (FINGERPRINT_WINDOW, FINGERPRINT_WINDOW)
    inv = 255.0 - g  # ridges bright, background 0
    crop = cv2.warpAffine(inv, m, win, flags=cv2.INTER_LINEAR, borderValue=0.0)
    fg_crop = cv2.warpAffine(fg.astype(np.float32), m, win, flags=cv2.INTER_NEAREST)
    size = (FINGERPRINT_SIZE, FINGERPRINT_SIZE)
    out = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    fg_small = cv2.resize(fg_crop, size, interpolation=cv2.INTER_AREA) > 0.5
    return _zscore(out, fg_small)[None]


@dataclass(frozen=True)
class IrisCircles:
    """Pupil and limbus circles (x, y, r) in pixels."""

    pupil: tuple[float, float, float]
    iris: tuple[float, float, float]


def localise_iris(img: np.ndarray) -> IrisCircles:
    """Find pupil and limbus in a grey eye image; InputError when no eye can be found."""
    g = cv2.GaussianBlur(load_capture(img), (5, 5), 1.5)
    lo = float(np.percentile(g, 1))
    if float(np.median(g)) - lo < 40:
        raise InputError("no_iris", "no dark pupil in the eye image")
    dark = (g < lo + 35).astype(np.uint8)
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(dark)
    if n < 2:
        raise InputError("no_iris", "no pupil found in the eye image")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == best).astype(np.uint8)
    # Fill specular highlights inside the pupil before measuring it.
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    (px, py), _ = cv2.minEnclosingCircle(hull)
    pr = float(np.sqrt(cv2.contourArea(hull) / np.pi))
    if pr < 4 or np.pi * pr * pr > 0.25 * g.size:
        raise InputError("no_iris", "no plausible pupil in the eye image")
    h, w = g.shape
    gf = g.astype(np.float32)
    radii = np.arange(pr * 1.4, min(pr * 4.5, max(h, w)), 1.0)
    # Lateral arcs (±35° around horizontal, both sides): the eyelids seldom cover them.
    angles = np.concatenate([np.linspace(-0.6, 0.6, 24), np.pi + np.linspace(-0.6, 0.6, 24)])
    xs = px + radii[:, None] * np.cos(angles)[None]
    ys = py + radii[:, None] * np.sin(angles)[None]
    vals = cv2.remap(gf, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    profile = np.convolve(vals.mean(axis=1), np.ones(3) / 3, mode="same")
    if profile.size < 5:
        raise InputError("no_iris", "no iris boundary found in the eye image")
    jump = profile[2:] - profile[:-2]
    ri = float(radii[1 + int(np.argmax(jump[1:-1])) + 1])
    return IrisCircles(pupil=(float(px), float(py), pr), iris=(float(px), float(py), ri))


def unwrap_iris(img: np.ndarray, circles: IrisCircles, shape: tuple[int, int] = IRIS_STRIP) -> np.ndarray:
    """Daugman rubber sheet: the annulus between pupil and limbus as a (radial, angular) float32 strip."""
    g = load_capture(img).astype(np.float32)
    nr, na = shape
    px, py, pr = circles.pupil
    ix, iy, ir = circles.iris
    t = np.linspace(0, 2 * np.pi, na, endpoint=False)
    rho = np.linspace(0, 1, nr)[:, None]
    x_in, y_in = px + pr * np.cos(t), py + pr * np.sin(t)
    x_out, y_out = ix + ir * np.cos(t), iy + ir * np.sin(t)
    xs = ((1 - rho) * x_in + rho * x_out).astype(np.float32)
    ys = ((1 - rho) * y_in + rho * y_out).astype(np.float32)
    return cv2.remap(g, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def iris_input(img: np.ndarray) -> np.ndarray:
    """Network input (1, 32, 256) float32: localise, unwrap, z-score."""
    strip = unwrap_iris(img, localise_iris(img))
    return _zscore(strip)[None]
