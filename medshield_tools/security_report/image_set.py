"""The report's image set: real CT slices wrapped as DICOM and as an 8-bit PNG, pydicom's CT_small.dcm, and
generated slices at 8 and 16 bits, each with its reference lesion mask where one exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.stego.carriers import DEFAULT_CARRIER_RULE


@dataclass(frozen=True)
class ReportInput:
    name: str
    data: bytes
    mask: np.ndarray | None
    origin: str
    carrier_rule: str = DEFAULT_CARRIER_RULE


def default_image_set(quick: bool = False) -> list[ReportInput]:
    """Real CT (lung1 slices wrapped as DICOM, 16-bit, and one 8-bit windowed PNG), pydicom's CT_small.dcm,
    and generated slices at 8 and 16 bits. `quick` keeps one of each kind, at small sizes."""
    from medshield_tools.bench import images

    out: list[ReportInput] = []
    try:
        volume, masks = images.load_lung1()
        slices = (33,) if quick else (10, 20, 32, 33, 34, 44)
        for z in slices:
            hu, mask = volume[z].astype(np.float32), masks[z]
            if quick:
                hu, mask = images.resample(hu, mask, 128)
            stored = images.hu_to_stored(hu, 16)
            data = images.wrap_dicom(stored, hu_intercept=-images.HU_OFFSET, uid_seed=z, description=f"lung1 slice {z}")
            out.append(ReportInput(f"lung1_z{z}_dicom16", data, mask, f"real CT (lung1.npz) slice {z}, DICOM 16-bit"))
        hu, mask = volume[33].astype(np.float32), masks[33]
        if quick:
            hu, mask = images.resample(hu, mask, 128)
        out.append(
            ReportInput(
                "lung1_z33_png8",
                images.encode_png(images.hu_to_stored(hu, 8)),
                mask,
                "real CT slice 33, windowed 8-bit PNG",
            )
        )
    except FileNotFoundError:
        pass
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
        if path:
            data = Path(str(path)).read_bytes()
            out.append(
                ReportInput(
                    "pydicom_CT_small",
                    data,
                    None,
                    "pydicom CT_small.dcm (real CT, 128², signed 16-bit); no reference mask: DS-Net's where available; "
                    "cropped around the spine with no air around the body, so hidden with the paper's carrier rule",
                    "non-lesion",
                )
            )
    except ImportError:
        pass
    side = 128 if quick else 512
    for seed in (1,) if quick else (1, 2):
        hu, mask = images.phantom_slice(side, seed)
        out.append(
            ReportInput(
                f"phantom{seed}_png8",
                images.encode_png(images.hu_to_stored(hu, 8)),
                mask,
                f"generated slice (seed {seed}), 8-bit PNG",
            )
        )
        data = images.wrap_dicom(images.hu_to_stored(hu, 16), hu_intercept=-images.HU_OFFSET, uid_seed=1000 + seed)
        out.append(ReportInput(f"phantom{seed}_dicom16", data, mask, f"generated slice (seed {seed}), DICOM 16-bit"))
    return out
