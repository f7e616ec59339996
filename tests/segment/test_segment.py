"""The committed DS-Net served through gateway.segment on the CPU, checked on the real lung1 CT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.errors import ConfigError, InputError
from gateway.resources import REPO_DIR
from gateway.segment import DEFAULT_MANIFEST, DEFAULT_MODEL, Segmenter

# What the committed model achieves on lung1 slice 33 (see models/dsnet/MODEL_CARD.md); the test asserts
# the model still reaches it, a little below the measured value to allow for float rounding across CPUs.
MIN_DICE_SLICE_33 = 0.89  # measured 0.918 (DS-Net, session 4, lung-field gate on)


@dataclass(frozen=True)
class Image:
    """The fields of gateway.codecs.DecodedImage that Segmenter.predict reads (docs/ARCHITECTURE.md)."""

    pixels: np.ndarray
    hu: np.ndarray | None
    signed: bool = False


@pytest.fixture(scope="module")
def lung1(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return d["image_hu"], d["lesion_mask"].astype(bool)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(backend="cpu", threads=2)


def test_manifest_describes_the_committed_model() -> None:
    manifest = json.loads(DEFAULT_MANIFEST.read_text())
    assert manifest["opset"] >= 17
    assert manifest["input"]["shape"] == [1, 1, 256, 256]
    assert manifest["preprocessing"]["hu_window"] == [-1000.0, 400.0]
    assert manifest["postprocessing"]["lung_field_gate"] is True
    assert DEFAULT_MODEL.stat().st_size < 8 * 1024 * 1024


def test_slice_33_mask_overlaps_the_true_nodule(segmenter: Segmenter, lung1: tuple[np.ndarray, np.ndarray]) -> None:
    hu, truth = lung1
    mask = segmenter.predict_hu(hu[33])
    assert mask.shape == hu[33].shape and mask.dtype == bool
    overlap = int((mask & truth[33]).sum())
    assert overlap > 0
    dice = 2 * overlap / (int(mask.sum()) + int(truth[33].sum()))
    assert dice >= MIN_DICE_SLICE_33


def test_mask_has_the_input_resolution(segmenter: Segmenter, lung1: tuple[np.ndarray, np.ndarray]) -> None:
    hu, _ = lung1
    for crop in (hu[33, 40:340, 60:477], hu[20, ::2, ::2], cv2.resize(hu[33].astype(np.float32), (700, 640))):
        assert segmenter.predict_hu(crop).shape == crop.shape


def test_predict_uses_hu_when_the_decoder_provides_it(segmenter: Segmenter,
                                                      lung1: tuple[np.ndarray, np.ndarray]) -> None:
    hu, _ = lung1
    stored = (hu[33].astype(np.int32) + 1024).astype(np.uint16)  # CT stored values, intercept -1024
    with_hu = segmenter.predict(Image(pixels=stored, hu=hu[33].astype(np.float32)))
    from_pixels = segmenter.predict(Image(pixels=stored, hu=None))
    from_signed = segmenter.predict(Image(pixels=hu[33].astype(np.int16).view(np.uint16), hu=None, signed=True))
    reference = segmenter.predict_hu(hu[33])
    assert np.array_equal(with_hu, reference)
    assert np.array_equal(from_pixels, reference)
    assert np.array_equal(from_signed, reference)


def test_8bit_rendering_is_read_as_the_hu_window(segmenter: Segmenter, lung1: tuple[np.ndarray, np.ndarray]) -> None:
    hu, _ = lung1
    png = np.round((np.clip(hu[33], -1000, 400) + 1000) / 1400 * 255).astype(np.uint8)
    mask = segmenter.predict(Image(pixels=png, hu=None))
    assert mask.shape == png.shape
    reference = segmenter.predict_hu(hu[33])
    assert reference.any() and mask.any()  # slice 33 holds the nodule: both must find something
    union = int((mask | reference).sum())
    assert int((mask & reference).sum()) / union > 0.5  # quantised input, same anatomy


@pytest.mark.parametrize("bad, reason", [
    (np.zeros((4, 256, 256), np.float32), "not_a_slice"),
    (np.zeros((4, 4), np.float32), "bad_dimensions"),
    (np.full((64, 64), np.nan, np.float32), "non_finite"),
    (np.zeros((64, 64), bool), "unsupported_pixel_type"),
])
def test_bad_input_is_an_input_error(segmenter: Segmenter, bad: np.ndarray, reason: str) -> None:
    with pytest.raises(InputError) as info:
        segmenter.predict_hu(bad)
    assert info.value.reason == reason


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "dsnet.onnx"
    data = bytearray(DEFAULT_MODEL.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    shutil.copy(DEFAULT_MANIFEST, tmp_path / "manifest.json")
    with pytest.raises(ConfigError, match="sha256 does not match"):
        Segmenter(model, backend="cpu")


def test_incomplete_manifest_is_a_config_error(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_MODEL, tmp_path / "dsnet.onnx")
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": "00"}))
    with pytest.raises(ConfigError, match="unreadable or incomplete"):
        Segmenter(tmp_path / "dsnet.onnx", backend="cpu")


def test_the_gateway_serves_the_model_without_torch(lung1: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    hu, truth = lung1
    np.save(tmp_path / "slice.npy", hu[33])
    np.save(tmp_path / "truth.npy", truth[33])
    # A meta-path finder that refuses torch: the runtime must neither need nor import it.
    script = textwrap.dedent(f"""
        import sys
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None
        sys.meta_path.insert(0, BlockTorch())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("blocker failed")
        import numpy as np
        from gateway.segment import Segmenter
        seg = Segmenter(backend="cpu", threads=1)
        mask = seg.predict_hu(np.load({str(tmp_path / 'slice.npy')!r}))
        truth = np.load({str(tmp_path / 'truth.npy')!r})
        assert mask.shape == truth.shape, mask.shape
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("OVERLAP", int((mask & truth).sum()))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split("OVERLAP")[1]) > 0


