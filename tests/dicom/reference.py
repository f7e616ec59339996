"""Real DICOM for the DICOM tests, from registry packages only, pinned by name, version and sha256.

- The compressed CT series (20 slices, 512², JPEG 2000 Lossless) in the TotalSegmentator 2.18.0 source
  distribution, `tests/reference_files/example_ct_dicom/` (see ../shared/data/README.md). Fetched once by
  `models.data.fetch.download` (pip, pinned by version and sha256) into a cache directory
  (`MEDSHIELD_FETCH_CACHE`, default ~/.cache/medshield/registry); only that folder is extracted.
- pydicom's test files (the pydicom wheel and the `pydicom-data` package), looked up by exact name so nothing
  is downloaded at test time. `pydicom-data`'s reserved `693_*` files are never used.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

TOTALSEG_NAME = "totalsegmentator"
TOTALSEG_VERSION = "2.18.0"
TOTALSEG_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
TOTALSEG_SERIES = "tests/reference_files/example_ct_dicom/"

# One real file per accepted transfer syntax (more where a syntax has single- and multi-frame files).
PYDICOM_FILES = {
    "1.2.840.10008.1.2": ["MR_small_implicit.dcm"],
    "1.2.840.10008.1.2.1": ["CT_small.dcm", "eCT_Supplemental.dcm", "emri_small.dcm"],
    "1.2.840.10008.1.2.1.99": ["image_dfl.dcm"],
    "1.2.840.10008.1.2.2": ["MR_small_bigendian.dcm", "emri_small_big_endian.dcm"],
    "1.2.840.10008.1.2.5": ["MR_small_RLE.dcm", "emri_small_RLE.dcm"],
    "1.2.840.10008.1.2.4.57": [],
    "1.2.840.10008.1.2.4.70": ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"],
    "1.2.840.10008.1.2.4.80": ["MR_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"],
    "1.2.840.10008.1.2.4.81": [],
    "1.2.840.10008.1.2.4.90": ["MR_small_jp2klossless.dcm", "explicit_VR-UN.dcm", "emri_small_jpeg_2k_lossless.dcm"],
    "1.2.840.10008.1.2.4.91": ["JPEG2000.dcm", "MR2_J2KI.dcm"],
    "1.2.840.10008.1.2.4.50": [],
    "1.2.840.10008.1.2.4.51": [],
}
"""Syntaxes with no list entry have no usable real file there: pydicom's JPEG-LS Near-Lossless files are
50×10, too small to carry the hidden payload; it ships no monochrome Process 14 or Baseline file, and its
JPEG Extended files have 12-bit samples, which the gateway refuses. `DCMTK_ENCODED` covers those syntaxes."""

DCMTK_ENCODED: dict[str, list[tuple[str, str, list[list[str]]]]] = {
    "1.2.840.10008.1.2.4.57": [
        ("CT_small.jpeg-p14.dcm", "CT_small.dcm", [["dcmcjpeg", "+el", "+sv", "7"]]),
        ("eCT_Supplemental.jpeg-p14.dcm", "eCT_Supplemental.dcm", [["dcmcjpeg", "+el", "+sv", "7"]]),
    ],
    "1.2.840.10008.1.2.4.81": [
        ("eCT_Supplemental.jls-near.dcm", "eCT_Supplemental.dcm", [["dcmcjpls", "+en", "+md", "2"]]),
        ("emri_small.jls-near.dcm", "emri_small.dcm", [["dcmcjpls", "+en", "+md", "2"]]),
    ],
    "1.2.840.10008.1.2.4.50": [
        ("P14SV1_8b.jpeg-baseline.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", [["dcmdjpeg"], ["dcmcjpeg", "+eb"]]),
    ],
    "1.2.840.10008.1.2.4.51": [
        ("P14SV1_8b.jpeg-extended.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", [["dcmdjpeg"], ["dcmcjpeg", "+ee"]]),
    ],
}
"""Real pixels in the syntaxes of no usable pydicom file, encoded by dcmtk's own encoders (Debian `dcmtk`):
syntax -> [(file name, pydicom source file, commands)]; each command runs as `command input output`."""


def dcmtk_encode(directory: Path) -> dict[str, Path]:
    """Every `DCMTK_ENCODED` file, written under `directory` (file name -> path)."""
    import shutil
    import subprocess

    out: dict[str, Path] = {}
    directory.mkdir(parents=True, exist_ok=True)
    for cases in DCMTK_ENCODED.values():
        for name, source, commands in cases:
            current = pydicom_file(source)
            for step, command in enumerate(commands):
                tool = shutil.which(command[0])
                if tool is None:
                    raise FileNotFoundError(f"{command[0]} is not installed (`make test` installs dcmtk)")
                target = directory / (name if step == len(commands) - 1 else f"{name}.step{step}")
                subprocess.run([tool, *command[1:], str(current), str(target)], check=True, capture_output=True,
                               timeout=120)
                current = target
            out[name] = current
    return out


def pydicom_file(name: str) -> Path:
    """A pydicom (or pydicom-data) test file by exact name; never a reserved `693_*` file."""
    from pydicom.data import get_testdata_file

    if name.startswith("693_"):
        raise ValueError("pydicom-data's 693_* files are reserved for independent evaluation")
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(name)
    return Path(str(path))


def cache_dir() -> Path:
    return Path(os.environ.get("MEDSHIELD_FETCH_CACHE", Path.home() / ".cache" / "medshield" / "registry"))


def totalsegmentator_sdist() -> Path:
    """The pinned sdist, through the training data's fetch step (pip download once, sha256 checked)."""
    from models.data.fetch import PACKAGES, download

    package = PACKAGES[TOTALSEG_NAME]
    assert (package.version, package.sha256) == (TOTALSEG_VERSION, TOTALSEG_SHA256)
    return download(package, cache_dir())


def totalsegmentator_ct_series() -> list[Path]:
    """The 20 JPEG 2000 Lossless CT slices, extracted once next to the sdist; sorted by file name."""
    target = cache_dir() / f"{TOTALSEG_NAME}-{TOTALSEG_VERSION}-example_ct_dicom"
    done = target / ".complete"
    if not done.is_file():
        tarball = totalsegmentator_sdist()
        target.mkdir(parents=True, exist_ok=True)
        prefix = f"{TOTALSEG_NAME}-{TOTALSEG_VERSION}/{TOTALSEG_SERIES}"
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix) and "/" not in member.name[len(prefix) :]:
                    source = tar.extractfile(member)
                    assert source is not None
                    (target / Path(member.name).name).write_bytes(source.read())
        done.touch()
    return sorted(p for p in target.iterdir() if p.name.startswith("CT."))
