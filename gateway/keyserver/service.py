"""The key-release service's decisions and its durable state (SQLite), with no network code.

What it holds per account: the TOTP secret (the authenticator app holds the other copy; nobody else), the
service's share of K_secret, and the biometric verifier `bio_key = HKDF(R, "medshield/v2/keyserver/bio-key")`
registered at enrolment. It hands out the share only when one request carries both

- a TOTP code valid now (±1 step) whose step is newer than every step accepted or refused before (so a code,
  once seen, never works again, whatever the outcome), and
- `proof = HMAC(bio_key, "medshield/v2/keyserver/release" ‖ account ‖ code ‖ nonce)`, which only a client that
  reproduced R from fresh captures (and the profile's helper data) can compute.

What the service can and cannot know. It learns, per request, whether the client held R; so every failed
biometric match that reaches it counts towards the lock-out exactly like a wrong code. It cannot see the
captures, so it cannot tell a live finger from a replayed capture or template, and it cannot see offline work:
whoever holds K_secret (profile + passphrase + the service's share or the recovery key) can test guesses of R
against the public recipient card without asking it. Guesses that need the share (everyone else) go through
here, at most `max_failures` per lock-out, with lock-outs that double.

Rate limits (in memory, per account and per client address) cap the request rate before any check runs;
replay and lock-out state are durable (SQLite, WAL, synchronous=FULL; each decision is one IMMEDIATE
transaction, so two concurrent requests cannot both spend one code). Every decision is appended to an audit
log (JSON lines, 0600, fsynced): time, event, account, outcome, reason, client address; never a code, share,
proof, key or secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto.kdf import hkdf
from gateway.errors import AdminError
from gateway.otp import generate_secret, match_step
from gateway.rng import Clock, RandomSource, system_clock, system_random

SHARE_BYTES = 32
BIO_KEY_BYTES = 32
NONCE_BYTES = 16
_NAME_MAX = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    totp_secret TEXT NOT NULL,
    enrol_token_hash BLOB,
    share BLOB,
    bio_key BLOB,
    last_step INTEGER NOT NULL DEFAULT -1,
    failures INTEGER NOT NULL DEFAULT 0,
    lockouts INTEGER NOT NULL DEFAULT 0,
    locked_until_ns INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL
)
"""


def bio_key(r: bytes) -> bytes:
    """The verifier a client registers at enrolment, derived from the stretched biometric secret R."""
    return hkdf(r, salt=b"", info=b"medshield/v2/keyserver/bio-key", length=BIO_KEY_BYTES)


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def release_proof(key: bytes, account: str, code: str, nonce: bytes) -> bytes:
    """What a release request carries to show the client reproduced R (see module doc)."""
    return hmac.digest(key, b"medshield/v2/keyserver/release" + _lp(account.encode()) + _lp(code.strip().encode())
                       + _lp(nonce), "sha256")


def share_pad(key: bytes, account: str, nonce: bytes) -> bytes:
    """The one-time pad the share travels under (inside TLS): only a holder of R can remove it."""
    return hkdf(key, salt=nonce, info=b"medshield/v2/keyserver/share-wrap" + _lp(account.encode()),
                length=SHARE_BYTES)


def check_account_name(name: str) -> str:
    if not (1 <= len(name) <= _NAME_MAX) or not all(c.isalnum() or c in "-_." for c in name) or name[0] == ".":
        raise AdminError("bad_name", "account name: 1-64 letters, digits, '-', '_' or '.'")
    return name


@dataclass(frozen=True)
class Policy:
    """Limits: consecutive failures before a lock-out, its first length (doubling each time, capped), and the
    most requests per minute from one account or one client address."""

    max_failures: int = 5
    lockout_s: int = 900
    max_lockout_s: int = 24 * 3600
    per_account_per_min: int = 10
    per_address_per_min: int = 30
    window: int = 1


@dataclass(frozen=True)
class NewAccount:
    """What `add_account` hands the administrator once: the TOTP secret (for the user's authenticator app
    only) and the one-time enrolment token (for the user's `medshield enroll`)."""

    name: str
    totp_secret: str
    enrol_token: str


class _RateLimiter:
    def __init__(self, per_min: int) -> None:
        self._per_min = per_min
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now_s: float) -> bool:
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now_s - 60:
                q.popleft()
            if len(q) >= self._per_min:
                return False
            q.append(now_s)
            if len(self._hits) > 100_000:  # bounded memory under a flood of distinct keys
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now_s - 60}
            return True