def test_cli_writes_a_mask_png_of_the_input_size(lung1: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import argparse

    from gateway.cli import segment as cli

    hu, truth = lung1
    src = tmp_path / "slice.npy"
    np.save(src, hu[33])
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["segment", str(src), "-o", str(tmp_path / "mask.png"), "--backend", "cpu"])
    assert args.func(args) == 0
    png = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert (tmp_path / "mask.png").stat().st_mode & 0o777 == 0o600  # a lesion mask is patient data
    assert png.shape == hu[33].shape and png.dtype == np.uint8
    assert set(np.unique(png)) <= {0, 255}
    assert (png[truth[33]] == 255).any()


def test_cli_refuses_what_it_cannot_decode(tmp_path: Path) -> None:
    import argparse

    from gateway.cli import segment as cli

    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["segment", str(junk), "-o", str(tmp_path / "m.png"), "--backend", "cpu"])
    with pytest.raises(InputError):
        args.func(args)


def test_gate_never_drops_a_lesion_the_network_found_on_generated_slices() -> None:
    """On generated chest slices (about half the lesions lie against the lung wall), every true lesion the
    network alone touches is still touched once the lung-field gate is applied: the gate only removes false
    positives. The session-1 gate (half inside the air-defined lung field) failed this."""
    from models.synth.ct import PIXEL_SPACING_MM, generate_slice

    raw = Segmenter(backend="cpu", threads=2, lung_gate=False)
    served = Segmenter(backend="cpu", threads=2)
    rng = np.random.default_rng(20261122)
    checked = 0
    for _ in range(24):
        sl = generate_slice(rng, lesion_probability=1.0)
        n, labels = cv2.connectedComponents(sl.mask.astype(np.uint8), connectivity=8)
        # With their pixel size, as a DICOM slice brings it: a physical-scale model reads a slice without one as
        # a 350 mm field of view, 1.2x off for these 292 mm phantoms.
        found_raw = raw.predict_hu(sl.hu, (PIXEL_SPACING_MM, PIXEL_SPACING_MM))
        found_served = served.predict_hu(sl.hu, (PIXEL_SPACING_MM, PIXEL_SPACING_MM))
        for k in range(1, n):
            lesion = labels == k
            if (found_raw & lesion).any():
                checked += 1
                assert (found_served & lesion).any(), "the lung-field gate dropped a lesion the network found"
    assert checked >= 15  # the check is not vacuous
