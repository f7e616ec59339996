"""Configuration: strict keys named by path, environment overrides, secrets from files and systemd credentials."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.cli import check_config
from gateway.config import GatewayConfig, load_config, parse_config
from gateway.errors import ConfigError

MINIMAL = """
[gateway]
device_id = "gw-1"
state_dir = "/tmp/medshield-test"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_minimal_config_has_sane_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert config.inbound is None and config.cloud is None  # → embedded broker
    assert config.inbound_filters() == ["medshield/scanners/+/images"]
    assert config.cloud_topic == "medshield/gateways/gw-1/envelopes"
    assert config.status_topic == "medshield/gateways/gw-1/status"
    assert config.errors_topic == "medshield/gateways/gw-1/errors"
    assert config.spool_path == Path("/tmp/medshield-test/spool.sqlite3")


def test_unknown_key_is_named_by_its_path(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "\n[cloud]\nhost = 'x'\nmax_mesage_bytes = 10\n")
    with pytest.raises(ConfigError, match=r"cloud\.max_mesage_bytes: unknown key"):
        load_config(path, environ={})


def test_nested_bad_value_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "\n[protection.sbbe]\npopulation = 0\n")
    with pytest.raises(ConfigError, match=r"protection\.sbbe\.population"):
        load_config(path, environ={})


def test_missing_section_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway: Field required"):
        load_config(_write(tmp_path, "[limits]\nworkers = 2\n"), environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[gateway\n"), environ={})


def test_environment_overrides_with_types(tmp_path: Path) -> None:
    env = {
        "MEDSHIELD__LIMITS__QUEUE_SIZE": "64",
        "MEDSHIELD__CLOUD__HOST": "iot.example.org",
        "MEDSHIELD__CLOUD__PORT": "8883",
        "MEDSHIELD__TOPICS__SHARED_GROUP": "ward-a",
        "OTHER": "ignored",
    }
    config = load_config(_write(tmp_path, MINIMAL), environ=env)
    assert config.limits.queue_size == 64
    assert config.cloud is not None and config.cloud.host == "iot.example.org" and config.cloud.port == 8883
    assert config.cloud.max_message_bytes == 128 * 1024
    assert config.inbound_filters() == ["$share/ward-a/medshield/scanners/+/images"]


def test_environment_override_of_unknown_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"limits\.queue_sise: unknown key"):
        load_config(_write(tmp_path, MINIMAL), environ={"MEDSHIELD__LIMITS__QUEUE_SISE": "3"})


def test_password_comes_from_a_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "cloud.pass"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o600)
    path = _write(tmp_path, MINIMAL + f"\n[cloud]\nusername = 'gw'\npassword_file = '{secret}'\n")
    config = load_config(path, environ={})
    assert config.cloud is not None and config.cloud.password is not None
    assert config.cloud.password.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(config) and "s3cret" not in config.model_dump_json()


def test_password_from_systemd_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "inbound-password").write_text("from-systemd")
    path = _write(tmp_path, MINIMAL + "\n[inbound]\nusername = 'gw'\npassword_file = 'inbound-password'\n")
    config = load_config(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.inbound is not None and config.inbound.password is not None
    assert config.inbound.password.get_secret_value() == "from-systemd"


def test_inline_password_and_missing_secret_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cloud\.password"):
        load_config(_write(tmp_path, MINIMAL + "\n[cloud]\npassword = 'x'\n"), environ={})
    with pytest.raises(ConfigError, match=r"cloud\.password_file: cannot read"):
        load_config(_write(tmp_path, MINIMAL + "\n[cloud]\npassword_file = '/nonexistent/p'\n"), environ={})


def test_tls_needs_cert_and_key_together() -> None:
    with pytest.raises(ConfigError, match=r"inbound\.tls"):
        parse_config({"gateway": {"device_id": "g"}, "inbound": {"tls": {"cert_file": "/c.pem"}}}, environ={})


def test_shared_topic_must_not_be_spelled_inline() -> None:
    with pytest.raises(ConfigError, match=r"topics\.inbound"):
        parse_config({"gateway": {"device_id": "g"}, "topics": {"inbound": ["$share/g/a/b"]}}, environ={})


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config.main(argparse.Namespace(config=str(_write(tmp_path, MINIMAL)))) == 0
    assert capsys.readouterr().out.startswith("OK: device gw-1")
    with pytest.raises(ConfigError, match=r"gateway\.device_idd"):
        check_config.main(argparse.Namespace(config=str(_write(tmp_path, MINIMAL.replace("device_id", "device_idd")))))


def test_example_configs_in_deploy_are_valid() -> None:
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    examples = sorted(deploy.glob("*.toml"))
    assert examples, "deploy/ should ship example configurations"
    for example in examples:
        assert isinstance(load_config(example, environ={}), GatewayConfig), example


def test_the_daemon_and_medshield_protect_apply_the_same_input_limits(tmp_path: Path) -> None:
    from gateway import codecs

    # `medshield protect` decodes with codecs.DEFAULT_LIMITS; a default daemon, and the shipped
    # configuration, must quarantine exactly what it refuses and nothing it accepts.
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert config.limits.input_limits() == codecs.DEFAULT_LIMITS
    shipped = load_config(Path(__file__).resolve().parents[1] / "deploy" / "gateway.toml", environ={})
    assert shipped.limits.input_limits() == codecs.DEFAULT_LIMITS


def test_sbbe_settings_have_the_search_defaults_and_bounds() -> None:
    from gateway.crypto.sbbe import SEARCH_BOUNDS, SearchParams

    base = {"gateway": {"device_id": "gw-1"}}
    assert parse_config(base, environ={}).protection.sbbe.search_params() == SearchParams()
    for name, (low, high) in SEARCH_BOUNDS.items():
        for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            doc = dict(base, protection={"sbbe": {name: value}})
            if ok:
                assert getattr(parse_config(doc, environ={}).protection.sbbe.search_params(), name) == value
                continue
            with pytest.raises(ConfigError, match=f"protection.sbbe.{name}"):
                parse_config(doc, environ={})
            with pytest.raises(ValueError, match=name):
                SearchParams(**{name: value})


def test_workers_default_by_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """One protection worker per usable core (affinity, as containers and systemd set it), at most four; an
    explicit setting wins."""
    import os

    from gateway.config import LimitsConfig

    for cores, expected in ((1, 1), (2, 2), (3, 3), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert LimitsConfig().workers == expected
    assert LimitsConfig(workers=1).workers == 1
