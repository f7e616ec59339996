"""A gateway's recipient directory: `<state_dir>/recipients/*.card` (public cards only).

Adding a card requires a valid TOTP code of the gateway's admin secret (`<state_dir>/admin-otp.secret`, 0600),
verified with replay refusal and lock-out (state in `<state_dir>/admin-otp.state`). A card is parsed and
validated (name, key id matches the public key, a valid X25519 point) before it is copied in; an existing card
of the same name is never silently replaced.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.errors import ConfigError, InputError
from gateway.files import write_atomic
from gateway.otp import OtpVerifier, read_secret_file
from gateway.rng import Clock, system_clock

log = structlog.get_logger("gateway.recipients_store")

ADMIN_SECRET = "admin-otp.secret"
ADMIN_STATE = "admin-otp.state"

if TYPE_CHECKING:
    from gateway.crypto.recipients import RecipientCard


class AdminOtpRefused(InputError):
    """The admin OTP was wrong, replayed, or the admin secret is locked out."""

    def __init__(self) -> None:
        super().__init__("admin_otp_refused", "admin OTP code refused")


def recipients_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "recipients"


def _admin_secret(state_dir: Path) -> str:
    path = Path(state_dir) / ADMIN_SECRET
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"no admin OTP secret at {path}: run `medshield otp provision admin --out {state_dir}`"
                          f" and rename it to {ADMIN_SECRET}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"{path} must not be readable by group or others (chmod 600)")
    return read_secret_file(path)


def add_card(state_dir: Path, card_path: Path, admin_code: str, *, clock: Clock = system_clock) -> Path:
    """Install a recipient card after checking the admin OTP; returns the installed path."""
    from gateway.crypto.recipients import RecipientCard

    verifier = OtpVerifier(_admin_secret(state_dir), Path(state_dir) / ADMIN_STATE, clock=clock)
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
            raise InputError("card_exists", f"a different card named {card.name} is already installed")
        return dest
    write_atomic(dest, card.to_json().encode("utf-8"), mode=0o644)  # a card is public
    log.info("recipient card added", recipient=card.name, key_id=card.key_id)
    return dest


def installed_cards(state_dir: Path) -> list[RecipientCard]:
    """Every card installed with `add_card`, sorted by name; malformed files raise ConfigError."""
    from gateway.crypto.recipients import RecipientCard

    directory = recipients_dir(state_dir)
    if not directory.is_dir():
        return []
    return sorted((RecipientCard.load(p) for p in directory.glob("*.card")), key=lambda card: card.name)


def list_cards(state_dir: Path) -> list[tuple[str, str]]:
    """(name, key_id) of every installed card, sorted by name; malformed files raise ConfigError."""
    return [(card.name, card.key_id) for card in installed_cards(state_dir)]
