"""protect() with DS-Net instead of a given mask: data is hidden only outside the predicted lesion."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pipeline_samples import GATEWAY, PINNED, ct_slice_as_dicom

from gateway import codecs
from gateway.pipeline import DEFAULT_MARGIN_PX, open_, protect
from gateway.segment import Segmenter
from gateway.stego import exclusion_mask


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def test_real_ct_slice_hides_outside_the_predicted_lesion(segmenter, lung1, recipient):
    private_key, card = recipient
    data = ct_slice_as_dicom(lung1["image_hu"][33])
    predicted = segmenter.predict(codecs.decode(data))
    assert predicted.shape == (512, 512)
    # The model finds the real nodule (measured Dice on this slice is in the model card).
    assert (predicted & lung1["lesion_mask"][33]).sum() > 0.5 * lung1["lesion_mask"][33].sum()

    result = protect(data, card, signer=GATEWAY, segmenter=segmenter.predict)
    opened = open_(result.envelope, private_key, gateways=PINNED, restore_original=True)
    assert opened.original == data
    assert np.array_equal(opened.hidden.lesion_mask, predicted)
    assert result.lesion_pixels == int(predicted.sum())
    marked = pydicom.dcmread(io.BytesIO(opened.marked)).pixel_array
    original = pydicom.dcmread(io.BytesIO(data)).pixel_array
    changed = marked != original
    assert changed.any()
    assert not (changed & exclusion_mask(predicted, DEFAULT_MARGIN_PX)).any()
