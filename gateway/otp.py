"""Time-based one-time passwords (RFC 6238 via pyotp): provisioning and verification with persisted state.

Verification accepts the code of the current 30 s step or one step either side (clock drift), compares in
constant time against every candidate (no early exit), refuses a code whose step is not newer than the last
accepted one (replay), and locks the secret out for `lockout_s` after `max_failures` consecutive failures.
State (last accepted step, failure counter, lock-out end) is a small JSON file written atomically with mode
0600 under an exclusive file lock, so concurrent verifications cannot both accept one code.
Time is injectable (`gateway.rng.Clock`, UTC nanoseconds).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyotp

from gateway.errors import AdminError
from gateway.files import write_atomic
from gateway.rng import Clock, RandomSource, system_clock, system_random

STEP_S = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length
ISSUER = "MedShield"


def generate_secret(rng: RandomSource = system_random) -> str:
    """A new base32 TOTP secret (160 bits)."""
    return base64.b32encode(rng(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The raw key bytes of a base32 secret; AdminError when it is not valid base32 of a sane length."""
    s = secret.strip().replace(" ", "").upper()
    try:
        raw = base64.b32decode(s + "=" * (-len(s) % 8))
    except (ValueError, binascii.Error) as exc:
        raise AdminError("bad_otp_secret", "OTP secret is not valid base32") from exc
    if not 10 <= len(raw) <= 64:
        raise AdminError("bad_otp_secret", "OTP secret must be 80 to 512 bits")
    return raw


def provisioning_uri(secret: str, name: str, issuer: str = ISSUER) -> str:
    """otpauth:// URI for authenticator apps."""
    secret_bytes(secret)
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=name, issuer_name=issuer)


def qr_png(uri: str) -> bytes:
    """A QR code PNG (pure-python qrcode + pypng) of `uri`."""
    import qrcode
    from qrcode.image.pure import PyPNGImage

    img = qrcode.make(uri, image_factory=PyPNGImage)
    buf = io.BytesIO()
    img.save(buf)
    return buf.getvalue()


def read_secret_file(path: Path) -> str:
    """Read a base32 secret written by `provision` (AdminError when missing or malformed)."""
    try:
        text = Path(path).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError("bad_otp_secret", f"cannot read OTP secret file {Path(path).name}") from exc
    secret_bytes(text)
    return text


@dataclass(frozen=True)
class Provisioned:
    secret_path: Path
    uri_path: Path
    qr_path: Path


def provision(name: str, out_dir: Path, rng: RandomSource = system_random, issuer: str = ISSUER) -> Provisioned:
    """Create NAME.otp.secret, NAME.otp.uri and NAME.otp.png (all 0600: each reveals the secret)."""
    if not name or "/" in name or name.startswith("."):
        raise AdminError("bad_name", "name must be a plain non-empty file name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    secret = generate_secret(rng)
    uri = provisioning_uri(secret, name, issuer)
    paths = Provisioned(out / f"{name}.otp.secret", out / f"{name}.otp.uri", out / f"{name}.otp.png")
    write_atomic(paths.secret_path, (secret + "\n").encode())
    write_atomic(paths.uri_path, (uri + "\n").encode())
    write_atomic(paths.qr_path, qr_png(uri))
    return paths


def totp_at(secret: str, step: int) -> str:
    """The code for time step `step` (RFC 6238, HMAC-SHA1, 6 digits)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(step * STEP_S)


def match_step(secret: str, code: str, now_ns: int, window: int = 1) -> int | None:
    """The time step (within `window` steps of `now_ns`) whose code equals `code`, else None.

    Pure: no replay or lock-out state (callers keep that). Every candidate is compared in constant time, with
    no early exit, so timing does not reveal which step matched.
    """
    step_now = now_ns // (STEP_S * 1_000_000_000)
    given = code.strip().encode("ascii", "replace")
    matched = None
    for d in range(-window, window + 1):
        if hmac.compare_digest(totp_at(secret, step_now + d).encode(), given) and matched is None:
            matched = step_now + d
    return matched


@dataclass
class _State:
    last_step: int = -1
    failures: int = 0
    locked_until_ns: int = 0


class OtpVerifier:
    """Verifies codes of one secret, with replay refusal and lock-out persisted in `state_path`."""

    def __init__(self, secret: str, state_path: Path, *, clock: Clock = system_clock, window: int = 1,
                 max_failures: int = 5, lockout_s: int = 300) -> None:
        secret_bytes(secret)
        self._secret = secret
        self._state_path = Path(state_path)
        self._clock = clock
        self._window = window
        self._max_failures = max_failures
        self._lockout_ns = lockout_s * 1_000_000_000

    @staticmethod
    def state_name(secret: str) -> str:
        """A file name for this secret's state that does not reveal the secret."""
        return hashlib.sha256(b"medshield/otp-state/v1" + secret_bytes(secret)).hexdigest()[:24] + ".otpstate"

    def _load(self) -> _State:
        try:
            d = json.loads(self._state_path.read_text("utf-8"))
            return _State(int(d["last_step"]), int(d["failures"]), int(d["locked_until_ns"]))
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError, KeyError, TypeError):
            # A corrupt state file must not reopen replay or lock-out: treat as locked until repaired.
            return _State(last_step=1 << 62, failures=self._max_failures, locked_until_ns=1 << 62)

    def _save(self, st: _State) -> None:
        write_atomic(self._state_path, json.dumps(st.__dict__).encode())

    def verify(self, code: str) -> bool:
        """True if `code` is valid now, not replayed and the secret is not locked out; updates state."""
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self._state_path.with_name(self._state_path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = self._clock()
            st = self._load()
            if now < st.locked_until_ns:
                return False
            matched = match_step(self._secret, code, now, self._window)
            if matched is not None and matched > st.last_step:
                st.last_step = matched
                st.failures = 0
                st.locked_until_ns = 0
                self._save(st)
                return True
            st.failures += 1
            if st.failures >= self._max_failures:
                st.locked_until_ns = now + self._lockout_ns
                st.failures = 0
            self._save(st)
            return False
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
