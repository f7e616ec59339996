"""The carrier rule on real CT: under the default rule hiding never changes a pixel of the reference lesion,
even when the segmenter misses it. Backgrounds and the nodule are lung1's (shared/data); inserted lesions
come from models.data.lesions, the training data's own inserter."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway.config import ProtectionConfig
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard, generate_recipient
from gateway.errors import CapacityError
from gateway.pipeline import open_, protect
from gateway.rng import SeededRandom
from gateway.stego.carriers import DEFAULT_CARRIER_RULE, body_hull, carrier_exclusion
from medshield_tools.scanner_sim import dicom_from_hu
from models.data.lesions import insert_lesions

SPACING = (0.5703, 0.5703)
GATEWAY = GatewayKey.generate("gw-carriers", SeededRandom(b"carrier-tests-gateway"))
PINNED = TrustedGateways([GATEWAY.card])


@pytest.fixture(scope="module")
def lung1(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_data / "ct" / "lung1.npz") as d:
        return d["image_hu"], d["lesion_mask"].astype(bool)


@pytest.fixture(scope="module")
def recipient() -> tuple[PrivateKey, RecipientCard]:
    return generate_recipient("carriers", SeededRandom(b"carrier-tests"))


def changed_pixels(hu: np.ndarray, card: RecipientCard, key: PrivateKey, rule: str | None,
                   predicted: np.ndarray) -> np.ndarray:
    """Protect `hu` as a CT DICOM with the segmenter's mask `predicted`; where the marked image differs."""
    data = dicom_from_hu(np.round(hu).astype(np.int16), instance=1, spacing_mm=SPACING, thickness_mm=5.0)
    kwargs = {} if rule is None else {"carrier_rule": rule}
    result = protect(data, card, signer=GATEWAY, segmenter=lambda image: predicted, rng=SeededRandom(b"c"), **kwargs)
    opened = open_(result.envelope, key, gateways=PINNED, restore_original=True)
    assert opened.original == data
    marked = pydicom.dcmread(io.BytesIO(opened.marked)).pixel_array
    original = pydicom.dcmread(io.BytesIO(data)).pixel_array
    changed = marked != original
    assert changed.any()
    return changed


def test_the_default_rule_is_outside_the_body() -> None:
    assert DEFAULT_CARRIER_RULE == "outside-body"
    assert ProtectionConfig().stego_carriers == "outside-body"
    assert ProtectionConfig(stego_carriers="non-lesion").stego_carriers == "non-lesion"
    with pytest.raises(ValueError):
        ProtectionConfig(stego_carriers="everywhere")


@pytest.mark.parametrize("predicted", ["reference", "missed"])
def test_lung1_nodule_is_never_written_to(lung1, recipient, predicted: str) -> None:
    hu, lesion = lung1
    key, card = recipient
    mask = lesion[33] if predicted == "reference" else np.zeros_like(lesion[33])
    changed = changed_pixels(hu[33], card, key, None, mask)
    assert not (changed & lesion[33]).any()
    assert not (changed & body_hull(hu[33])).any()


def test_the_papers_rule_makes_a_missed_nodule_a_carrier(lung1) -> None:
    """What the default rule prevents: after the segmenter's miss, the paper's rule offers the tumour's pixels
    as carriers (whether a given payload lands there depends on its size and the key)."""
    hu, lesion = lung1
    empty = np.zeros_like(lesion[33])
    assert not carrier_exclusion("non-lesion", empty, 3, hu[33])[lesion[33]].any()
    assert carrier_exclusion("outside-body", empty, 3, hu[33])[lesion[33]].all()


def test_inserted_lesions_missed_by_the_segmenter_are_never_written_to(lung1, recipient) -> None:
    """Lesions of every kind, inside the lung and against its wall, inserted into real lesion-free slices
    (base, hilum, apex); the segmenter returns an empty mask."""
    hu, lesion = lung1
    key, card = recipient
    rng = np.random.default_rng(2026)
    inserted = 0
    for z in (4, 12, 20, 28, 36, 40):
        assert not lesion[z].any()
        new_hu, truth, what = insert_lesions(rng, hu[z].astype(np.float32), SPACING, 3)
        assert truth.any()
        inserted += len(what)
        changed = changed_pixels(new_hu, card, key, None, np.zeros_like(truth))
        assert not (changed & truth).any(), f"slice {z}: a carrier inside an inserted lesion"
    assert inserted >= 12


def test_every_inserted_lesion_lies_in_the_excluded_body(lung1) -> None:
    """Broader and without cryptography: every other real slice (and the nodule's), up to three inserted
    lesions each, empty mask."""
    hu, lesion = lung1
    rng = np.random.default_rng(7)
    covered = 0
    for z in sorted(set(range(0, hu.shape[0], 2)) | {33}):
        if lesion[z].any():
            truth = lesion[z]
            new_hu = hu[z].astype(np.float32)
        else:
            new_hu, truth, _ = insert_lesions(rng, hu[z].astype(np.float32), SPACING, 3)
        exclusion = carrier_exclusion("outside-body", np.zeros_like(truth), 3, new_hu)
        assert exclusion[truth].all(), f"slice {z}"
        assert (~exclusion).sum() > 50_000  # room for the payload remains in the air around the patient
        covered += int(truth.sum())
    assert covered > 10_000


def test_no_air_around_the_body_is_the_clear_capacity_error(lung1, recipient) -> None:
    hu, lesion = lung1
    _, card = recipient
    inside = np.round(hu[33, 200:330, 150:370]).astype(np.int16)  # a crop that lies wholly in the patient
    data = dicom_from_hu(inside, instance=1, spacing_mm=SPACING, thickness_mm=5.0)
    empty = np.zeros(inside.shape, bool)
    with pytest.raises(CapacityError, match="carrier rule 'outside-body'"):
        protect(data, card, signer=GATEWAY, mask=empty, rng=SeededRandom(b"c"))
    protect(
        data, card, signer=GATEWAY, mask=empty, rng=SeededRandom(b"c"), carrier_rule="non-lesion"
    )  # the paper's rule fits


def test_unknown_rule_and_missing_hu_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown carrier rule"):
        carrier_exclusion("everywhere", np.zeros((8, 8), bool), 0, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="Hounsfield"):
        carrier_exclusion("outside-body", np.zeros((8, 8), bool), 0, None)
