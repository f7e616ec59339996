"""protect() → open_() end to end on real CT and generated images, both suites."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
import pytest
from pipeline_samples import GATEWAY, PINNED, ct_slice_as_dicom, npy_bytes, png_bytes
from pydicom.data import get_testdata_file

from gateway import codecs
from gateway.crypto.envelope import Sealer, peek_header
from gateway.crypto.recipients import generate_recipient
from gateway.crypto.sbbe import SearchParams
from gateway.errors import CapacityError, InputError, OpenError
from gateway.pipeline import open_, protect
from gateway.rng import SeededRandom
from gateway.stego import exclusion_mask

SUITES = ("sbbe-blowfish", "aes-256-siv")


@pytest.mark.parametrize("suite", SUITES)
def test_real_ct_dicom_round_trip_is_bit_exact_and_spares_the_lesion(suite, lung1, recipient):
    private_key, card = recipient
    hu, lesion = lung1["image_hu"][33], lung1["lesion_mask"][33]
    data = ct_slice_as_dicom(hu)
    result = protect(
        data, card, signer=GATEWAY, suite=suite, mask=lesion, source={"topic": "t"}, rng=SeededRandom(b"ct")
    )
    opened = open_(result.envelope, private_key, gateways=PINNED, restore_original=True)

    assert opened.original == data  # DICOM in, the same DICOM file back
    assert opened.hidden.message_id == result.message_id
    assert np.array_equal(opened.hidden.lesion_mask, lesion)
    marked = pydicom.dcmread(io.BytesIO(opened.marked))
    original = pydicom.dcmread(io.BytesIO(data))
    # The marked image is a derived object that points back at its source; the patient is the same.
    assert marked.SOPInstanceUID != original.SOPInstanceUID and marked.PatientID == original.PatientID
    assert marked.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    changed = marked.pixel_array != original.pixel_array
    assert changed.any()
    # No changed pixel lies in the lesion or its safety margin.
    assert not (changed & exclusion_mask(lesion, 3)).any()
    assert opened.content["format"] == "dicom" and opened.source == {"topic": "t"}
    assert opened.origin.pinned and opened.origin.device_id == "gw-pipeline"


def test_pydicom_ct_small_round_trip(recipient):
    private_key, card = recipient
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    image = codecs.decode(data)
    mask = np.zeros(image.pixels.shape, bool)
    mask[60:70, 60:70] = True
    # Cropped around the spine, with lung in its corners and no air around the body: the default carrier
    # rule has no room in it, the paper's rule does.
    with pytest.raises(CapacityError, match="outside-body"):
        protect(data, card, signer=GATEWAY, mask=mask)
    opened = open_(protect(data, card, signer=GATEWAY, mask=mask, carrier_rule="non-lesion").envelope, private_key,
                   gateways=PINNED, restore_original=True)
    assert opened.original == data


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("side", [64, 512])
def test_generated_png_and_npy_round_trips(dtype, side, recipient):
    private_key, card = recipient
    rng = np.random.default_rng(side)
    pixels = rng.integers(0, np.iinfo(dtype).max, size=(side, side), dtype=dtype)
    mask = np.zeros_like(pixels, dtype=bool)
    mask[side // 4 : side // 3, side // 4 : side // 3] = True
    for data in (png_bytes(pixels), npy_bytes(pixels)):
        # Random pixels have no air around a body, so only the paper's rule finds carriers in them.
        opened = open_(protect(data, card, signer=GATEWAY, mask=mask, carrier_rule="non-lesion").envelope, private_key,
                       gateways=PINNED, restore_original=True)
        assert np.array_equal(codecs.decode(opened.original).pixels, pixels)
        assert np.array_equal(opened.hidden.lesion_mask, mask)
        assert (codecs.decode(opened.marked).pixels != pixels).any()


SLICE = 10
FIXED_CLOCK = lambda: 1_700_000_000_000_000_000  # noqa: E731


def _seeded(lung1, card, seed: bytes, **kw):  # type: ignore[no-untyped-def]
    data = ct_slice_as_dicom(lung1["image_hu"][SLICE])
    mask = lung1["lesion_mask"][SLICE]
    return protect(data, card, signer=GATEWAY, mask=mask, rng=SeededRandom(seed), clock=FIXED_CLOCK, **kw).envelope


def test_seed_makes_protect_deterministic(lung1, recipient):
    _, card = recipient
    first, second, third = (_seeded(lung1, card, seed) for seed in (b"s", b"s", b"t"))
    assert first == second != third


def test_overlap_gives_the_same_envelope_and_scores_the_input_image(lung1, recipient):
    _, card = recipient
    inline = _seeded(lung1, card, b"s")
    with ThreadPoolExecutor(1) as overlap:
        assert _seeded(lung1, card, b"s", overlap=overlap) == inline
    # The genome is the one the search picks on the input's own pixels (the documented sample: the image
    # before hiding), so a writer that scored the marked image instead would be told apart here.
    pixels = codecs.decode(ct_slice_as_dicom(lung1["image_hu"][SLICE])).pixels
    rng = SeededRandom(b"s")
    rng(16)  # the message id
    sealer = Sealer(card, GATEWAY, message_id=peek_header(inline)["message_id"], rng=rng, clock=FIXED_CLOCK)
    sealer.choose_key(pixels)
    assert peek_header(inline)["sbbe"]["genome"] == peek_header(sealer.seal(b"x").envelope)["sbbe"]["genome"]


def test_wrong_recipient_and_tampering_give_the_one_error(lung1, recipient):
    _, card = recipient
    data = ct_slice_as_dicom(lung1["image_hu"][20])
    envelope = protect(
        data, card, signer=GATEWAY, mask=lung1["lesion_mask"][20], sbbe_params=SearchParams(population=1, generations=0)
    ).envelope
    stranger, _ = generate_recipient("stranger", SeededRandom(b"someone else"))
    with pytest.raises(OpenError) as wrong_key:
        open_(envelope, stranger, gateways=PINNED)
    for position in (0, 5, len(envelope) // 2, len(envelope) - 1):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        with pytest.raises(OpenError) as tampered_error:
            open_(bytes(tampered), recipient[0], gateways=PINNED)
        assert str(tampered_error.value) == str(wrong_key.value)


def test_bad_input_and_no_room_are_input_errors(recipient):
    _, card = recipient
    with pytest.raises(InputError) as bad:
        protect(b"not an image at all", card, signer=GATEWAY, mask=np.zeros((1, 1), bool))
    assert bad.value.reason
    tiny = np.full((8, 8), 7, np.uint8)
    with pytest.raises(CapacityError):
        protect(png_bytes(tiny), card, signer=GATEWAY, mask=np.zeros((8, 8), bool))
    with pytest.raises(InputError):
        protect(png_bytes(tiny), card, signer=GATEWAY, mask=np.zeros((9, 9), bool))


def test_authenticated_envelope_that_does_not_unpack_is_the_one_error_with_no_cause(recipient):
    """A sealer that seals garbage (faulty or hostile) produces an envelope that authenticates but does not
    unpack; the OpenError must not carry the failing step as its cause or context."""
    from gateway.crypto.envelope import Sealer

    private_key, card = recipient
    sealer = Sealer(card, GATEWAY, "aes-256-siv", rng=SeededRandom(b"garbage"))
    envelope = sealer.seal(b"not a container", compression="zlib").envelope
    with pytest.raises(OpenError) as err:
        open_(envelope, private_key, gateways=PINNED)
    assert err.value.__cause__ is None and err.value.__context__ is None
