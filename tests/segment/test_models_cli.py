"""`medshield models list | build-engines` (the command the engine-build systemd unit runs)."""

from __future__ import annotations

import importlib.util

import pytest

from gateway.cli import main


def test_models_list_verifies_every_committed_segmentation_model(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 2
    assert "backend cpu          available" in out


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_engines_without_tensorrt_is_a_clear_configuration_error(tmp_path, capsys):
    assert main(["models", "build-engines", "--state-dir", str(tmp_path)]) == 2
    assert "tensorrt" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.gpu
def test_build_engines_builds_once_then_reuses(tmp_path, capsys):
    from gateway.inference import available_backends

    reason = available_backends()["tensorrt"]
    if reason is not None:  # a GPU machine with only ONNX Runtime's providers
        pytest.skip(f"tensorrt unavailable here: {reason}")
    assert main(["models", "build-engines", "--state-dir", str(tmp_path), "--model", "dsnet"]) == 0
    assert "dsnet: engine built" in capsys.readouterr().out
    assert main(["models", "build-engines", "--state-dir", str(tmp_path), "--model", "dsnet"]) == 0
    assert "dsnet: engine reused" in capsys.readouterr().out
