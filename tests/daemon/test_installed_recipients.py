"""The daemon encrypts to cards an administrator installed with `medshield recipients add`, not only to the
cards named in its configuration."""

from __future__ import annotations

import os

import numpy as np
import pyotp
import pytest

from gateway.config import parse_config
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import generate_recipient
from gateway.daemon import pipeline_protect_fn
from gateway.errors import ConfigError
from gateway.pipeline import open_
from gateway.recipients_store import ADMIN_SECRET, add_card
from gateway.rng import SeededRandom
from medshield_tools.scanner_sim import dicom_from_hu


def _config(state_dir, recipients=()):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "gateway": {"device_id": "gw-test", "state_dir": str(state_dir)},
            "protection": {"recipients": list(recipients)},
        },
        environ={},
    )


def test_installed_card_is_used_and_none_at_all_is_a_config_error(tmp_path, shared_data):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(ConfigError, match="recipients"):
        pipeline_protect_fn(_config(state))

    secret = pyotp.random_base32()
    fd = os.open(state / ADMIN_SECRET, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, secret.encode())
    os.close(fd)
    private_key, card = generate_recipient("oncology", SeededRandom(b"installed"))
    card.save(tmp_path / "oncology.card")
    add_card(state, tmp_path / "oncology.card", pyotp.TOTP(secret).now())

    protect = pipeline_protect_fn(_config(state))
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        data = dicom_from_hu(npz["image_hu"][20], instance=1)
    (result,) = protect(data, message_id="6f1c2a4e-7d11-4a57-9d55-3c0b8e2f4a10", source={"topic": "t"})
    # The daemon's device key (created in the state directory) signed it.
    pinned = TrustedGateways([GatewayKey.load(state / "ledger.key", "gw-test").card])
    assert open_(result.envelope, private_key, gateways=pinned, restore_original=True).original == data


def test_dropped_in_card_is_not_a_recipient_and_the_daemon_logs_it(tmp_path):  # type: ignore[no-untyped-def]
    """The attack: a card file copied into the directory, without the admin's code, became a recipient."""
    from structlog.testing import capture_logs

    from gateway.daemon.protect import recipient_cards
    from gateway.recipients_store import recipients_dir

    state = tmp_path / "state"
    recipients_dir(state).mkdir(parents=True)
    _, mallory = generate_recipient("mallory", SeededRandom(b"mallory"))
    mallory.save(recipients_dir(state) / "mallory.card")
    _, configured = generate_recipient("radiology", SeededRandom(b"configured"))
    configured.save(tmp_path / "radiology.card")
    with capture_logs() as logs:
        cards = recipient_cards(_config(state, [tmp_path / "radiology.card"]))
    assert [c.name for c in cards] == ["radiology"]
    assert [e.get("file") for e in logs if e["event"] == "recipient_card_not_authorised"] == ["mallory.card"]
    with pytest.raises(ConfigError, match="recipients"):
        pipeline_protect_fn(_config(state))  # the dropped-in card alone: no recipient at all
