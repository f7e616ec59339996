"""Security-metrics reports (`medshield report`): what the protected output looks like to an analyst.

`analysis` measures one image or a set (NPCR/UACI over one-pixel changes, cipher-body statistics, marking
fidelity, restoration); `image_set` assembles the default set of real and generated images; `plots` draws the
figures; `markdown` writes the tables; `write_report` below puts JSON, Markdown and figures in one folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medshield_tools.security_report.analysis import ALPHA, ImageReport
from medshield_tools.security_report.markdown import markdown
from medshield_tools.security_report.plots import write_plots


def write_report(
    reports: Sequence[ImageReport],
    out_dir: Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    plots: bool = True,
    prefix: str = "",
) -> list[Path]:
    """`{prefix}report.json`, `{prefix}report.md` and the PNGs in `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(reports, out_dir, prefix) if plots else []
    json_path = out_dir / f"{prefix}report.json"
    json_path.write_text(
        json.dumps(
            {"title": title, "notes": list(notes), "alpha": ALPHA, "images": [r.as_dict() for r in reports]}, indent=1
        )
        + "\n",
        encoding="utf-8",
    )
    md_path = out_dir / f"{prefix}report.md"
    md_path.write_text(markdown(reports, title=title, plots=pngs, notes=notes), encoding="utf-8")
    return [json_path, md_path, *pngs]
