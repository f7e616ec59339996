"""Every command fails with one clear line on stderr and the documented exit code (gateway.cli), never a
traceback: a case per command, and a check that no registered command is without one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import EXIT_FAILED, EXIT_USAGE, build_parser, main

Case = Callable[[Path], list[str]]


def _card(tmp: Path) -> tuple[Path, Path]:
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    key, _card = generate_recipient("svc", system_random)
    return save_recipient(tmp, key)


def _ct(tmp: Path) -> Path:
    """A generated CT slice as DICOM (air around the body: room for the hidden payload)."""
    from medshield_tools.scanner_sim import dicom_from_hu, generated_ct

    path = tmp / "ct.dcm"
    path.write_bytes(dicom_from_hu(generated_ct(128, seed=3), instance=1))
    return path


def _envelope(tmp: Path) -> tuple[Path, Path]:
    """An envelope for `svc` and a different recipient's key."""
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    _key, card = _card(tmp)
    other, _ = generate_recipient("other", system_random)
    other_key, _ = save_recipient(tmp / "other", other)
    out = tmp / "ct.msh"
    assert (
        main(["protect", str(_ct(tmp)), "-r", str(card), "-o", str(out), "--mask", str(_mask(tmp)), *_device(tmp)]) == 0
    )
    return out, other_key


def _device(tmp: Path) -> list[str]:
    """The gateway device key options `protect` needs (the key is made by `gateway-key`)."""
    key = tmp / "gw.pem"
    if not key.exists():
        assert main(["gateway-key", "--device-id", "gw", "--key", str(key)]) == 0
    return ["--device-key", str(key), "--device-id", "gw"]


def _mask(tmp: Path) -> Path:
    import numpy as np

    path = tmp / "mask.npy"
    mask = np.zeros((128, 128), np.uint8)
    mask[60:64, 60:64] = 1
    np.save(path, mask)
    return path


