"""Build the segmenter's training and validation sets on real CT anatomy (after `models.data.fetch`).

    .venv-train/bin/python -m models.data.build --real runs/realct --out runs/dsnet-real

Sources of training slices, all taken through the gateway's own pre-processing (`gateway.segment.
make_canvas`: resample to `PIXEL_SPACING_MM`, crop to the body, z-score) so the network learns exactly what
it is served:

- real backgrounds (TotalSegmentator chest and abdomen patients, elastix's lung patient, the right half of
  plastimatch's thorax, the dicompyler neck slice), each slice twice: once with lesions inserted into its lung
  region (`models.data.lesions`, or lung1's real nodule copied in) where it has lung, once as it is; every organ
  label (liver, spleen, heart, vessels, airways, bones ...) is a hard negative and crops are drawn around them;
- the procedural generator (`models.synth.ct`) as one source among several.

Two variants of the real patients can follow them in the seeded stream: `--slab-mm 5` (in `make train-data`
since session 10) adds each patient reconstructed at 5 mm slices (`thick_slabs`), and `--plain-vessels`
(measured in sessions 10 and 11, not in the recipe) adds each contrast-enhanced patient, and its 5 mm slabs, with
its lung vessels and labelled blood pool at plain-CT density, marked never lesion (`without_contrast`). The
patients' own slices are the same with or without them.

Validation is held out by patient. lung1 (chest, 0.57 mm): its slices as they are (45 tumour-free, 3 with
the real nodule) and its tumour-free slices with lesions inserted under a separate seed; its background is
never trained on, but its nodule is copied into training patients, so the real-nodule figure is optimistic.
The TotalSegmentator DICOM series (`ts_domes`, liver and spleen domes, 0.98 mm, no lung on any slice):
tumour-free, the hard negatives where generated-only training failed.

Written: `train.npz` / `val.npz` (x float16 (N, S, S) network inputs, y uint8 masks, hard uint8 organ masks,
S = `STORE`), `val_real.npz` (the validation slices in native HU with their masks, for evaluation as
served), `gen_val.npz` (generated slices in HU), and `*.json` describing each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from gateway.segment import HU_WINDOW, MODEL_SIZE, make_canvas, mask_to_canvas, zscore
from models.data.fetch import BLOOD_POOL_LABELS
from models.data.lesions import insert_lesions, lung_region, nodule_bank_from
from models.synth.ct import PIXEL_SPACING_MM as GEN_SPACING_MM
from models.synth.ct import generate_slice

PIXEL_SPACING_MM = 1.15
"""The network's pixel size in mm: lung1's 0.57 mm pixels halved, what the earlier models saw at 256x256."""
FIT_BODY = True
"""A body wider than one network input at PIXEL_SPACING_MM is resampled coarser to fit it (the manifest's
`fit_body_to_input`): one network run per slice, as fast as the whole-slice models, instead of 2x2 tiles on a
500 mm field of view. Every canvas is then exactly MODEL_SIZE square, what the network reads when served."""
STORE = MODEL_SIZE if FIT_BODY else 320
TRAIN_SEED = 20261201
VAL_SEED = 20261202
GEN_SEED = 20261121
GEN_VAL_SEED = 7
TRAIN_PATIENTS = ("ts_chest", "ts_abdomen", "ex_lung", "dcmpy_neck", "pm_right")
VAL_PATIENTS = ("lung1", "ts_domes")
MIN_LUNG_MM2 = 1500.0
LESION_EDGE_MM = 2.0
"""Tissue this close to an inserted lesion is its partial-volume edge: neither lesion nor a hard negative."""


def lung_border_tissue(hu: np.ndarray, spacing_mm: tuple[float, float], region: np.ndarray, border_mm: float,
                       lesion: np.ndarray) -> np.ndarray:
    """Bool soft tissue (> -400 HU) inside the lung region or within `border_mm` of it, away from `lesion`.

    On a tumour-free real background every such pixel is a true negative: the vessels cut across in the
    lung, the hila, the mediastinum, the diaphragm and the liver and spleen domes rising into the bases,
    the chest wall. These are where a network trained on "soft tissue next to lung" calls false lesions on
    real CT, and none of them carries an organ label in the chest patient."""
    r = max(1, int(round(border_mm / spacing_mm[0])))
    near = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
    e = max(1, int(round(LESION_EDGE_MM / spacing_mm[0])))
    edge = cv2.dilate(lesion.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1,) * 2)) > 0
    return np.asarray(near & (np.asarray(hu) > -400.0) & ~edge, dtype=bool)


def training_patients(spec: str) -> tuple[str, ...]:
    """The real training patients named in `spec` (comma-separated), refusing any validation patient."""
    patients = tuple(name.strip() for name in spec.split(",") if name.strip())
    if overlap := set(patients) & set(VAL_PATIENTS):
        raise SystemExit(f"validation patients cannot be trained on: {sorted(overlap)}")
    return patients


def load_patient(real: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(real / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


def in_plane_spacing(patient: dict[str, np.ndarray]) -> tuple[float, float]:
    """(row, column) pixel size in mm of a patient file from `models.data.fetch`."""
    return float(patient["spacing_zyx_mm"][1]), float(patient["spacing_zyx_mm"][2])


def lung_label(patient: dict[str, np.ndarray], z: int) -> np.ndarray | None:
    """The patient's lung mask or lobe labels on slice z, where its source has them."""
    return patient["lung"][z] if "lung" in patient else None


