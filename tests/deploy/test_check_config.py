"""`check-config` checks the files a config names (TLS, recipient cards, the model) and names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import EXIT_USAGE, main


def _card(tmp: Path) -> Path:
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    key, _ = generate_recipient("svc", system_random)
    return save_recipient(tmp, key)[1]


def _config(tmp: Path, body: str) -> Path:
    path = tmp / "gateway.toml"
    path.write_text(f'[gateway]\ndevice_id = "gw"\nstate_dir = "{tmp / "state"}"\n' + body)
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_good_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = _config(tmp_path, f'[cloud]\nhost = "iot.example.org"\n[cloud.tls]\nca_file = "{ca}"\n'
                             f'[protection]\nrecipients = ["{_card(tmp_path)}"]\n')
    code, out = _check(path, capsys)
    assert code == 0 and out.startswith("OK: device gw"), out


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            '[cloud]\nhost = "h"\n[cloud.tls]\nca_file = "/nonexistent/ca.pem"\n',
            "cloud.tls.ca_file: /nonexistent/ca.pem: no such file",
        ),
        (
            '[inbound]\n[inbound.tls]\ncert_file = "/nonexistent/c.pem"\nkey_file = "/nonexistent/k.pem"\n',
            "inbound.tls.cert_file: /nonexistent/c.pem: no such file",
        ),
        (
            '[protection]\nrecipients = ["/nonexistent/radiology.card"]\n',
            "protection.recipients[0]: /nonexistent/radiology.card",
        ),
        (
            '[segmentation]\nmodel = "/nonexistent/dsnet.onnx"\n',
            "segmentation.model: /nonexistent/dsnet.onnx: no such file",
        ),
    ],
    ids=["cloud CA", "inbound client cert", "recipient card", "model"],
)
def test_missing_file_is_named_by_its_key(body: str, key: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(_config(tmp_path, body), capsys)
    assert code == EXIT_USAGE and key in out, out
    assert "Traceback" not in out


def test_a_file_that_is_not_a_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.card"
    bogus.write_text("{}")
    code, out = _check(_config(tmp_path, f'[protection]\nrecipients = ["{bogus}"]\n'), capsys)
    assert code == EXIT_USAGE and f"protection.recipients[0]: {bogus}: not a recipient card" in out, out


def test_a_model_that_does_not_match_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.segment import DEFAULT_MODEL

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "dsnet.onnx").write_bytes(DEFAULT_MODEL.read_bytes()[:-1] + b"\0")
    (model_dir / "manifest.json").write_bytes(DEFAULT_MODEL.with_name("manifest.json").read_bytes())
    code, out = _check(_config(tmp_path, f'[segmentation]\nmodel = "{model_dir / "dsnet.onnx"}"\n'), capsys)
    assert code == EXIT_USAGE and "segmentation.model:" in out and "sha256" in out, out
