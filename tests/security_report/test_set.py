"""The image-set report: real CT wrapped as DICOM, pydicom's CT_small, generated slices; Markdown + PNG."""

from __future__ import annotations

from pathlib import Path

from medshield_tools.security_report import write_report
from medshield_tools.security_report.analysis import analyse_set
from medshield_tools.security_report.image_set import default_image_set

SEED = bytes(range(16))


def test_quick_set_covers_every_kind_and_writes_markdown(tmp_path: Path, shared_data: Path) -> None:
    inputs = default_image_set(quick=True)
    names = [i.name for i in inputs]
    assert any(n.startswith("lung1_") and n.endswith("dicom16") for n in names)
    assert "lung1_z33_png8" in names and "pydicom_CT_small" in names
    assert any(n.startswith("phantom") and n.endswith("png8") for n in names)
    assert any(n.startswith("phantom") and n.endswith("dicom16") for n in names)

    reports = analyse_set(inputs, suite="aes-256-siv", seed=SEED, changes=2)
    assert [r.name for r in reports] == names
    for r in reports:
        assert len(r.differentials) == 2
        assert r.restored_pixels_equal and r.ber_payload == 0.0
        # No segmenter here: lung1 slices and phantoms carry their reference masks; CT_small has none.
        expected = "none (no reference, no model)" if r.name == "pydicom_CT_small" else "reference"
        assert r.mask_source == expected, r.name
    written = write_report(reports, tmp_path, title="set", notes=[f"{i.name}: {i.origin}" for i in inputs])
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for section in ("## Differential (NPCR / UACI)", "## Cipher body statistics", "## Marking fidelity", "## Figures"):
        assert section in md
    assert all(name in md for name in names)
    assert (tmp_path / "npcr_uaci.png") in written and (tmp_path / "histograms.png") in written