def thick_slabs(patient: dict[str, np.ndarray], slab_mm: float) -> dict[str, np.ndarray] | None:
    """The patient as a scanner reconstructing `slab_mm` thick slices would show it, or None if its slices
    are already that thick (or it has one slice).

    A slice's HU is the attenuation averaged through its thickness, so consecutive slices averaged in HU, in
    non-overlapping runs of round(slab_mm / spacing), are that thicker reconstruction: a vessel crossing
    obliquely becomes a smeared blob and the liver dome a pale island in the lung base, the partial-volume
    look of the 5 mm chest CT many hospitals still archive, which the 1.5-3 mm training patients lack. Organ
    labels are the union over the run (an organ present in any part of the slab is never lesion); the lung
    label is the middle slice's.
    """
    dz = float(patient["spacing_zyx_mm"][0])
    k = int(round(slab_mm / dz))
    n = patient["hu"].shape[0] // k if k >= 2 else 0
    if n == 0:
        return None
    runs = patient["hu"][:n * k].astype(np.float32).reshape(n, k, *patient["hu"].shape[1:])
    out = {"hu": np.round(runs.mean(axis=1)).astype(np.int16),
           "organ": patient["organ"][:n * k].reshape(n, k, *patient["organ"].shape[1:]).max(axis=1),
           "spacing_zyx_mm": np.array([dz * k, *patient["spacing_zyx_mm"][1:]], np.float64)}
    if "lung" in patient:
        out["lung"] = patient["lung"][k // 2:n * k:k]
    return out


NONCONTRAST_BLOOD_HU = 40.0
"""Blood without contrast agent: what a vessel in the lung shows on a plain chest CT."""
PARENCHYMA_HU = -850.0
VESSEL_LABEL = 255
"""Organ label of the lung vessels `without_contrast` finds (TotalSegmentator's ids stop at 117)."""
PLAIN_POOL_SPREAD_HU = 15.0
"""How far above NONCONTRAST_BLOOD_HU the enhanced blood pool lands in `plain_blood_pool`."""
ENHANCED_HU = 150.0
ENHANCED_SHARE = 0.1
"""A patient is contrast-enhanced when more than this share of the soft tissue (> -200 HU) inside its lung
regions is denser than ENHANCED_HU: 0.35 for the TotalSegmentator chest (a pulmonary angiogram), at most 0.02
for the other training patients and lung1."""


def lung_vessel_hu(patient: dict[str, np.ndarray], every: int = 6) -> np.ndarray:
    """HU of the soft tissue (> -200 HU) inside the lung regions of every `every`-th slice: the lung vessels."""
    sp = in_plane_spacing(patient)
    out = [np.zeros(0, np.float32)]
    for z in range(0, patient["hu"].shape[0], every):
        hu = patient["hu"][z].astype(np.float32)
        region = lung_region(hu, sp, lung_label(patient, z), patient["organ"][z])
        out.append(hu[region & (hu > -200)])
    return np.concatenate(out)


def plain_blood_pool(hu: np.ndarray, organ: np.ndarray, pool_hu: float, spacing_mm: tuple[float, float]) -> np.ndarray:
    """A slice's labelled blood pool (heart, aorta, pulmonary artery, arch branches) at plain-CT density.

    Pixels of those labels, or within 1 mm of them (their partial-volume edge), that are denser than
    NONCONTRAST_BLOOD_HU are compressed towards it: `pool_hu` (the patient's enhanced blood) becomes
    NONCONTRAST_BLOOD_HU + PLAIN_POOL_SPREAD_HU and enhanced myocardium (~120 HU) a few HU above
    NONCONTRAST_BLOOD_HU, as on a plain scan where heart wall and blood are nearly alike. Fat and everything
    else keeps its HU."""
    pool = np.isin(organ, BLOOD_POOL_LABELS).astype(np.uint8)
    if not pool.any():
        return hu
    r = max(1, int(round(1.0 / spacing_mm[0])))
    near = cv2.dilate(pool, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
    pick = near & (hu > NONCONTRAST_BLOOD_HU)
    out = hu.copy()
    scale = PLAIN_POOL_SPREAD_HU / max(pool_hu - NONCONTRAST_BLOOD_HU, 1.0)
    out[pick] = NONCONTRAST_BLOOD_HU + (hu[pick] - NONCONTRAST_BLOOD_HU) * scale
    return out


def without_contrast(patient: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """A contrast-enhanced patient as a plain CT would show it, or None if it is not enhanced.

    In a pulmonary angiogram every vessel in the lung is 300-650 HU and so are the heart and the great
    vessels, so a network trained on it may learn that a round soft-tissue density next to the lung is a
    lesion and call plain-CT vessels (40-100 HU, as at lung1's hila) and the plain descending aorta beside
    the spine lesions. Two changes, both marked never lesion:

    - the lung vessels: the components of pixels denser than ENHANCED_HU within 3 mm of each slice's lung
      region that lie mostly inside it (ribs and the mediastinum lie mostly outside and are left), with a 1 mm
      edge; calcifications inside the lung fields are taken for vessels too. There a pixel is read as a mixture
      of parenchyma and blood: HU from PARENCHYMA_HU up to the patient's enhanced blood level (the median vessel
      HU above ENHANCED_HU) is mapped linearly onto PARENCHYMA_HU .. NONCONTRAST_BLOOD_HU, denser pixels onto
      NONCONTRAST_BLOOD_HU, so partial-volume edges stay partial. Where a mapped vessel is denser than -300 HU
      it joins the organ labels as VESSEL_LABEL;
    - the labelled blood pool (`plain_blood_pool`): heart, aorta, pulmonary artery and the arch's branches,
      where the patient's labels have them (they are organ labels already).

    Lesions are inserted afterwards, at their own HU. Measured (model card, sessions 10 and 11): the lung vessels
    alone did not help; with the blood pool the network stops calling lung1's plain descending aorta on half
    the slices where it did, and calls more beside the arch, where unlabelled veins stay enhanced.
    """
    vessels = lung_vessel_hu(patient)
    enhanced = vessels[vessels > ENHANCED_HU]
    if vessels.size == 0 or enhanced.size <= ENHANCED_SHARE * vessels.size:
        return None
    blood = float(np.median(enhanced))
    in_pool = np.isin(patient["organ"], BLOOD_POOL_LABELS) & (patient["hu"] > ENHANCED_HU)
    pool_hu = float(np.median(patient["hu"][in_pool])) if in_pool.any() else blood
    sp = in_plane_spacing(patient)

    def disc(mm: float) -> np.ndarray:
        r = max(1, int(round(mm / sp[0])))
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)

    scale = (NONCONTRAST_BLOOD_HU - PARENCHYMA_HU) / (blood - PARENCHYMA_HU)
    out = dict(patient)
    out["hu"] = patient["hu"].copy()
    out["organ"] = patient["organ"].copy()
    for z in range(patient["hu"].shape[0]):
        hu = patient["hu"][z].astype(np.float32)
        region = lung_region(hu, sp, lung_label(patient, z), patient["organ"][z])
        near = cv2.dilate(region.astype(np.uint8), disc(3.0)) > 0
        dense = (near & (hu > ENHANCED_HU)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
        inside = np.bincount(labels[region], minlength=n)
        keep = inside > 0.5 * stats[:, cv2.CC_STAT_AREA]
        keep[0] = False
        vessel = cv2.dilate(keep[labels].astype(np.uint8), disc(1.0)) > 0
        mapped = np.where(hu >= blood, NONCONTRAST_BLOOD_HU, PARENCHYMA_HU + (hu - PARENCHYMA_HU) * scale)
        pick = vessel & near & (hu > PARENCHYMA_HU)
        plain = plain_blood_pool(hu, patient["organ"][z], pool_hu, sp)
        plain[pick] = mapped[pick]
        out["hu"][z] = np.round(plain).astype(patient["hu"].dtype)
        out["organ"][z][pick & (mapped > -300) & (out["organ"][z] == 0)] = VESSEL_LABEL
    return out


def to_store(x: np.ndarray, *masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre-crop or pad (with the canvas's own air value) to STORE x STORE, keeping any lesion inside."""
    h, w = x.shape
    fill = float(x.min())
    out = [np.full((STORE, STORE), fill, np.float32)] + [np.zeros((STORE, STORE), np.uint8) for _ in masks]

    def span(n: int, centre: int) -> tuple[int, int]:
        if n <= STORE:
            return 0, n
        a = min(max(centre - STORE // 2, 0), n - STORE)
        return a, a + STORE

    ys, xs = np.nonzero(masks[0]) if masks and masks[0].any() else (np.array([h // 2]), np.array([w // 2]))
    y0, y1 = span(h, int(ys.mean()))
    x0, x1 = span(w, int(xs.mean()))
    oy, ox = (STORE - (y1 - y0)) // 2, (STORE - (x1 - x0)) // 2
    out[0][oy:oy + y1 - y0, ox:ox + x1 - x0] = x[y0:y1, x0:x1]
    for o, m in zip(out[1:], masks, strict=False):
        o[oy:oy + y1 - y0, ox:ox + x1 - x0] = m[y0:y1, x0:x1]
    return tuple(out)


def network_view(hu: np.ndarray, spacing: tuple[float, float], mask: np.ndarray, hard: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    canvas = make_canvas(hu, spacing, PIXEL_SPACING_MM, HU_WINDOW, MODEL_SIZE, fit=FIT_BODY)
    x = zscore(canvas.windowed)
    return to_store(x, mask_to_canvas(mask, canvas), mask_to_canvas(hard, canvas))  # type: ignore[return-value]


def real_slices(rng: np.random.Generator, patient: dict[str, np.ndarray], bank: list, desc: str,
                lesion_p: float, with_plain: bool, border_mm: float = 0.0) -> tuple[list, list, list, list[dict]]:
    """Each slice with lesions (where it has lung, probability `lesion_p`) and, if `with_plain`, as it is.
    With `border_mm` > 0 the soft tissue in and around the lung region joins the hard negatives
    (`lung_border_tissue`)."""
    sp = in_plane_spacing(patient)
    xs, ys, hs, meta = [], [], [], []
    for z in tqdm(range(patient["hu"].shape[0]), desc=desc, unit="slice"):
        hu = patient["hu"][z].astype(np.float32)
        hard = patient["organ"][z] > 0
        label = lung_label(patient, z)
        region = lung_region(hu, sp, label, patient["organ"][z])
        lung_mm2 = float(region.sum()) * sp[0] * sp[1]
        variants = []
        if with_plain:
            variants.append((hu, np.zeros(hu.shape, bool), []))
        if lung_mm2 >= MIN_LUNG_MM2 and rng.uniform() < lesion_p:
            count = int(rng.choice([1, 1, 2, 3]))
            ins_hu, ins_mask, what = insert_lesions(rng, hu, sp, count, bank, lung_label=label,
                                                    organ=patient["organ"][z])
            if what:
                variants.append((ins_hu, ins_mask, what))
        for v_hu, v_mask, what in variants:
            v_hard = hard | lung_border_tissue(v_hu, sp, region, border_mm, v_mask) if border_mm > 0 else hard
            x, y, h = network_view(v_hu, sp, v_mask, v_hard & ~v_mask)
            xs.append(x.astype(np.float16))
            ys.append(y)
            hs.append(h)
            meta.append({"z": z, "lesions": [w.__dict__ for w in what], "lung_mm2": round(lung_mm2)})
    return xs, ys, hs, meta


def generated(seed: int, count: int) -> tuple[list, list, list, list[dict], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    xs, ys, hs, meta, hus, masks = [], [], [], [], [], []
    for _ in tqdm(range(count), desc=f"generated seed {seed}", unit="slice"):
        sl = generate_slice(rng)
        x, y, h = network_view(sl.hu, (GEN_SPACING_MM, GEN_SPACING_MM), sl.mask, np.zeros(sl.mask.shape, bool))
        xs.append(x.astype(np.float16))
        ys.append(y)
        hs.append(h)
        meta.append({"lesions": list(sl.lesions)})
        hus.append(np.round(sl.hu).astype(np.int16))
        masks.append(sl.mask)
    return xs, ys, hs, meta, hus, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("runs/realct"))
    parser.add_argument("--out", type=Path, default=Path("runs/dsnet-real"))
    parser.add_argument("--generated", type=int, default=300, help="generated training slices")
    parser.add_argument("--generated-val", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="lesion-inserted copies of each real slice")
    parser.add_argument("--patients", default=",".join(TRAIN_PATIENTS),
                        help="comma-separated real training patients (models.data.fetch names), in this order")
    parser.add_argument("--border-mm", type=float, default=0.0,
                        help="soft tissue within this many mm of the lung region of real training slices joins "
                             "the hard negatives (0: organ labels only)")
    parser.add_argument("--slab-mm", type=float, default=0.0,
                        help="also train on each real patient reconstructed at this slice thickness "
                             "(thick_slabs; 0: off), after all patients in the seeded stream")
    parser.add_argument("--plain-vessels", action="store_true",
                        help="also train on each contrast-enhanced real patient with its lung vessels at plain-CT "
                             "density (without_contrast), after the patients and slabs in the seeded stream")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lung1 = load_patient(args.real, "lung1")
    bank = nodule_bank_from(lung1["hu"], lung1["lesion"], in_plane_spacing(lung1))
    sources = json.loads((args.real / "sources.json").read_text())

    rng = np.random.default_rng(TRAIN_SEED)
    X: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    H: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    patients = training_patients(args.patients)

    def add(patient: dict[str, np.ndarray], tag: str, desc: str) -> None:
        """The patient's slices as they are and with lesions, `args.repeats` times, under the name `tag`."""
        for rep in range(args.repeats):
            xs, ys, hs, m = real_slices(rng, patient, bank, f"{desc} #{rep + 1}", 0.85, with_plain=(rep == 0),
                                        border_mm=args.border_mm)
            X.extend(xs)
            Y.extend(ys)
            H.extend(hs)
            meta.extend(dict(mm, patient=tag) for mm in m)

    for name in patients:
        add(load_patient(args.real, name), name, name)
    # Variants come after every patient, so the slices above are the same with or without them.
    slabs: list[str] = []
    plain: list[str] = []
    for name in patients if args.slab_mm > 0 else ():
        if (slab := thick_slabs(load_patient(args.real, name), args.slab_mm)) is not None:
            slabs.append(name)
            add(slab, f"{name}_slab", f"{name} {args.slab_mm:g} mm")
    for name in patients if args.plain_vessels else ():
        if (unenhanced := without_contrast(load_patient(args.real, name))) is not None:
            plain.append(name)
            add(unenhanced, f"{name}_plain", f"{name} plain")
            if args.slab_mm > 0 and (slab := thick_slabs(unenhanced, args.slab_mm)) is not None:
                add(slab, f"{name}_plain_slab", f"{name} plain {args.slab_mm:g} mm")
    xs, ys, hs, m, _, _ = generated(GEN_SEED, args.generated)
    X += xs
    Y += ys
    H += hs
    meta += [dict(mm, patient="generated") for mm in m]
    np.savez(args.out / "train.npz", x=np.stack(X), y=np.stack(Y), hard=np.stack(H))
    info = {"seed": TRAIN_SEED, "count": len(X), "patients": list(patients), "generated": args.generated,
            "lesion_slices": int(sum(bool(y.any()) for y in Y)),
            "lesions": int(sum(len(mm.get("lesions", [])) for mm in meta)),
            "pixel_spacing_mm": PIXEL_SPACING_MM, "fit_body_to_input": FIT_BODY, "border_mm": args.border_mm,
            "slab_mm": args.slab_mm, "slab_patients": slabs,
            "plain_vessel_patients": plain, "store": STORE, "window": HU_WINDOW,
            "sources": {k: sources[k] for k in patients + ("lung1",)}}
    (args.out / "train.json").write_text(json.dumps(info, indent=1))
    (args.out / "train_slices.json").write_text(json.dumps(meta))

    # Validation: held-out patient(s), tumour-free and with lesions inserted under their own seed.
    vrng = np.random.default_rng(VAL_SEED)
    VX, VY, VH, vmeta, native = [], [], [], [], {"hu": [], "mask": [], "spacing": [], "patient": [], "z": [],
                                                  "inserted": []}
    for name in VAL_PATIENTS:
        patient = load_patient(args.real, name)
        sp = in_plane_spacing(patient)
        for z in tqdm(range(patient["hu"].shape[0]), desc=f"val {name}", unit="slice"):
            hu = patient["hu"][z].astype(np.float32)
            hard = patient["organ"][z] > 0
            real = patient["lesion"][z] > 0 if "lesion" in patient else np.zeros(hu.shape, bool)
            variants = [(hu, real, [])]
            if not real.any():  # lesions are inserted only beside no real one
                label = lung_label(patient, z)
                ins_hu, ins_mask, what = insert_lesions(vrng, hu, sp, int(vrng.choice([1, 2, 3])), None,
                                                        lung_label=label, organ=patient["organ"][z])
                if what:
                    variants.append((ins_hu, ins_mask, what))
            for v_hu, v_mask, w in variants:
                x, y, h = network_view(v_hu, sp, v_mask, hard & ~v_mask)
                VX.append(x.astype(np.float16))
                VY.append(y)
                VH.append(h)
                vmeta.append({"patient": name, "z": z, "lesions": [i.__dict__ for i in w]})
                native["hu"].append(np.round(v_hu).astype(np.int16))
                native["mask"].append(v_mask)
                native["spacing"].append(sp)
                native["patient"].append(name)
                native["z"].append(z)
                native["inserted"].append(len(w))
    np.savez(args.out / "val.npz", x=np.stack(VX), y=np.stack(VY), hard=np.stack(VH))
    np.savez_compressed(args.out / "val_real.npz", hu=np.stack(native["hu"]), mask=np.stack(native["mask"]),
                        spacing=np.array(native["spacing"], np.float32), patient=np.array(native["patient"]),
                        z=np.array(native["z"]), inserted=np.array(native["inserted"]))
    (args.out / "val.json").write_text(json.dumps({
        "seed": VAL_SEED, "count": len(VX), "patients": list(VAL_PATIENTS),
        "lesion_slices": int(sum(bool(y.any()) for y in VY)),
        "lesions": int(sum(len(mm["lesions"]) for mm in vmeta)), "slices": vmeta,
        "sources": {k: sources[k] for k in VAL_PATIENTS}}, indent=1))
    _, _, _, gmeta, ghu, gmask = generated(GEN_VAL_SEED, args.generated_val)
    np.savez_compressed(args.out / "gen_val.npz", hu=np.stack(ghu), mask=np.stack(gmask))
    (args.out / "gen_val.json").write_text(json.dumps({"seed": GEN_VAL_SEED, "count": args.generated_val,
                                                       "spacing_mm": GEN_SPACING_MM}))
    print(json.dumps({k: v for k, v in info.items() if k != "sources"}))


if __name__ == "__main__":
    main()