# command -> [(case id, argv builder, expected exit code, text the line must contain)]
CASES: dict[str, list[tuple[str, Case, int, str]]] = {
    "keygen": [("unwritable --out", lambda t: ["keygen", "svc", "--out", "/proc/medshield"], EXIT_USAGE, "/proc")],
    "gateway-key": [
        (
            "unwritable key",
            lambda t: ["gateway-key", "--device-id", "gw", "--key", "/proc/medshield/gw.pem"],
            EXIT_USAGE,
            "/proc/medshield",
        )
    ],
    "protect": [
        (
            "missing input",
            lambda t: ["protect", str(t / "nope.dcm"), "-r", str(_card(t)[1]), "-o", str(t / "o.msh"), *_device(t)],
            EXIT_USAGE,
            "nope.dcm: No such file",
        ),
        (
            "unwritable output",
            lambda t: [
                "protect",
                str(_ct(t)),
                "-r",
                str(_card(t)[1]),
                "--mask",
                str(_mask(t)),
                "-o",
                "/proc/medshield/o.msh",
                *_device(t),
            ],
            EXIT_USAGE,
            "/proc/medshield/",
        ),
    ],
    "open": [
        (
            "no credentials",
            lambda t: ["open", str(t / "x.msh"), "-o", str(t / "x.dcm"), "--accept-unknown-origin"],
            EXIT_USAGE,
            "give --key",
        ),
        (
            "key and profile",
            lambda t: ["open", str(t / "x.msh"), "--key", "k", "--profile", "p", "-o", "o", "--accept-unknown-origin"],
            EXIT_USAGE,
            "not both",
        ),
        (
            "wrong key",
            lambda t: (
                lambda e: ["open", str(e[0]), "--key", str(e[1]), "-o", str(t / "o.dcm"), "--accept-unknown-origin"]
            )(_envelope(t)),
            EXIT_FAILED,
            "could not open envelope",
        ),
    ],
    "segment": [
        ("missing input", lambda t: ["segment", str(t / "nope.dcm"), "-o", str(t / "m.png")], EXIT_USAGE, "nope.dcm")
    ],
    "models": [
        ("no TensorRT here", lambda t: ["models", "build-engines", "--state-dir", str(t)], EXIT_USAGE, "tensorrt")
    ],
    "otp": [
        (
            "unwritable --out",
            lambda t: ["otp", "provision", "admin", "--out", "/proc/medshield"],
            EXIT_USAGE,
            "/proc/medshield",
        )
    ],
    "enroll": [
        (
            "missing captures",
            lambda t: [
                "enroll",
                "dr",
                "--fingerprint",
                str(t / "f.png"),
                "--iris",
                str(t / "i.png"),
                "--keyserver",
                "https://127.0.0.1:1",
                "--keyserver-ca",
                str(t / "ca.pem"),
                "--enrol-token",
                str(t / "tok"),
                "--device-id",
                "d",
                "--out",
                str(t),
            ],
            EXIT_USAGE,
            "f.png",
        )
    ],
    "recipients": [
        (
            "no state dir",
            lambda t: ["recipients", "list", "--state-dir", str(t / "nonexistent")],
            EXIT_USAGE,
            "nonexistent: no such directory",
        )
    ],
    "run": [("missing config", lambda t: ["run", "--config", str(t / "nope.toml")], EXIT_USAGE, "nope.toml")],
    "check-config": [("missing config", lambda t: ["check-config", str(t / "nope.toml")], EXIT_USAGE, "nope.toml")],
    "receive": [
        (
            "bad broker URL",
            lambda t: ["receive", "--broker", "http://x", "--out", str(t), "--gateways", str(t)],
            EXIT_USAGE,
            "http://x",
        )
    ],
    "demo": [("--slices without reference data", lambda t: ["demo", "--slices", "2"], EXIT_USAGE, "MEDSHIELD_SHARED")],
    "ledger": [
        (
            "missing ledger",
            lambda t: ["ledger", "verify", str(t / "l.jsonl"), "--public-key", str(t / "k.pem")],
            EXIT_USAGE,
            "l.jsonl",
        )
    ],
    "bench": [("no 'reports' extra", lambda t: ["bench", "--quick"], EXIT_USAGE, "pip install 'medshield[reports]'")],
    "keyserver": [
        (
            "missing certificate",
            lambda t: [
                "keyserver",
                "serve",
                "--state",
                str(t),
                "--cert",
                str(t / "nope.pem"),
                "--key",
                str(t / "nope.key"),
            ],
            EXIT_USAGE,
            "--cert",
        )
    ],
    "qr": [
        (
            "missing input",
            lambda t: ["qr", "encode", str(t / "nope.msh"), "-o", str(t / "codes")],
            EXIT_USAGE,
            "nope.msh",
        )
    ],
    "quarantine": [
        ("missing config", lambda t: ["quarantine", "--config", str(t / "nope.toml"), "list"], EXIT_USAGE, "nope.toml")
    ],
    "report": [
        ("missing image", lambda t: ["report", str(t / "nope.png"), "--mask", str(t / "m.npy")], EXIT_USAGE, "nope.png")
    ],
}


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_command_has_an_error_case() -> None:
    missing = set(_commands()) - set(CASES)
    assert not missing, f"add error cases for {sorted(missing)} to tests/deploy/test_cli_errors.py"


@pytest.mark.parametrize(
    ("argv_of", "code", "needle"),
    [pytest.param(argv, code, needle, id=f"{cmd}: {name}") for cmd, cases in CASES.items()
     for name, argv, code, needle in cases],
)
def test_one_line_and_exit_code(
    argv_of: Case, code: int, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDSHIELD_SHARED", str(tmp_path / "no-shared"))  # demo: no reference data
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # bench: as without the 'reports' extra
    monkeypatch.delenv("MEDSHIELD_DEBUG", raising=False)
    monkeypatch.setenv("MEDSHIELD_PROFILE_PASS", "correct horse battery staple")  # enroll: gets to its files
    argv = argv_of(tmp_path)
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medshield"), err
    assert "Traceback" not in err and needle in lines[0], err


def test_usage_errors_of_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["open"])
    assert exc.value.code == EXIT_USAGE
