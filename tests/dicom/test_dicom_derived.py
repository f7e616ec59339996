"""The marked image is a proper derived object; the restored original keeps its own UIDs; dciodvfy (dicom3tools)
finds no error in a marked image that its source did not already have; the scanner simulator's DICOM is valid."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway import codecs
from gateway.codecs import dicom
from gateway.pipeline import open_, protect
from medshield_tools import scanner_sim
from tests.dicom.conftest import FAST, OPEN, require_tool
from tests.dicom.reference import pydicom_file

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def dciodvfy_errors(data: bytes, tmp_path: Path) -> set[str]:
    """dciodvfy's error lines for one file (warnings are not counted)."""
    tool = require_tool("dciodvfy")
    path = tmp_path / "check.dcm"
    path.write_bytes(data)
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return {line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")}


def _marked(data: bytes, message_id: str) -> bytes:
    image = codecs.decode(data)
    return dicom.derive(image, image.pixels ^ np.asarray(1, image.pixels.dtype), message_id)


def test_marked_image_is_a_derived_object_pointing_at_its_source(ct_series, dicom_recipient):
    private_key, card = dicom_recipient
    data = ct_series[0].read_bytes()
    source = pydicom.dcmread(io.BytesIO(data))
    result = protect(data, card, mask=np.zeros((512, 512), bool), **FAST)
    opened = open_(result.envelope, private_key, restore_original=True, **OPEN)
    marked = pydicom.dcmread(io.BytesIO(opened.marked))

    # This anonymised series keeps its UIDs only in the file meta (the data set's are empty).
    source_uid = source.SOPInstanceUID or source.file_meta.MediaStorageSOPInstanceUID
    assert source_uid and marked.SOPInstanceUID != source_uid
    assert _UID.match(marked.SOPInstanceUID) and len(marked.SOPInstanceUID) <= 64
    assert marked.file_meta.MediaStorageSOPInstanceUID == marked.SOPInstanceUID
    assert marked.SeriesInstanceUID != source.SeriesInstanceUID
    assert marked.StudyInstanceUID == source.StudyInstanceUID
    assert marked.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert marked.SOPClassUID == source.SOPClassUID
    assert list(marked.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert list(marked.ImageType)[2:] == list(source.ImageType)[2:]
    assert marked.DerivationDescription == dicom.DERIVATION_DESCRIPTION
    (reference,) = marked.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == source_uid
    # This series leaves SOP Class UID empty in the data set; its file meta names the class.
    assert reference.ReferencedSOPClassUID == (source.SOPClassUID or source.file_meta.MediaStorageSOPClassUID)
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    # The restored original is the source itself, UIDs included.
    restored = pydicom.dcmread(io.BytesIO(opened.original))
    assert opened.original == data
    assert (restored.SOPInstanceUID, restored.SeriesInstanceUID) == (source.SOPInstanceUID, source.SeriesInstanceUID)
    assert list(restored.ImageType) == list(source.ImageType)


def test_derived_uids_follow_the_documented_policy(ct_series):
    first, second = (codecs.decode(p.read_bytes()) for p in ct_series[:2])
    a1 = pydicom.dcmread(io.BytesIO(dicom.derive(first, first.pixels, "message-1")))
    a1_again = pydicom.dcmread(io.BytesIO(dicom.derive(first, first.pixels, "message-1")))
    a2 = pydicom.dcmread(io.BytesIO(dicom.derive(first, first.pixels, "message-2")))
    b = pydicom.dcmread(io.BytesIO(dicom.derive(second, second.pixels, "message-3")))
    # A redelivery (same message id) names the same instance; a new message a new one.
    assert a1.SOPInstanceUID == a1_again.SOPInstanceUID != a2.SOPInstanceUID
    # Every slice of one source series lands in one derived series.
    assert a1.SeriesInstanceUID == b.SeriesInstanceUID == a2.SeriesInstanceUID
    assert a1.SOPInstanceUID != b.SOPInstanceUID


def test_enhanced_ct_keeps_value_2_primary_and_derives_frame_types():
    data = pydicom_file("eCT_Supplemental.dcm").read_bytes()
    marked = pydicom.dcmread(io.BytesIO(_marked(data, "m")))
    assert list(marked.ImageType)[:2] == ["DERIVED", "PRIMARY"]
    mr = pydicom.dcmread(io.BytesIO(_marked(pydicom_file("emri_small.dcm").read_bytes(), "m")))
    assert list(mr.ImageType)[:2] == ["DERIVED", "PRIMARY"] and "PulseSequenceName" not in mr
    frame_type = marked.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence[0].FrameType
    assert frame_type[0] == "DERIVED"


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "eCT_Supplemental.dcm", "MR2_J2KI.dcm", "emri_small_RLE.dcm", "image_dfl.dcm", "JPEG-LL.dcm"],
)
def test_dciodvfy_finds_no_new_error_in_marked_pydicom_files(name, tmp_path):
    data = pydicom_file(name).read_bytes()
    image = codecs.decode(data)
    # dciodvfy cannot read a deflated file at all; its findings on the same data set come from a plain copy.
    baseline = (
        codecs.encode(image, image.pixels) if image.dataset.file_meta.TransferSyntaxUID == dicom.DEFLATED_LE else data
    )
    before = dciodvfy_errors(baseline, tmp_path)
    after = dciodvfy_errors(_marked(data, "m"), tmp_path)
    assert after <= before, sorted(after - before)


def test_dciodvfy_finds_no_new_error_in_marked_totalsegmentator_ct(ct_series, tmp_path):
    data = ct_series[0].read_bytes()
    before = dciodvfy_errors(data, tmp_path)
    after = dciodvfy_errors(_marked(data, "m"), tmp_path)
    assert after <= before, sorted(after - before)


@pytest.mark.parametrize("signed", [True, False])
def test_scanner_simulator_dicom_is_valid(shared_data, signed, tmp_path):
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        hu = npz["image_hu"][33]
    data = scanner_sim.dicom_from_hu(hu, instance=34, spacing_mm=(0.57, 0.57), thickness_mm=5.0, signed=signed)
    assert dciodvfy_errors(data, tmp_path) == set()
    assert dciodvfy_errors(_marked(data, "m"), tmp_path) == set()


@pytest.mark.parametrize("name", ["P14SV1_8b.jpeg-baseline.dcm", "eCT_Supplemental.jls-near.dcm"])
def test_dciodvfy_finds_no_new_error_in_marked_lossy_images(name, dcmtk_files, tmp_path):
    data = dcmtk_files[name].read_bytes()  # lossy: the marked copy is uncompressed, still flagged lossy
    before = dciodvfy_errors(data, tmp_path)
    after = dciodvfy_errors(_marked(data, "m"), tmp_path)
    assert after <= before, sorted(after - before)
