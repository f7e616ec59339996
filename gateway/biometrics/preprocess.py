"""What a real capture goes through before MSE-Net sees it (numpy + OpenCV only; shared with training).

Fingerprint: to grey; a capture with little contrast is stretched to the full grey range, and one whose ridge
period says it is not 500 dpi is resampled to 500 dpi; foreground (ridge area) from local contrast; the ridge
orientation field from smoothed gradient structure tensors; pose normalisation: the rotation that makes the
finger's long axis (second moments of the foreground) vertical, and the translation that puts the core (the
loop or whorl centre: the point where the orientation field turns by +180° around a small circle, Poincaré
index +1/2, nearest the print's centre) in the window centre, falling back to the foreground's centre when no
core is found; a fixed physical window (the sensor is 500 dpi, so pixels are a fixed size) cut in that pose;
ridge enhancement: local contrast normalisation, then an oriented Gabor filter along the local ridge
orientation (the classic Hong–Wan–Jain step: it joins broken, dry ridges and suppresses creases and pores that
cross the ridge flow); resized to the network's input and z-scored over the foreground (paper eq. 13).

Iris: pupil localised as the largest dark blob (lashes removed by an opening, specular spots filled), limbus
by a simplified Daugman integro-differential search (largest jump of the mean intensity over lateral arcs,
where eyelids rarely reach), then Daugman's rubber-sheet unwrap of the annulus to a fixed (radial x angular)
strip, z-scored. Eye rotation becomes a circular shift of the strip.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from gateway.errors import BiometricError

FINGERPRINT_SIZE = 96
FINGERPRINT_WINDOW = 224  # pixels at 500 dpi (about 11.4 mm), centred on the print
IRIS_STRIP = (32, 256)  # (radial, angular)
MAX_SIDE = 4096


def load_capture(data: bytes | np.ndarray) -> np.ndarray:
    """A capture (PNG/JPEG/... bytes or an array) as a 2-D uint8 grey image; bad input → BiometricError."""
    if isinstance(data, np.ndarray):
        img = data
    else:
        buf = np.frombuffer(data, np.uint8)
        if buf.size == 0:
            raise BiometricError("not_an_image", "empty biometric capture")
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise BiometricError("not_an_image", "biometric capture is not a readable image")
        img = decoded
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
        raise BiometricError("bad_capture", "biometric capture must be a 2-D image between 32 and 4096 pixels a side")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BiometricError("bad_capture", "biometric capture must be 8- or 16-bit")
    return np.ascontiguousarray(img)


def _zscore(x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    sel = x[where] if where is not None and where.any() else x
    z: np.ndarray = ((x - sel.mean()) / (sel.std() + 1e-6)).astype(np.float32)
    return z


_ORIENT_SIGMA = 7.0  # px: smoothing of the structure tensor (about one ridge period)
_RIDGE_PERIOD = 8.5  # px at 500 dpi, typical adult ridge period (measured 7.8-9.2 on the real prints)
_N_GABOR = 16
_MAX_TILT_DEG = 45.0  # a finger on a platen is never more than this far off vertical
# Ridge periods an adult finger shows at 500 dpi (0.33-0.64 mm). A capture whose measured period lies outside
# comes from a sensor or scan of another resolution (inked cards scanned at 250 dpi show 4-5.5 px) and is
# resampled to _RIDGE_PERIOD; captures inside are left as they are, so 500 dpi captures keep their bits.
_PLAUSIBLE_PERIOD = (6.5, 12.5)
_LOW_CONTRAST = 128  # grey levels between the 1st and 99th percentile below which a capture is stretched
_PERIOD_BLOCK = 64


def _foreground(g: np.ndarray) -> np.ndarray:
    mean = cv2.blur(g, (15, 15))
    sq = cv2.blur(g * g, (15, 15))
    std = np.sqrt(np.maximum(sq - mean * mean, 0))
    fg = (std > 25).astype(np.uint8)
    # Close the gaps between ridges and drop specks so moments describe the finger, not noise.
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    return cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8)).astype(bool)


def ridge_period(g: np.ndarray, fg: np.ndarray) -> float | None:
    """Ridge period (px) of the print: the peak, refined by a parabola, of the radial power profile summed over
    the blocks at least three quarters in the foreground, between periods of 3 and 20 px. None without such blocks."""
    b = _PERIOD_BLOCK
    h, w = g.shape
    starts = [(y, x) for y in range(0, h - b + 1, b) for x in range(0, w - b + 1, b)
              if fg[y:y + b, x:x + b].mean() >= 0.75]
    if not starts:
        return None
    blocks = np.stack([g[y:y + b, x:x + b] for y, x in starts]).astype(np.float64)
    blocks = (blocks - blocks.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(b), np.hanning(b))
    power = (np.abs(np.fft.fft2(blocks)) ** 2).sum(axis=0)
    f = np.fft.fftfreq(b) * b  # cycles per block
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    rings = np.rint(radius).astype(int)
    profile = np.bincount(rings.ravel(), power.ravel()) / np.maximum(np.bincount(rings.ravel()), 1)
    lo, hi = int(np.ceil(b / 20)), int(b / 3)
    k = lo + int(np.argmax(profile[lo:hi + 1]))
    if lo < k < len(profile) - 1:
        a, c, e = profile[k - 1], profile[k], profile[k + 1]
        denom = a - 2 * c + e
        k_ref = k + (0.5 * (a - e) / denom if denom < 0 else 0.0)
    else:
        k_ref = float(k)
    return float(b / k_ref)


def fingerprint_grey(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The capture as float32 grey at 500 dpi with full contrast, and its foreground; BiometricError when no
    ridge area is found. A capture with less than half the grey range is stretched to it (dim sensors, faint
    scans); one whose ridge period is implausible at 500 dpi is resampled (see _PLAUSIBLE_PERIOD)."""
    g = load_capture(img).astype(np.float32)
    lo, hi = np.percentile(g, (1, 99))
    if hi - lo < _LOW_CONTRAST:
        g = np.clip((g - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.float32)
    fg = _foreground(g)
    period = ridge_period(g, fg) if fg.any() else None
    if period is not None and not _PLAUSIBLE_PERIOD[0] <= period <= _PLAUSIBLE_PERIOD[1]:
        scale = _RIDGE_PERIOD / period
        size = (round(g.shape[1] * scale), round(g.shape[0] * scale))
        if max(size) > MAX_SIDE or min(size) < 32:
            raise BiometricError("bad_capture", "fingerprint capture is too large or too small once brought to 500 dpi")
        resized = cv2.resize(g, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        g = np.clip(resized, 0, 255).astype(np.float32)
        fg = _foreground(g)
    if fg.sum() < 0.02 * fg.size:
        raise BiometricError("no_fingerprint", "no fingerprint ridge area found in the capture")
    return g, fg


def orientation_field(g: np.ndarray, sigma: float = _ORIENT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Ridge orientation (radians mod pi, along the ridges) and coherence in [0, 1], per pixel."""
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    gxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    gyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    gxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    # The gradient's doubled angle averages without cancelling; ridges run at right angles to it.
    theta = (0.5 * np.arctan2(2 * gxy, gxx - gyy) + np.pi / 2) % np.pi
    coherence = np.hypot(gxx - gyy, 2 * gxy) / (gxx + gyy + 1e-6)
    return theta.astype(np.float32), coherence.astype(np.float32)


def find_core(theta: np.ndarray, fg: np.ndarray, step: int = 8, radius: int = 2) -> tuple[float, float] | None:
    """The core: a block where the orientation turns by +pi around a small loop (Poincaré index +1/2), inside
    the print and away from its edge, nearest the foreground's centre; None when there is none."""
    t = theta[::step, ::step]
    inside = cv2.erode(fg.astype(np.uint8), np.ones((41, 41), np.uint8))[::step, ::step].astype(bool)
    h, w = t.shape
    ring = ([(-radius, x) for x in range(-radius, radius)] + [(y, radius) for y in range(-radius, radius)]
            + [(radius, x) for x in range(radius, -radius, -1)] + [(y, -radius) for y in range(radius, -radius, -1)])
    ys, xs = np.mgrid[radius:h - radius, radius:w - radius]
    total = np.zeros(ys.shape, np.float32)
    for (y0, x0), (y1, x1) in zip(ring, ring[1:] + ring[:1], strict=True):
        d = t[ys + y1, xs + x1] - t[ys + y0, xs + x0]
        total += (d + np.pi / 2) % np.pi - np.pi / 2  # orientation differences wrapped to (-pi/2, pi/2]
    cand = (np.abs(total - np.pi) < 0.5) & inside[radius:h - radius, radius:w - radius]
    if not cand.any():
        return None
    cy_all, cx_all = np.nonzero(fg)
    cy, cx = cy_all.mean() / step - radius, cx_all.mean() / step - radius
    py, px = np.nonzero(cand)
    k = int(np.argmin((py - cy) ** 2 + (px - cx) ** 2))
    return float((px[k] + radius) * step), float((py[k] + radius) * step)


def _finger_axis_deg(fg: np.ndarray) -> float:
    """Angle (degrees) of the foreground's long axis from vertical, clipped to ±_MAX_TILT_DEG."""
    m = cv2.moments(fg.astype(np.uint8), binaryImage=True)
    if m["m00"] <= 0:
        return 0.0
    mu20, mu02, mu11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    # Principal axis angle from the x axis; the long axis of an upright finger is near ±90°.
    ang = 0.5 * np.degrees(np.arctan2(2 * mu11, mu20 - mu02))
    tilt = ((ang - 90.0) + 90.0) % 180.0 - 90.0
    return float(np.clip(tilt, -_MAX_TILT_DEG, _MAX_TILT_DEG))


@lru_cache(maxsize=2)
def _gabor_bank(period: float) -> tuple[np.ndarray, ...]:
    kernels = []
    for k in range(_N_GABOR):
        # cv2's theta is the normal to the stripes; ridges at orientation o have their normal at o + pi/2.
        kern = cv2.getGaborKernel((15, 15), sigma=0.5 * period, theta=k * np.pi / _N_GABOR + np.pi / 2,
                                  lambd=period, gamma=0.6, psi=0)
        kern -= kern.mean()
        kernels.append((kern / np.abs(kern).sum()).astype(np.float32))
    return tuple(kernels)


def enhance_ridges(win: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Local contrast normalisation, then the Gabor filter matching each pixel's ridge orientation."""
    mean = cv2.GaussianBlur(win, (0, 0), 6)
    sd = np.sqrt(np.maximum(cv2.GaussianBlur((win - mean) ** 2, (0, 0), 6), 1e-6))
    norm = (win - mean) / (sd + 1.0)
    bins = np.round(theta / np.pi * _N_GABOR).astype(int) % _N_GABOR
    out = np.zeros_like(norm)
    for k, kern in enumerate(_gabor_bank(_RIDGE_PERIOD)):
        sel = bins == k
        if sel.any():
            out[sel] = cv2.filter2D(norm, -1, kern, borderType=cv2.BORDER_REFLECT)[sel]
    return out


def _pose(g: np.ndarray, fg: np.ndarray) -> tuple[float, float, float]:
    # The core is located on a half-resolution orientation field: the singularity is tens of pixels wide, and
    # this is the costliest step of the preprocessing otherwise.
    small = cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)
    fg_small = cv2.resize(fg.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    theta, _ = orientation_field(small, _ORIENT_SIGMA / 2)
    core = find_core(theta, fg_small.astype(bool), step=4)
    if core is None:
        ys, xs = np.nonzero(fg)
        return float(np.median(xs)), float(np.median(ys)), _finger_axis_deg(fg)
    return 2 * core[0], 2 * core[1], _finger_axis_deg(fg)


def fingerprint_pose(img: np.ndarray) -> tuple[float, float, float]:
    """(x, y, tilt in degrees) of the window fingerprint_input cuts: core (or centre) and finger axis."""
    return _pose(*fingerprint_grey(img))


def fingerprint_input(img: np.ndarray, size: int = FINGERPRINT_SIZE) -> np.ndarray:
    """Network input (1, size, size) float32 from a grey fingerprint image (dark ridges on light): the
    FINGERPRINT_WINDOW-pixel window at 500 dpi, area-resized to `size` pixels."""
    g, fg = fingerprint_grey(img)
    cx, cy, tilt = _pose(g, fg)
    half = FINGERPRINT_WINDOW / 2
    # One affine map: rotate about the core by -tilt, then move the core to the window centre.
    m = cv2.getRotationMatrix2D((cx, cy), tilt, 1.0)
    m[:, 2] += np.array((half - cx, half - cy))
    win = (FINGERPRINT_WINDOW, FINGERPRINT_WINDOW)
    inv = 255.0 - g  # ridges bright, background 0
    crop = cv2.warpAffine(inv, m.astype(np.float32), win, flags=cv2.INTER_LINEAR, borderValue=0.0)
    fg_crop = cv2.warpAffine(fg.astype(np.float32), m.astype(np.float32), win, flags=cv2.INTER_NEAREST) > 0.5
    theta, _ = orientation_field(crop)
    enhanced = np.where(fg_crop, enhance_ridges(crop, theta), 0.0).astype(np.float32)
    shape = (size, size)
    # Area-downsample so the ridges average out instead of aliasing.
    out = cv2.resize(enhanced, shape, interpolation=cv2.INTER_AREA)
    fg_small = cv2.resize(fg_crop.astype(np.float32), shape, interpolation=cv2.INTER_AREA) > 0.5
    return _zscore(out, fg_small)[None]


@dataclass(frozen=True)
class IrisCircles:
    """Pupil and limbus circles (x, y, r) in pixels."""

    pupil: tuple[float, float, float]
    iris: tuple[float, float, float]


def localise_iris(img: np.ndarray) -> IrisCircles:
    """Find pupil and limbus in a grey eye image; BiometricError when no eye can be found."""
    g = cv2.GaussianBlur(load_capture(img), (5, 5), 1.5)
    lo = float(np.percentile(g, 1))
    if float(np.median(g)) - lo < 40:
        raise BiometricError("no_iris", "no dark pupil in the eye image")
    dark: np.ndarray = (g < lo + 35).astype(np.uint8)
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(dark)
    if n < 2:
        raise BiometricError("no_iris", "no pupil found in the eye image")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == best).astype(np.uint8)
    # Fill specular highlights inside the pupil before measuring it.
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    (px, py), _ = cv2.minEnclosingCircle(hull)
    pr = float(np.sqrt(cv2.contourArea(hull) / np.pi))
    if pr < 4 or np.pi * pr * pr > 0.25 * g.size:
        raise BiometricError("no_iris", "no plausible pupil in the eye image")
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
        raise BiometricError("no_iris", "no iris boundary found in the eye image")
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
