"""ONNX Runtime sends nothing home: serving a model writes no telemetry cache or device id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SERVE = """
from gateway.inference import _ort
import onnxruntime
session = onnxruntime.InferenceSession("models/dsnet/dsnet.onnx", providers=["CPUExecutionProvider"])
del session
"""


def test_serving_a_model_leaves_no_telemetry_on_disk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    subprocess.run([sys.executable, "-c", SERVE], cwd=REPO, env=env, check=True, timeout=120)
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
