"""A gateway's recipient store: `<state_dir>/recipients/*.card` (public cards) and the admin's MAC'd manifest.

Adding a card requires a valid TOTP code of the gateway's admin secret (`<state_dir>/admin-otp.secret`, 0600),
verified with replay refusal and lock-out (state in `<state_dir>/admin-otp.state`). A card is parsed and
validated (name, key id matches the public key, a valid X25519 point) before it is copied in; an existing card
of the same name is never silently replaced.

The store is authenticated: `recipients/manifest.json` lists every authorised card (name, key id, SHA-256 of
the file) under an HMAC keyed from the admin secret, and only `add_card` (after the OTP) writes it. A card
file that is not in the manifest, or differs from what it lists, is *not* a recipient: `installed_cards`
skips it and logs `recipient_card_not_authorised` (the daemon reads the store at start, so this is in its
log). A manifest whose MAC does not verify stops the daemon (ConfigError): someone changed the list. Whoever
can read the 0600 admin secret can authorise cards, as whoever knows the admin's TOTP codes can.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from gateway.crypto.kdf import hkdf
from gateway.errors import AdminError, ConfigError
from gateway.files import write_atomic
from gateway.otp import OtpVerifier, read_secret_file, secret_bytes
from gateway.rng import Clock, system_clock
from gateway.state_layout import ADMIN_SECRET, StateLayout

log = structlog.get_logger("gateway.recipients_store")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "medshield-recipients-manifest"
MANIFEST_INFO = b"medshield/v1/recipients-manifest"

if TYPE_CHECKING:
    from gateway.crypto.recipients import RecipientCard


class AdminOtpRefused(AdminError):
    """The admin OTP was wrong, replayed, or the admin secret is locked out."""

    def __init__(self) -> None:
        super().__init__("admin_otp_refused", "admin OTP code refused")


def recipients_dir(state_dir: Path) -> Path:
    return StateLayout(Path(state_dir)).recipients


def _admin_secret(state_dir: Path) -> str:
    path = StateLayout(Path(state_dir)).admin_otp_secret
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"no admin OTP secret at {path}: run `medshield otp provision admin --out {state_dir}`"
                          f" and rename it to {ADMIN_SECRET}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"{path} must not be readable by group or others (chmod 600)")
    return read_secret_file(path)


def _manifest_key(state_dir: Path) -> bytes:
    return hkdf(secret_bytes(_admin_secret(state_dir)), salt=b"", info=MANIFEST_INFO, length=32)


def _mac(key: bytes, cards: dict[str, Any]) -> str:
    body = json.dumps(cards, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, MANIFEST_INFO + body, "sha256").hexdigest()


def _read_manifest(state_dir: Path) -> dict[str, dict[str, str]]:
    """The authorised cards {name: {key_id, sha256}}; {} without a manifest; ConfigError if it is forged."""
    path = recipients_dir(state_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        cards, mac = doc["cards"], doc["mac"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(cards, dict) or not isinstance(mac, str):
            raise ValueError("format")
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not a recipients manifest") from None
    if not hmac.compare_digest(_mac(_manifest_key(state_dir), cards), mac):
        raise ConfigError(f"{path}: its MAC does not verify under the admin secret; the recipient list was changed")
    return cards


def _write_manifest(state_dir: Path, cards: dict[str, dict[str, str]]) -> None:
    doc = {"format": MANIFEST_FORMAT, "version": 1, "cards": cards, "mac": _mac(_manifest_key(state_dir), cards)}
    write_atomic(recipients_dir(state_dir) / MANIFEST, (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode(),
                 mode=0o644, sync_dir=True)


def add_card(state_dir: Path, card_path: Path, admin_code: str, *, clock: Clock = system_clock) -> Path:
    """Install and authorise a recipient card after checking the admin OTP; returns the installed path.

    Adding a card that is already installed (same name and key) authorises it again, e.g. a card from before
    the store had a manifest."""
    from gateway.crypto.recipients import RecipientCard

    verifier = OtpVerifier(_admin_secret(state_dir), StateLayout(Path(state_dir)).admin_otp_state, clock=clock)
    card = RecipientCard.load(card_path)  # ConfigError on a malformed card, before spending the OTP
    if not verifier.verify(admin_code):
        log.warning("recipient card refused: admin OTP not accepted")
        raise AdminOtpRefused()
    directory = recipients_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"{card.name}.card"
    if dest.exists():
        existing = RecipientCard.load(dest)
        if existing.key_id != card.key_id:
            raise AdminError("card_exists", f"a different card named {card.name} is already installed")
    else:
        write_atomic(dest, card.to_json().encode("utf-8"), mode=0o644)  # a card is public
    cards = _read_manifest(state_dir)
    cards[card.name] = {"key_id": card.key_id, "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()}
    _write_manifest(state_dir, cards)
    log.info("recipient card added", recipient=card.name, key_id=card.key_id)
    return dest


def installed_cards(state_dir: Path) -> list[RecipientCard]:
    """Every card the admin authorised, sorted by name. Card files the manifest does not list (or lists with
    other contents) are skipped and logged; a malformed authorised card or a forged manifest is ConfigError."""
    from gateway.crypto.recipients import RecipientCard

    directory = recipients_dir(state_dir)
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.card"))
    authorised = _read_manifest(state_dir) if files or (directory / MANIFEST).exists() else {}
    cards = []
    for path in files:
        entry = authorised.get(path.stem)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if entry is None or not hmac.compare_digest(entry["sha256"], digest):
            log.warning("recipient_card_not_authorised", file=path.name,
                        detail="not added with `medshield recipients add`; it is not a recipient")
            continue
        card = RecipientCard.load(path)
        if card.key_id != entry["key_id"]:
            raise ConfigError(f"{path}: key id differs from the authorised one")
        cards.append(card)
    return sorted(cards, key=lambda card: card.name)


def list_cards(state_dir: Path) -> list[tuple[str, str]]:
    """(name, key_id) of every authorised card, sorted by name; malformed files raise ConfigError."""
    return [(card.name, card.key_id) for card in installed_cards(state_dir)]
