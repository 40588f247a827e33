"""Passwords, session cookies, CSRF tokens and login throttling.

Contracts:

* Passwords are hashed with argon2id (``argon2-cffi`` defaults); plaintext is never stored or logged.
* The session cookie (``evalwatch_session``) is an itsdangerous-signed, timestamped blob holding a
  random session id, the user id, a random CSRF token and a fingerprint of the password hash.  The
  session id names a server-side row (``storage.models.LoginSession``, keyed by its sha256:
  :func:`session_key`), so logout, a password change or deactivating the user revokes a session
  at once (finding 5 of issue #12), not only when the cookie expires.  It is ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/`` and ``Secure`` whenever the hub's public URL is https.
* State-changing requests (anything but GET/HEAD/OPTIONS) must carry ``X-CSRF-Token`` equal to the
  session's token (the UI reads it from ``/api/auth/me``), and, when the browser sends ``Origin``,
  it must be the hub's own origin.
* Failed logins (finding 6 of issue #12): nobody can lock an account from outside.  Attempts are
  throttled per (client address, account): after ``PAIR_MAX_FAILURES`` consecutive failures that
  pair waits ``PAIR_BASE_SECONDS * 2**(n - PAIR_MAX_FAILURES)`` seconds (capped at
  ``PAIR_MAX_SECONDS``) — the same user from another address is not affected; and per address:
  at most ``IP_MAX_FAILURES`` failures per ``IP_WINDOW_SECONDS`` across all usernames.  An account
  with more than ``ACCOUNT_SLOW_AFTER`` failures in ``IP_WINDOW_SECONDS`` from all addresses only
  answers more slowly (``ACCOUNT_DELAY_SECONDS``), it is never locked.  The keys are the username
  *as typed*, whether or not the account exists, so 429 never tells a real account from an
  unknown one.  A good login clears its own pair and refunds its own charge, nothing else (the
  address keeps its failures for other accounts).  Every attempt is charged *before* the password
  is checked, so once a limit is reached further attempts are refused without running argon2 (a
  flood cannot buy more verifications by sending its requests at once).
* Argon2 never runs on the event loop: ``verify_password_async`` / ``hash_password_async`` run it in
  a worker thread, at most ``ARGON2_CONCURRENCY`` at a time (the rest queue on a semaphore).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
import weakref
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "evalwatch_session"
LANG_COOKIE = "evalwatch_lang"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE = 12 * 3600

PAIR_MAX_FAILURES = 5
PAIR_BASE_SECONDS = 30.0
PAIR_MAX_SECONDS = 900.0
IP_MAX_FAILURES = 30
IP_WINDOW_SECONDS = 300.0
ACCOUNT_SLOW_AFTER = 20
ACCOUNT_DELAY_SECONDS = 1.0

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
    #: The random session id; the server-side row is keyed by :func:`session_key` of it.
    sid: str = ""

    @property
    def key(self) -> str:
        return session_key(self.sid)


def session_key(sid: str) -> str:
    """The ``login_sessions`` row id of a session id (its sha256: a database reader learns no
    usable cookie value)."""
    return hashlib.sha256(sid.encode()).hexdigest()


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
            sid=secrets.token_urlsafe(32),
        )
        token = self._s.dumps(
            {"s": data.sid, "u": data.user_id, "c": data.csrf, "f": data.fingerprint, "t": data.issued_at}
        )
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
                sid=str(raw["s"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def metrics_token(secret_key: str) -> str:
    """Bearer token a Prometheus scraper may use for ``/metrics`` (derived from the hub key)."""
    return hmac.new(secret_key.encode(), b"evalwatch-metrics", hashlib.sha256).hexdigest()


def pair_backoff(failures: int) -> float:
    """Seconds an (address, account) pair waits after ``failures`` consecutive failures."""
    if failures < PAIR_MAX_FAILURES:
        return 0.0
    return min(PAIR_MAX_SECONDS, PAIR_BASE_SECONDS * 2 ** (failures - PAIR_MAX_FAILURES))


@dataclass
class _Pair:
    failures: int = 0
    last: float = 0.0


@dataclass(frozen=True)
class Ticket:
    """One attempt charged by :meth:`LoginThrottle.reserve` (refunded by ``success``)."""

    ip: str
    account: str
    at: float


class LoginThrottle:
    """Failed-attempt accounting per address, per (address, account) and per account, in memory
    (per hub process).  See the module docstring for the rules."""

    def __init__(
        self,
        max_failures: int = IP_MAX_FAILURES,
        window: float = IP_WINDOW_SECONDS,
        pair_max: int = PAIR_MAX_FAILURES,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.pair_max = pair_max
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._accounts: dict[str, deque[float]] = defaultdict(deque)
        self._calls = 0

    def _prune(self, q: deque[float], now: float) -> deque[float]:
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def _sweep(self, now: float) -> None:
        """Forget stale entries now and then (memory stays bounded by the recent attempts)."""
        self._calls += 1
        if self._calls % 1000:
            return
        for d in (self._fails, self._accounts):
            for k in [k for k, q in d.items() if not self._prune(q, now)]:
                del d[k]
        for pk in [k for k, p in self._pairs.items() if now - p.last > PAIR_MAX_SECONDS + self.window]:
            del self._pairs[pk]

    def _pair_wait(self, ip: str, account: str, now: float) -> float:
        p = self._pairs.get((ip, account))
        if p is None or p.failures < self.pair_max:
            return 0.0
        base = PAIR_BASE_SECONDS * 2 ** (p.failures - self.pair_max)
        return max(0.0, p.last + min(PAIR_MAX_SECONDS, base) - now)

    def blocked_for(self, ip: str, account: str | None = None) -> float:
        """Seconds until ``ip`` (for ``account``) may try again (0 when not blocked)."""
        now = time.monotonic()
        q = self._prune(self._fails[ip], now)
        wait = max(0.0, q[0] + self.window - now) if len(q) >= self.max_failures else 0.0
        if account is not None:
            wait = max(wait, self._pair_wait(ip, account, now))
        return wait

    def reserve(self, ip: str, account: str) -> Ticket | None:
        """Charge one attempt to ``ip`` and to (``ip``, ``account``) before it is evaluated; None
        (nothing charged) when either is at its limit.  The charge stands as the failure unless
        :meth:`success` refunds it, so concurrent attempts cannot all slip past the check."""
        now = time.monotonic()
        self._sweep(now)
        q = self._prune(self._fails[ip], now)
        if len(q) >= self.max_failures or self._pair_wait(ip, account, now) > 0:
            return None
        q.append(now)
        p = self._pairs.setdefault((ip, account), _Pair())
        p.failures += 1
        p.last = now
        self._prune(self._accounts[account], now).append(now)
        return Ticket(ip, account, now)

    def account_delay(self, account: str) -> float:
        """Extra seconds to answer an attempt on ``account`` (many failures from everywhere):
        a slow-down, never a lock."""
        q = self._prune(self._accounts[account], time.monotonic())
        return ACCOUNT_DELAY_SECONDS if len(q) > ACCOUNT_SLOW_AFTER else 0.0

    def success(self, ticket: Ticket) -> None:
        """The attempt of ``ticket`` succeeded: refund its charge and clear its own pair.  The
        address keeps its other failures (a good login for one account does not buy attempts on
        others)."""
        with contextlib.suppress(ValueError):
            self._fails[ticket.ip].remove(ticket.at)
        with contextlib.suppress(ValueError):
            self._accounts[ticket.account].remove(ticket.at)
        self._pairs.pop((ticket.ip, ticket.account), None)

    def clear_account(self, account: str) -> None:
        """An admin unlocked ``account``: forget its pairs' and its own failures."""
        for pk in [k for k in self._pairs if k[1] == account]:
            del self._pairs[pk]
        self._accounts.pop(account, None)
