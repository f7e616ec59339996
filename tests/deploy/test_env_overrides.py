"""Environment overrides are typed by the schema, and every error about one names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

BASE = {"gateway": {"device_id": "gw"}}


def test_values_take_the_type_of_their_field() -> None:
    config = parse_config(BASE, {
        "MEDSHIELD__GATEWAY__DEVICE_ID": "123",            # a string field stays a string (TOML would give 123)
        "MEDSHIELD__CLOUD__HOST": "2001",                  # likewise a host that looks like a number
        "MEDSHIELD__LIMITS__WORKERS": "2",
        "MEDSHIELD__SPOOL__FLUSH_TIMEOUT_S": "2.5",
        "MEDSHIELD__LEDGER__ENABLED": "false",
        "MEDSHIELD__TELEMETRY__PORT": "",                  # empty clears an optional key: no metrics port
        "MEDSHIELD__PROTECTION__RECIPIENTS": "/etc/a.card, /etc/b.card",
        "MEDSHIELD__TOPICS__INBOUND": '["site/+/ct", "site/+/mr"]',
    })
    assert config.gateway.device_id == "123"
    assert config.cloud is not None and config.cloud.host == "2001"
    assert config.limits.workers == 2 and config.spool.flush_timeout_s == 2.5
    assert config.ledger.enabled is False and config.telemetry.port is None
    assert config.protection.recipients == [Path("/etc/a.card"), Path("/etc/b.card")]
    assert config.topics.inbound == ["site/+/ct", "site/+/mr"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MEDSHIELD__LIMITS__WORKERS": "two"},
            r"limits\.workers: .*integer.* \(environment variable MEDSHIELD__LIMITS__WORKERS\)",
        ),
        (
            {"MEDSHIELD__GATEWAY__DEVICE_ID": "a b"},
            r"gateway\.device_id: .*\(environment variable MEDSHIELD__GATEWAY__DEVICE_ID\)",
        ),
        (
            {"MEDSHIELD__LIMITS__QUEUE_SISE": "3"},
            r"limits\.queue_sise: unknown key \(environment variable MEDSHIELD__LIMITS__QUEUE_SISE\)",
        ),
        ({"MEDSHIELD__CLOUD": "x"}, r"cloud: is a table; set its keys, e.g. MEDSHIELD__CLOUD__KEY"),
        ({"MEDSHIELD__LIMITS__WORKERS__MAX": "1"}, r"limits\.workers: not a table.*MEDSHIELD__LIMITS__WORKERS__MAX"),
        ({"MEDSHIELD__TOPICS__INBOUND": "[oops"}, r"topics\.inbound: not a TOML array.*MEDSHIELD__TOPICS__INBOUND"),
    ],
    ids=["not an int", "bad pattern", "unknown key", "a table", "under a scalar", "bad array"],
)
def test_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(BASE, env)


def test_errors_from_the_file_do_not_blame_the_environment() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {"gateway": {"device_id": "gw"}, "limits": {"workers": "x"}}, {"MEDSHIELD__LIMITS__QUEUE_SIZE": "4"}
        )
    assert "limits.workers" in str(exc.value) and "environment variable" not in str(exc.value)
