"""Capture preprocessing on generated and real captures, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.biometrics.preprocess import (
    FINGERPRINT_SIZE,
    IRIS_STRIP,
    fingerprint_input,
    iris_input,
    load_capture,
    localise_iris,
)
from gateway.errors import BiometricError
from models.synth import fingerprint, iris


def test_fingerprint_input_from_generated_and_real(shared_data: Path) -> None:
    imp = fingerprint.impressions(7, 1)[0]
    assert imp.shape == (fingerprint.HEIGHT, fingerprint.WIDTH) and imp.dtype == np.uint8
    x = fingerprint_input(imp)
    assert x.shape == (1, FINGERPRINT_SIZE, FINGERPRINT_SIZE) and x.dtype == np.float32
    real = load_capture((shared_data / "fingerprints" / "p1_1.png").read_bytes())
    assert real.shape == (500, 400)
    y = fingerprint_input(real)
    assert np.isfinite(y).all() and abs(float(y.mean())) < 1.0


def test_a_finer_fingerprint_input_is_the_same_window_at_more_pixels(shared_data: Path) -> None:
    # The training and evaluation tools build inputs at other sizes (dataset.py / evaluate.py --fp-size): the same
    # window and pose at more pixels, so that area-shrinking the finer input gives back the served one.
    real = load_capture((shared_data / "fingerprints" / "p1_1.png").read_bytes())
    served, fine = fingerprint_input(real), fingerprint_input(real, 2 * FINGERPRINT_SIZE)
    assert fine.shape == (1, 2 * FINGERPRINT_SIZE, 2 * FINGERPRINT_SIZE)
    shrunk = cv2.resize(fine[0], (FINGERPRINT_SIZE, FINGERPRINT_SIZE), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(shrunk.ravel(), served[0].ravel())[0, 1] > 0.95


def test_generators_are_seeded() -> None:
    assert np.array_equal(fingerprint.impressions(3, 1)[0], fingerprint.impressions(3, 1)[0])
    assert not np.array_equal(fingerprint.impressions(3, 2)[0], fingerprint.impressions(3, 2)[1])
    assert np.array_equal(iris.captures(3, 1)[0], iris.captures(3, 1)[0])


def test_iris_localisation_finds_the_rendered_pupil() -> None:
    # Render an eye whose pupil centre we know: a dark disc in a mid-grey iris on a light sclera.
    img = np.full((240, 320), 200, np.uint8)
    cv2.circle(img, (170, 115), 80, 110, -1)
    cv2.circle(img, (170, 115), 30, 15, -1)
    c = localise_iris(img)
    px, py, pr = c.pupil
    assert abs(px - 170) < 2 and abs(py - 115) < 2 and abs(pr - 30) < 3
    assert abs(c.iris[2] - 80) < 4


def test_iris_input_shape_on_generated_eye() -> None:
    x = iris_input(iris.captures(11, 1)[0])
    assert x.shape == (1, *IRIS_STRIP) and np.isfinite(x).all()


@pytest.mark.parametrize("data", [b"", b"not an image at all", np.zeros((10, 10), np.uint8),
                                  np.zeros((64, 64), np.float32)])
def test_bad_captures_raise_input_error(data: bytes | np.ndarray) -> None:
    with pytest.raises(BiometricError):
        load_capture(data)


def test_blank_images_raise_input_error() -> None:
    with pytest.raises(BiometricError):
        fingerprint_input(np.full((500, 400), 255, np.uint8))
    with pytest.raises(BiometricError):
        iris_input(np.full((240, 320), 255, np.uint8))


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderValue=255)


@pytest.mark.parametrize("deg", [-25.0, 15.0, 30.0])
def test_pose_normalisation_follows_a_rotated_real_print(shared_data: Path, deg: float) -> None:
    from gateway.biometrics.preprocess import fingerprint_pose

    img = load_capture((shared_data / "fingerprints" / "p1_1.png").read_bytes())
    x0, y0, t0 = fingerprint_pose(img)
    x1, y1, t1 = fingerprint_pose(_rotate(img, deg))
    assert abs((t0 - t1) - deg) < 4.0  # the finger axis turned by the same angle
    # The core moved with the finger (within about two orientation blocks).
    a = np.deg2rad(deg)
    dx, dy = x0 - 200, y0 - 250
    ex, ey = 200 + dx * np.cos(a) + dy * np.sin(a), 250 - dx * np.sin(a) + dy * np.cos(a)
    assert np.hypot(x1 - ex, y1 - ey) < 20


def test_generated_impressions_look_like_the_real_sensor(shared_data: Path) -> None:
    """Dark-ridge share and foreground share of generated impressions fall in the range of the real ones."""
    def shares(img: np.ndarray) -> tuple[float, float]:
        g = img.astype(np.float32)
        mean = cv2.blur(g, (15, 15))
        fg = np.sqrt(np.maximum(cv2.blur(g * g, (15, 15)) - mean * mean, 0)) > 25
        return float((img[fg] < 128).mean()), float(fg.mean())

    real = [shares(load_capture((shared_data / "fingerprints" / f"{n}.png").read_bytes()))
            for n in ("p1_1", "p1_2", "p2_1")]
    gen = [shares(i) for s in range(5) for i in fingerprint.impressions(20_000 + s, 2)]
    lo_r, hi_r = min(r[0] for r in real) - 0.1, max(r[0] for r in real) + 0.1
    assert all(lo_r <= g[0] <= hi_r for g in gen), gen
    assert 0.25 <= float(np.mean([g[1] for g in gen])) <= 0.55


NIST_LOOP = Path(__file__).parent / "data" / "nist_loop_right.jpg"


def test_captures_of_a_500_dpi_sensor_with_full_contrast_are_left_as_they_are(shared_data: Path) -> None:
    # Profiles enrolled before the capture normalisation keep their bits: nothing changes for such captures.
    from gateway.biometrics.preprocess import fingerprint_grey

    for img in [*fingerprint.impressions(21, 2),
                load_capture((shared_data / "fingerprints" / "p2_1.png").read_bytes())]:
        g, _ = fingerprint_grey(img)
        assert np.array_equal(g, load_capture(img).astype(np.float32))


def test_a_low_contrast_capture_is_stretched_and_keeps_its_pose() -> None:
    from gateway.biometrics.preprocess import fingerprint_pose

    img = fingerprint.impressions(7, 1)[0]
    dim = (168 + img.astype(np.float32) * (73 / 255)).astype(np.uint8)  # a dim sensor: grey 168-241
    x, y, tilt = fingerprint_pose(img)
    x1, y1, tilt1 = fingerprint_pose(dim)
    assert abs(x1 - x) <= 8 and abs(y1 - y) <= 8 and abs(tilt1 - tilt) < 1.0
    a, b = fingerprint_input(img)[0].ravel(), fingerprint_input(dim)[0].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_a_capture_at_half_the_resolution_is_brought_to_500_dpi() -> None:
    from gateway.biometrics.features import FeatureExtractor
    from gateway.biometrics.preprocess import fingerprint_grey, ridge_period

    img, same_finger, other = *fingerprint.impressions(7, 2), fingerprint.impressions(8, 1)[0]
    half = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    g, fg = fingerprint_grey(half)
    period = ridge_period(g, fg)
    assert period is not None and 7.5 <= period <= 9.5
    assert g.shape[0] > 1.5 * half.shape[0]
    inputs = np.stack([fingerprint_input(c) for c in (img, half, same_finger, other)])
    emb = FeatureExtractor().run(inputs, np.zeros((4, 1, *IRIS_STRIP), np.float32)).fingerprint
    # The resampled capture is as close to the original as another impression of the finger is, or closer.
    assert emb[0] @ emb[1] >= emb[0] @ emb[2] - 0.02
    assert emb[0] @ emb[1] > emb[0] @ emb[3] + 0.5


def test_an_inked_print_scanned_at_250_dpi_is_accepted_at_500_dpi() -> None:
    from gateway.biometrics.preprocess import _foreground, fingerprint_grey, ridge_period

    raw = load_capture(NIST_LOOP.read_bytes())
    native = ridge_period(raw.astype(np.float32), _foreground(raw.astype(np.float32)))
    assert native is not None and native < 6.5  # about 250 dpi
    g, fg = fingerprint_grey(raw)
    period = ridge_period(g, fg)
    assert period is not None and 7.5 <= period <= 9.5
    assert np.isfinite(fingerprint_input(raw)).all()


def test_a_finger_grown_on_another_fingers_flow_shares_the_flow_and_outline_not_the_ridges() -> None:
    from gateway.biometrics.preprocess import orientation_field
    from models.msenet.dataset import flow_seeds

    own, same_flow, other = fingerprint.master_print(5), fingerprint.master_print(77, 5), fingerprint.master_print(77)
    assert np.array_equal(own.mask, same_flow.mask) and not np.array_equal(own.mask, other.mask)
    assert abs(np.corrcoef(own.ridges.ravel(), same_flow.ridges.ravel())[0, 1]) < 0.2

    def flow_agreement(a: fingerprint.MasterPrint, b: fingerprint.MasterPrint) -> float:
        ta, _ = orientation_field(a.ridges)
        tb, _ = orientation_field(b.ridges)
        inside = a.mask & b.mask
        return float(np.cos(2 * (ta - tb))[inside].mean())  # 1 where the ridges run the same way

    assert flow_agreement(own, same_flow) > 0.8 > flow_agreement(own, other)
    assert flow_seeds([10, 11, 12, 13, 14], 2) == [None, 10, None, 12, None]
    assert flow_seeds([10, 11], 1) == [None, None]
