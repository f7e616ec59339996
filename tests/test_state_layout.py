"""The state directory: the daemon writes each file where the command-line tools look for it."""

from __future__ import annotations

from pathlib import Path

from gateway.config import parse_config
from gateway.crypto.origin import GatewayKey
from gateway.recipients_store import recipients_dir
from gateway.state_layout import DEFAULT_STATE_DIR, StateLayout


def test_config_paths_are_the_layout(tmp_path: Path) -> None:
    config = parse_config({"gateway": {"device_id": "gw-1", "state_dir": str(tmp_path)}}, environ={})
    layout = StateLayout(tmp_path)
    assert config.state == layout
    assert config.spool_path == layout.spool == tmp_path / "spool.sqlite3"
    assert config.quarantine_dir == layout.quarantine == tmp_path / "quarantine"
    assert config.ledger_key_path == layout.ledger_key == tmp_path / "ledger.key"
    assert config.message_key_path == layout.message_key == tmp_path / "message-id.key"
    assert recipients_dir(tmp_path) == layout.recipients == tmp_path / "recipients"
    assert parse_config({"gateway": {"device_id": "gw-1"}}, environ={}).gateway.state_dir == DEFAULT_STATE_DIR


def test_the_public_key_lies_where_ledger_pubkey_reads_it(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    key = GatewayKey.load_or_create(layout.ledger_key, "gw-1")
    assert layout.ledger_public_key.read_text() == key.public_pem()
    key.card.save(layout.gateway_card("gw-1"))
    assert [p.name for p in tmp_path.glob("*.gateway-card")] == ["gw-1.gateway-card"]


def test_file_names_stay_what_installed_gateways_have(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    names = {
        "admin-otp.secret": layout.admin_otp_secret,
        "admin-otp.state": layout.admin_otp_state,
        "broker": layout.broker,
        "engines": layout.engines,
        "ort-trt-cache": layout.ort_trt_cache,
        "ledger.pub": layout.ledger_public_key,
    }
    assert {name: tmp_path / name for name in names} == names