class KeyService:
    """Accounts, enrolment and release decisions over `state_dir/keyserver.db` + `state_dir/audit.jsonl`."""

    def __init__(self, state_dir: Path, *, policy: Policy = Policy(), clock: Clock = system_clock,
                 rng: RandomSource = system_random) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.policy = policy
        self._clock = clock
        self._rng = rng
        self._db_path = self.state_dir / "keyserver.db"
        self._audit_path = self.state_dir / "audit.jsonl"
        for p in (self._db_path, self._audit_path):
            if not p.exists():
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))
        self._local = threading.local()
        self._audit_lock = threading.Lock()
        with self._db() as db:
            db.execute(_SCHEMA)
        self._per_account = _RateLimiter(policy.per_account_per_min)
        self._per_address = _RateLimiter(policy.per_address_per_min)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._db_path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def _audit(self, event: str, account: str, outcome: str, reason: str, address: str = "") -> None:
        rec = {"t_ns": self._clock(), "event": event, "account": account, "outcome": outcome, "reason": reason,
               "address": address}
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        with self._audit_lock:
            fd = os.open(self._audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    # --- administration -------------------------------------------------------------------------------------

    def add_account(self, name: str) -> NewAccount:
        """Create an account with a fresh TOTP secret and one-time enrolment token (AdminError if it exists)."""
        check_account_name(name)
        secret = generate_secret(self._rng)
        token = self._rng(20).hex()
        db = self._db()
        try:
            db.execute("INSERT INTO accounts (name, totp_secret, enrol_token_hash, created_ns) VALUES (?, ?, ?, ?)",
                       (name, secret, hashlib.sha256(token.encode()).digest(), self._clock()))
        except sqlite3.IntegrityError:
            raise AdminError("account_exists", f"account {name} already exists") from None
        self._audit("add_account", name, "ok", "")
        return NewAccount(name, secret, token)

    def unlock(self, name: str) -> None:
        """Clear an account's failure counter and lock-out (an administrator's decision, audited)."""
        cur = self._db().execute("UPDATE accounts SET failures = 0, lockouts = 0, locked_until_ns = 0 WHERE name = ?",
                                 (name,))
        if cur.rowcount != 1:
            raise AdminError("no_account", f"no account {name}")
        self._audit("unlock", name, "ok", "")

    # --- client requests ------------------------------------------------------------------------------------

    def enrol(self, name: str, token: str, share: bytes, verifier: bytes, address: str = "") -> bool:
        """Store the client's share and biometric verifier, spending the one-time token; False if refused."""
        ok = False
        reason = "bad_request"
        if len(share) == SHARE_BYTES and len(verifier) == BIO_KEY_BYTES and isinstance(token, str):
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT enrol_token_hash FROM accounts WHERE name = ?", (name,)).fetchone()
                expected = row[0] if row and row[0] else b"\0" * 32
                given = hashlib.sha256(token.encode()).digest()
                ok = hmac.compare_digest(expected, given) and row is not None and row[0] is not None
                if ok:
                    db.execute("UPDATE accounts SET enrol_token_hash = NULL, share = ?, bio_key = ? WHERE name = ?",
                               (share, verifier, name))
                reason = "" if ok else "bad_token"
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._audit("enrol", name, "ok" if ok else "refused", reason, address)
        return ok

    def release(self, name: str, code: str, nonce: bytes, proof: bytes, address: str = "") -> bytes | None:
        """The share padded with `share_pad(bio_key, name, nonce)` if code and proof hold, else None."""
        now = self._clock()
        p = self.policy
        if not (self._per_address.allow(address, now / 1e9) and self._per_account.allow(name, now / 1e9)):
            self._audit("release", name, "refused", "rate_limited", address)
            return None
        if len(nonce) != NONCE_BYTES or len(proof) != 32 or not isinstance(code, str) or len(code) > 16:
            self._audit("release", name, "refused", "bad_request", address)
            return None
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT totp_secret, share, bio_key, last_step, failures, lockouts, locked_until_ns "
                             "FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None or row[1] is None:
                db.execute("COMMIT")
                self._audit("release", name, "refused", "no_account", address)
                return None
            secret, share, key, last_step, failures, lockouts, locked_until = row
            if now < locked_until:
                db.execute("COMMIT")
                self._audit("release", name, "refused", "locked_out", address)
                return None
            step = match_step(secret, code, now, p.window)
            proof_ok = hmac.compare_digest(release_proof(key, name, code, nonce), proof)
            if step is not None and step <= last_step:
                reason = "replayed_code"
            elif step is None:
                reason = "bad_code"
            elif not proof_ok:
                reason = "biometric_mismatch"
            else:
                reason = ""
            if step is not None:
                # A code that reached the service is spent whatever else failed.
                last_step = max(last_step, step)
            if reason:
                failures += 1
                if failures >= p.max_failures:
                    lockouts += 1
                    locked_until = now + min(p.lockout_s * (1 << min(lockouts - 1, 20)), p.max_lockout_s) * 10**9
                    failures = 0
            else:
                failures, lockouts, locked_until = 0, 0, 0
            db.execute("UPDATE accounts SET last_step = ?, failures = ?, lockouts = ?, locked_until_ns = ? "
                       "WHERE name = ?", (last_step, failures, lockouts, locked_until, name))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if reason:
            self._audit("release", name, "refused", reason + (" (locked out)" if locked_until > now else ""),
                        address)
            return None
        self._audit("release", name, "ok", "", address)
        pad = share_pad(key, name, nonce)
        return bytes(a ^ b for a, b in zip(share, pad, strict=True))

    def status(self, name: str) -> dict[str, int]:
        """Failure counter and lock-out of an account (no secrets)."""
        row = self._db().execute("SELECT failures, lockouts, locked_until_ns, share IS NOT NULL FROM accounts "
                                 "WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AdminError("no_account", f"no account {name}")
        return {"failures": row[0], "lockouts": row[1], "locked_until_ns": row[2], "enrolled": int(row[3])}
