"""Benchmark inputs: real CT where it is at least as large as asked, else generated at its own resolution."""

from __future__ import annotations

import numpy as np

from medshield_tools.bench import images


def test_sizes_above_the_real_slice_are_generated_not_upsampled() -> None:
    real = images.ct_image(512, 16)
    assert real.origin == f"lung1.npz slice {images.LUNG1_LESION_SLICE}"
    assert images.ct_image(256, 16).origin.endswith("area-averaged to 256x256")
    big = images.ct_image(1024, 16)
    assert big.origin.startswith("generated phantom at 1024x1024") and big.pixels.shape == (1024, 1024)
    # Native detail: neighbouring pixels differ as much as at 512 (an upsampled slice is smooth).
    def roughness(p: np.ndarray) -> float:
        return float(np.mean(np.abs(np.diff(p.astype(np.int32), axis=1))))

    upsampled, _ = images.resample(images.load_lung1()[0][33].astype(np.float32), np.zeros((512, 512), bool), 1024)
    assert roughness(big.pixels) > 2 * roughness(images.hu_to_stored(upsampled, 16))
