"""Origin: envelopes signed by the gateway's device key, checked against pinned gateway cards.

The attack: anyone holding a recipient's public card could seal an envelope that opened under any device id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.envelope import Sealer, open_envelope, peek, verify_origin
from gateway.crypto.origin import GatewayCard, GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.errors import ConfigError, OpenError
from gateway.rng import SeededRandom

from .conftest import GATEWAY, GATEWAYS

Keys = tuple[PrivateKey, RecipientCard]


def test_genuine_envelope_reports_verified_origin(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = make_sealer("aes-256-siv").seal(b"image").envelope
    opened = open_envelope(data, alice[0], gateways=GATEWAYS)
    assert opened.origin.pinned and opened.origin.device_id == "gw-test"
    assert opened.origin.key_id == GATEWAY.key_id
    header, origin = verify_origin(data, GATEWAYS)  # no recipient key needed
    assert origin == opened.origin and header["message_id"] == opened.header["message_id"]


def test_forgery_with_a_genuine_card_is_refused(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    # Mallory holds alice's public card and makes her own device key, claiming the pinned gateway's device id.
    mallory_gw = GatewayKey.generate("gw-test", SeededRandom(b"mallory-gateway"))
    forged = make_sealer("aes-256-siv", signer=mallory_gw).seal(b"forged image").envelope
    with pytest.raises(OpenError):
        open_envelope(forged, alice[0], gateways=GATEWAYS)
    with pytest.raises(OpenError):
        verify_origin(forged, GATEWAYS)
    # The explicit flag opens it, and says the origin is not pinned.
    opened = open_envelope(forged, alice[0], gateways=GATEWAYS, accept_unknown_origin=True)
    assert not opened.origin.pinned and opened.origin.key_id == mallory_gw.key_id


def test_forgery_that_keeps_the_genuine_public_key_is_refused(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    # Header names the pinned key, signature made with another: fails even with the flag.
    mallory_gw = GatewayKey.generate("gw-test", SeededRandom(b"mallory-gateway"))
    genuine = make_sealer("aes-256-siv", seed=b"g").seal(b"x").envelope
    forged = make_sealer("aes-256-siv", seed=b"f", signer=mallory_gw).seal(b"y").envelope
    spliced = forged[:-64] + genuine[-64:]
    for data in (spliced, forged[:-64] + bytes(64), forged[:-64]):
        with pytest.raises(OpenError):
            open_envelope(data, alice[0], gateways=GATEWAYS, accept_unknown_origin=True)


def test_pinned_key_under_another_device_id_is_refused(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    # The genuine key, but the card pins it to a different device: the signed device id must match.
    other_card = GatewayKey.generate("gw-other", SeededRandom(b"gateway")).card
    assert other_card.key_id == GATEWAY.key_id
    data = make_sealer("aes-256-siv").seal(b"x").envelope
    with pytest.raises(OpenError):
        open_envelope(data, alice[0], gateways=TrustedGateways([other_card]))


def test_no_pinned_cards_opens_nothing(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = make_sealer().seal(b"x").envelope
    with pytest.raises(OpenError):
        open_envelope(data, alice[0], gateways=TrustedGateways())


def test_version_1_envelopes_are_refused(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = make_sealer("aes-256-siv").seal(b"x").envelope
    old = b"MSH1" + data[4:]
    with pytest.raises(OpenError):
        open_envelope(old, alice[0], gateways=GATEWAYS, accept_unknown_origin=True)


def test_signature_covers_the_body_not_only_the_tag(make_sealer: Callable[..., Sealer], alice: Keys) -> None:
    data = make_sealer("aes-256-siv").seal(b"x" * 64).envelope
    p = peek(data)
    body = bytearray(p.body)
    body[0] ^= 1
    changed = data[: len(data) - 64 - len(p.body)] + bytes(body) + p.signature
    with pytest.raises(OpenError):
        verify_origin(changed, GATEWAYS)


def test_gateway_card_file_round_trip_and_checks(tmp_path: Path) -> None:
    path = GATEWAY.card.save(tmp_path / "gw-test.gateway-card")
    assert GatewayCard.load(path) == GATEWAY.card
    assert list(TrustedGateways.load([tmp_path])) == [GATEWAY.card]
    tampered = path.read_text().replace('"gw-test"', '"gw-evil"')
    assert GatewayCard.from_json(tampered).device_id == "gw-evil"  # a card binds a key id to its key only
    bad_id = path.read_text().replace(GATEWAY.key_id, "0" * 32)
    with pytest.raises(ConfigError):
        GatewayCard.from_json(bad_id)
    with pytest.raises(ConfigError):
        TrustedGateways([GATEWAY.card, GatewayCard.from_json(tampered)])  # one key, two devices


def test_device_key_file(tmp_path: Path) -> None:
    key = GatewayKey.load_or_create(tmp_path / "ledger.key", "gw-1")
    assert (tmp_path / "ledger.key").stat().st_mode & 0o077 == 0
    again = GatewayKey.load_or_create(tmp_path / "ledger.key", "gw-1")
    assert again.card == key.card and "PRIVATE" not in repr(again)
    (tmp_path / "ledger.key").chmod(0o644)
    with pytest.raises(ConfigError):
        GatewayKey.load(tmp_path / "ledger.key", "gw-1")
