"""Passwords, session cookies, CSRF tokens and login throttling.

Contracts:

* Passwords are hashed with argon2id (``argon2-cffi`` defaults); plaintext is never stored or logged.
* The session cookie (``evalwatch_session``) is an itsdangerous-signed, timestamped blob holding the
  user id, a random CSRF token and a fingerprint of the password hash — changing a password (or
  deactivating the user) invalidates every session of that user.  It is ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/`` and ``Secure`` whenever the hub's public URL is https.
* State-changing requests (anything but GET/HEAD/OPTIONS) must carry ``X-CSRF-Token`` equal to the
  session's token (the UI reads it from ``/api/auth/me``), and, when the browser sends ``Origin``,
  it must be the hub's own origin.
* Failed logins: after ``LOCK_AFTER`` consecutive failures an account is locked for
  ``LOCK_BASE_SECONDS * 2**(n - LOCK_AFTER)`` seconds (capped at ``LOCK_MAX_SECONDS``); one client
  address gets at most ``IP_MAX_FAILURES`` failures per ``IP_WINDOW_SECONDS`` across all usernames.
  Both counters are charged *before* the password is checked, so once a limit is reached further
  attempts are refused without running argon2 (a flood cannot buy more verifications by sending
  its requests at once).
* Argon2 never runs on the event loop: ``verify_password_async`` / ``hash_password_async`` run it in
  a worker thread, at most ``ARGON2_CONCURRENCY`` at a time (the rest queue on a semaphore).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "evalwatch_session"
LANG_COOKIE = "evalwatch_lang"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE = 12 * 3600

LOCK_AFTER = 5
LOCK_BASE_SECONDS = 30.0
LOCK_MAX_SECONDS = 900.0
IP_MAX_FAILURES = 30
IP_WINDOW_SECONDS = 300.0

#: How many argon2 hashes/verifications may run at once (each ~100 ms of CPU in a worker thread).
ARGON2_CONCURRENCY = 2

_hasher = PasswordHasher()
# A hash of a random password: verifying against it when the user does not exist keeps the
# response time of "no such user" and "wrong password" alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Argon2id hash of ``password`` (a fresh salt every call)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True iff ``password`` matches ``password_hash``; constant-ish time when the hash is None."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _argon2_slots() -> asyncio.Semaphore:
    """The running loop's semaphore bounding concurrent argon2 work (one per loop: tests run many)."""
    loop = asyncio.get_running_loop()
    sem = _slots.get(loop)
    if sem is None:
        sem = _slots[loop] = asyncio.Semaphore(ARGON2_CONCURRENCY)
    return sem


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """``verify_password`` in a worker thread, at most ``ARGON2_CONCURRENCY`` at a time."""
    async with _argon2_slots():
        return await asyncio.to_thread(verify_password, password_hash, password)


async def hash_password_async(password: str) -> str:
    """``hash_password`` in a worker thread, at most ``ARGON2_CONCURRENCY`` at a time."""
    async with _argon2_slots():
        return await asyncio.to_thread(hash_password, password)


def password_fingerprint(password_hash: str) -> str:
    """Short digest of the stored hash, embedded in sessions so a password change revokes them."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def validate_new_password(password: str) -> str | None:
    """The i18n key of the problem with a proposed password, or None when acceptable."""
    if len(password) < 10:
        return "err.password_too_short"
    if len(password) > 256:
        return "err.password_too_long"
    return None


@dataclass(frozen=True)
class SessionData:
    user_id: int
    csrf: str
    fingerprint: str
    issued_at: float


class SessionCodec:
    """Signs and checks session cookies with the hub's secret key."""

    def __init__(self, secret_key: str, max_age: int = SESSION_MAX_AGE) -> None:
        if not secret_key:
            raise ValueError("hub.secret_key must be set to sign dashboard sessions")
        self._s = URLSafeTimedSerializer(secret_key, salt="evalwatch-session-v1")
        self.max_age = max_age

    def issue(self, user_id: int, password_hash: str) -> tuple[str, SessionData]:
        data = SessionData(
            user_id=user_id,
            csrf=secrets.token_urlsafe(24),
            fingerprint=password_fingerprint(password_hash),
            issued_at=time.time(),
        )
        token = self._s.dumps({"u": data.user_id, "c": data.csrf, "f": data.fingerprint, "t": data.issued_at})
        return token, data

    def load(self, token: str | None) -> SessionData | None:
        """The session in ``token``, or None when missing, forged, malformed or expired."""
        if not token or len(token) > 4096:
            return None
        try:
            raw: Any = self._s.loads(token, max_age=self.max_age)
            return SessionData(
                user_id=int(raw["u"]),
                csrf=str(raw["c"]),
                fingerprint=str(raw["f"]),
                issued_at=float(raw["t"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def metrics_token(secret_key: str) -> str:
    """Bearer token a Prometheus scraper may use for ``/metrics`` (derived from the hub key)."""
    return hmac.new(secret_key.encode(), b"evalwatch-metrics", hashlib.sha256).hexdigest()


def lock_duration(failures: int) -> timedelta | None:
    """How long to lock an account after ``failures`` consecutive failures (None: not locked)."""
    if failures < LOCK_AFTER:
        return None
    seconds = min(LOCK_MAX_SECONDS, LOCK_BASE_SECONDS * 2 ** (failures - LOCK_AFTER))
    return timedelta(seconds=seconds)


class IpThrottle:
    """Sliding-window count of failed logins per client address (in memory, per hub process)."""

    def __init__(self, max_failures: int = IP_MAX_FAILURES, window: float = IP_WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window = window
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def _prune(self, ip: str, now: float) -> deque[float]:
        q = self._fails[ip]
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def blocked_for(self, ip: str) -> float:
        """Seconds until ``ip`` may try again (0 when not blocked)."""
        now = time.monotonic()
        q = self._prune(ip, now)
        if len(q) < self.max_failures:
            return 0.0
        return max(0.0, q[0] + self.window - now)

    def fail(self, ip: str) -> None:
        self._prune(ip, time.monotonic()).append(time.monotonic())

    def reserve(self, ip: str) -> bool:
        """Charge one attempt to ``ip`` before it is evaluated; False (nothing charged) when the
        address is already at its limit.  The charge stands as the failure unless ``success``
        clears it, so concurrent attempts cannot all slip past the check."""
        now = time.monotonic()
        q = self._prune(ip, now)
        if len(q) >= self.max_failures:
            return False
        q.append(now)
        return True

    def success(self, ip: str) -> None:
        self._fails.pop(ip, None)
