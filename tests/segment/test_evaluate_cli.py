"""models.dsnet.evaluate's command line: a comparison folder without a model is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_compare_folder_without_either_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no model here")
    run = subprocess.run([sys.executable, "-m", "models.dsnet.evaluate", "--no-write", "--data", str(tmp_path),
                          "--compare", f"typo={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "holds neither dsnet.onnx nor unet.onnx" in run.stderr
