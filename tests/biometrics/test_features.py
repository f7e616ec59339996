"""MSE-Net key features: the multi-view embedding and the validation rule that picks each modality's code."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.biometrics import features
from gateway.biometrics.features import FeatureExtractor, shifted
from gateway.biometrics.fuzzy import RmCode
from gateway.biometrics.preprocess import fingerprint_input, iris_input
from models.msenet.evaluate import choose_codes
from models.synth import fingerprint, iris

SEED = 3_000_101  # outside every training/validation/test seed range


@pytest.fixture(scope="module")
def ext() -> FeatureExtractor:
    return FeatureExtractor()


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    fp = np.stack([fingerprint_input(f) for f in fingerprint.impressions(SEED, 2)])
    ir = np.stack([iris_input(e) for e in iris.captures(SEED, 2)])
    return fp, ir


def test_shifted_moves_content_and_fills_zero() -> None:
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    y = shifted(x, 1, -2)
    assert np.array_equal(y[0, 0, 1:, :2], x[0, 0, :3, 2:])
    assert not y[0, 0, 0].any() and not y[0, 0, :, 2:].any()
    assert np.array_equal(shifted(x, 0, 0), x)


def _single_view(ext: FeatureExtractor, fp: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = ext.single_pass(fp, ir)
    return e.fingerprint, e.iris


def test_views_make_the_embedding_steadier_under_small_moves(ext: FeatureExtractor,
                                                             inputs: tuple[np.ndarray, np.ndarray]) -> None:
    # The residual pose error of a capture (a few pixels, a few degrees of eye rotation) moves the multi-view
    # embedding less than it moves a single pass: what the views are for.
    fp, ir = inputs
    fp_moved, ir_moved = shifted(fp, 3, -3), np.roll(ir, 3, axis=-1)
    one, one_moved = _single_view(ext, fp, ir), _single_view(ext, fp_moved, ir_moved)
    many, many_moved = ext.run(fp, ir), ext.run(fp_moved, ir_moved)
    for i, (a, b) in enumerate((("fingerprint", "fingerprint"), ("iris", "iris"))):
        cos_one = np.sum(one[i] * one_moved[i], axis=1)
        cos_many = np.sum(getattr(many, a) * getattr(many_moved, b), axis=1)
        assert np.all(cos_many > cos_one), (a, cos_one, cos_many)
    assert np.allclose(np.linalg.norm(many.fingerprint, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(many.iris, axis=1), 1, atol=1e-5)


def test_model_identity_covers_the_views(ext: FeatureExtractor) -> None:
    # A profile enrolled with other views would decode other bits: it must be refused as another model.
    import hashlib
    import json

    manifest = json.loads(features.DEFAULT_MODEL.with_name("manifest.json").read_text())
    files_only = hashlib.sha256((manifest["sha256"] + manifest["whitening"]["sha256"]).encode()).hexdigest()
    assert ext.sha256 != files_only
    assert ext.sha256 == hashlib.sha256((manifest["sha256"] + manifest["whitening"]["sha256"]
                                         + features.views_id(ext.fp_size)).encode()).hexdigest()
    assert ext.fp_size == manifest["inputs"]["fingerprint"]["shape"][-1]


def _rates(m: int, blocks: int, fails: range, matches: int) -> dict[str, object]:
    code = RmCode(m, blocks)
    return {"code": code, "label": code.label, "genuine_ok": [i not in fails for i in range(300)],
            "impostor_matches": matches, "impostor_attempts": 90_000}


def test_code_choice_favours_the_weaker_modality_within_the_frr_limit() -> None:
    # Fingerprint (3, 8) is strong and iris (5, 2) weak: the pair with the most bits in total, yet an impostor
    # holding the victim's fingerprint gets through the weak iris alone; it is over the FRR limit anyway (10 of
    # 300 attempts fail: 3.3 %, up to 6.0 % in the 95 % interval), and so is (3, 8) with (4, 4) (13 failures).
    # The balanced pair must win: 3 failures, 1 %, at most 2.9 %.
    fp = [_rates(3, 8, range(290, 300), 1), _rates(3, 6, range(0, 2), 50)]
    ir = [_rates(5, 2, range(0), 400), _rates(4, 4, range(0, 3), 60)]
    choice = choose_codes({"fingerprint": fp, "iris": ir})
    chosen = choice["chosen"]
    assert isinstance(chosen, dict)
    assert chosen["codes"] == (RmCode(3, 6), RmCode(4, 4)), chosen
    assert chosen["joint_frr"] == pytest.approx(3 / 300)
    # (3, 8) with (4, 4) is under 5 % by its point estimate (4.3 %): only the interval keeps it out.
    pairs = choice["pairs"]
    assert isinstance(pairs, list)
    strong = next(r for r in pairs if r["codes"] == (RmCode(3, 8), RmCode(4, 4)))
    assert strong["joint_frr"] < 0.05 < strong["joint_frr_upper95"]


def test_the_published_figures_are_those_of_the_shipped_model(ext: FeatureExtractor) -> None:
    # MODEL_CARD.md and the manifest quote results/eval.json: it must have been measured with the committed model
    # file, whitening and views, and with the codes the gateway uses. Swapping any of them without re-evaluating
    # fails here.
    import json

    from gateway.biometrics.keyrelease import DEFAULT_CODES

    results = json.loads((features.DEFAULT_MODEL.parent / "results" / "eval.json").read_text())
    manifest = json.loads(features.DEFAULT_MODEL.with_name("manifest.json").read_text())
    assert results["model_sha256"] == ext.sha256
    assert results["codes_used"] == {m: c.label for m, c in DEFAULT_CODES.items()}
    assert manifest["metrics"]["frr"] == results["test"]["genuine"]
    assert manifest["metrics"]["codes"] == results["codes_used"]


def test_views_keep_their_distance_on_the_print_at_any_input_size() -> None:
    # Profiles enrolled with the 96-px model carry this string inside their model identity: it must not move.
    assert features.views_id(96) == "views/v1/fp(-4, 0, 4)/iris(-4, 0, 4)"
    assert features.fingerprint_shifts(192) == (-8, 0, 8)
    assert features.views_id(192) != features.views_id(96)


def test_inputs_cached_at_two_sizes_come_from_the_same_captures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A model at 192 px and one at 96 px are compared on the same identities only if both caches hold one capture.
    from models.msenet.dataset import identity_captures
    from models.msenet.evaluate import inputs

    fine = inputs(SEED, 2, 2, tmp_path, workers=1, fp_size=192, also_fp_sizes=(96,))
    served = inputs(SEED, 2, 2, tmp_path, workers=1, fp_size=96)  # read from the cache written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{SEED}_2x2_fp192.npz", f"{SEED}_2x2_fp96.npz"]
    assert fine["fingerprint"].shape[-1] == 192 and served["fingerprint"].shape[-1] == 96
    assert np.array_equal(fine["iris"], served["iris"])
    prints, _ = identity_captures(SEED + 1, 2)
    assert np.array_equal(served["fingerprint"][1, 1], fingerprint_input(prints[1], 96).astype(np.float16))
    assert np.array_equal(fine["fingerprint"][1, 1], fingerprint_input(prints[1], 192).astype(np.float16))


@pytest.mark.parametrize("size", ["96", None, 96.0])
def test_a_manifest_without_a_whole_fingerprint_size_is_refused(tmp_path, size) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    from gateway.errors import ConfigError

    for name in ("msenet.onnx", "whitening.npz"):
        shutil.copy(features.DEFAULT_MODEL.with_name(name), tmp_path / name)
    manifest = json.loads(features.DEFAULT_MODEL.with_name("manifest.json").read_text())
    manifest["inputs"]["fingerprint"]["shape"][-1] = size
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="manifest missing or invalid"):
        FeatureExtractor(tmp_path / "msenet.onnx")


def test_impostor_attempts_are_independent_and_each_counted_once() -> None:
    # Impostor j's captures are split into sets of k; set (j, s) is one attempt against target (j * sets + s) mod
    # targets. Only impostor 1's sets are copies of their targets' own captures: exactly those attempts, and no
    # other, may release, whatever the batching.
    from gateway.biometrics.features import KeyFeatures
    from models.msenet.evaluate import ENROL, impostor_rows, test_targets

    rng = np.random.default_rng(5)
    n_t, k, sets = 3, 1, 3
    person = rng.normal(size=(n_t, 2, 128))  # (target, modality, dim)
    own = np.repeat(person[:, :, None, :], ENROL + k, axis=2) + rng.normal(0, 0.01, (n_t, 2, ENROL + k, 128))
    kf = KeyFeatures(own[:, 0], own[:, 1])
    imp = rng.normal(size=(5, 2, sets * k, 128))
    for s in range(sets):
        imp[1, :, s] = person[(1 * sets + s) % n_t]
    codes = {"fingerprint": RmCode(3, 8), "iris": RmCode(3, 6)}
    rows = impostor_rows(kf, KeyFeatures(imp[:, 0], imp[:, 1]), test_targets(kf, codes), k)
    assert rows["impostor_full"]["attempts"] == 5 * sets
    assert rows["impostor_full"]["count"] == sets
    assert rows["impostor_fingerprint_only"]["count"] == sets
    assert rows["impostor_iris_only"]["count"] == sets
