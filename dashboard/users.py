"""User accounts: lookup (with a short cache for the per-request session check) and seeding."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from dashboard.dbutil import run_db
from dashboard.security import hash_password
from storage.common import utcnow
from storage.models import LoginSession, User

log = logging.getLogger("evalwatch.dashboard")


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    role: str
    display_name: str | None
    password_hash: str
    active: bool
    must_change_password: bool = False


def _row(u: User) -> UserRow:
    return UserRow(
        u.id, u.username, u.role, u.display_name, u.password_hash, bool(u.active),
        bool(u.must_change_password),
    )


class UserCache:
    """``get(user_id)`` with a ``ttl``-second cache; ``invalidate()`` after any user change."""

    def __init__(self, db: Any, ttl: float = 2.0) -> None:
        self.db = db
        self.ttl = ttl
        self._cache: dict[int, tuple[float, UserRow | None]] = {}

    async def get(self, user_id: int) -> UserRow | None:
        hit = self._cache.get(user_id)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]

        def q(s: Session) -> UserRow | None:
            u = s.get(User, user_id)
            return _row(u) if u else None

        row = await run_db(self.db, q)
        self._cache[user_id] = (now, row)
        return row

    def invalidate(self, user_id: int | None = None) -> None:
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)


Revoked = Callable[[], Awaitable[object] | None]


def session_digest(key: str) -> str:
    """What other hub nodes are told about a revoked login session: a hash of its key (the key
    is a bearer credential; it never leaves the node in a notification)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class LoginSessions:
    """Server-side dashboard sessions (``storage.models.LoginSession``; finding 5 of issue #12).

    ``active(key)`` is what every request checks (a ``ttl``-second cache of *valid* rows only, and
    the cache entry goes at once when this process revokes the row).  Open connections that
    outlive a request — the alert WebSocket, live WebRTC streams — ``watch(key, user_id, cb)``:
    ``cb`` runs as soon as the session is revoked here (logout, password change, deactivation).

    Several hub nodes (issue #14): a connection can be served by another node than the one the
    user logs out on (a live stream forwarded to the node ingesting the camera).  With a
    ``relay`` (``dashboard.notify.EventRelay``, PostgreSQL ``LISTEN``/``NOTIFY``) each revocation
    is told to the other nodes — the sessions as :func:`session_digest` (never the keys
    themselves), and the user id for "every session of the user" — and they run their watchers
    (:meth:`remote_revoked`).  After the channel reconnected (notifications may have been missed)
    :meth:`recheck` asks the database about every watched session.
    """

    def __init__(self, db: Any, ttl: float = 2.0) -> None:
        self.db = db
        self.ttl = ttl
        self._valid: dict[str, float] = {}
        self._watchers: dict[str, tuple[int, set[Revoked]]] = {}
        self.relay: Any | None = None

    async def create(self, key: str, user_id: int, ip: str | None, max_age: float) -> None:
        now = utcnow()

        def add(s: Session) -> None:
            # expired a day ago: nobody can use them any more, the audit log keeps the logins
            s.execute(delete(LoginSession).where(LoginSession.expires_at < now - timedelta(days=1)))
            s.add(LoginSession(id=key, user_id=user_id, created_at=now,
                               expires_at=now + timedelta(seconds=max_age), ip=ip))

        if len(self._valid) > 10_000:
            self._valid.clear()  # a cache: entries come back on the next request
        await run_db(self.db, add)

    async def active(self, key: str, user_id: int) -> bool:
        hit = self._valid.get(key)
        now = time.monotonic()
        if hit is not None and now - hit < self.ttl:
            return True

        def q(s: Session) -> bool:
            row = s.get(LoginSession, key)
            return (
                row is not None and row.user_id == user_id and row.revoked_at is None
                and row.expires_at > utcnow()
            )

        ok = await run_db(self.db, q)
        if ok:
            self._valid[key] = now
        else:
            self._valid.pop(key, None)
        return ok

    async def revoke(self, key: str) -> None:
        """End one session (logout)."""
        now = utcnow()

        def go(s: Session) -> None:
            s.execute(
                update(LoginSession)
                .where(LoginSession.id == key, LoginSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )

        self._valid.pop(key, None)
        await run_db(self.db, go)
        await self._notify([key])
        self._tell_others([key], None)

    async def revoke_user(self, user_id: int) -> None:
        """End every session of a user (password change, deactivation, password reset)."""
        now = utcnow()

        def go(s: Session) -> list[str]:
            keys = list(s.scalars(select(LoginSession.id).where(
                LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))))
            s.execute(
                update(LoginSession)
                .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return keys

        keys = await run_db(self.db, go)
        keys += [k for k, (uid, _cbs) in self._watchers.items() if uid == user_id]
        for k in keys:
            self._valid.pop(k, None)
        await self._notify(keys)
        self._tell_others(keys, user_id)

    def _tell_others(self, keys: list[str], user_id: int | None) -> None:
        if self.relay is not None:
            self.relay.send_revoked([session_digest(k) for k in dict.fromkeys(keys)], user_id)

    async def remote_revoked(self, digests: list[str], user_id: int | None) -> int:
        """Another node revoked these sessions (or every session of ``user_id``): forget them
        and close their connections here.  The number of sessions closed."""
        wanted = set(digests)
        keys = [k for k, (uid, _cbs) in self._watchers.items()
                if session_digest(k) in wanted or (user_id is not None and uid == user_id)]
        for k in [k for k in self._valid if session_digest(k) in wanted]:
            self._valid.pop(k, None)
        if user_id is not None:
            self._valid.clear()  # a cache: the next request asks the database
        if keys:
            log.info("closing the connections of %d session(s) revoked on another node", len(keys))
        await self._notify(keys)
        return len(keys)

    async def recheck(self) -> int:
        """Close the watched sessions the database no longer accepts (revoked or expired, maybe
        on another node while the cross-node channel was down).  The number closed."""
        watched = {k: uid for k, (uid, _cbs) in self._watchers.items()}
        if not watched:
            return 0
        now = utcnow()

        def q(s: Session) -> set[str]:
            rows = s.scalars(select(LoginSession).where(LoginSession.id.in_(list(watched))))
            return {r.id for r in rows if watched.get(r.id) == r.user_id and r.revoked_at is None
                    and r.expires_at > now}

        alive = await run_db(self.db, q)
        gone = [k for k in watched if k not in alive]
        for k in gone:
            self._valid.pop(k, None)
        await self._notify(gone)
        return len(gone)

    def watch(self, key: str, user_id: int, cb: Revoked) -> Callable[[], None]:
        """Call ``cb`` when session ``key`` is revoked; returns the function that stops watching."""
        entry = self._watchers.setdefault(key, (user_id, set()))
        entry[1].add(cb)

        def stop() -> None:
            e = self._watchers.get(key)
            if e is not None:
                e[1].discard(cb)
                if not e[1]:
                    self._watchers.pop(key, None)

        return stop

    async def _notify(self, keys: list[str]) -> None:
        for k in dict.fromkeys(keys):
            entry = self._watchers.pop(k, None)
            for cb in list(entry[1]) if entry else []:
                try:
                    res = cb()
                    if res is not None:
                        await res
                except Exception:
                    log.exception("closing a revoked session's connection failed")


def seed_users(s: Session, cfg: EvalwatchConfig) -> list[str]:
    """Create the config's users that do not exist yet (never changes existing accounts).

    With ``hub.force_password_change`` (default) they must choose a new password at first login.

    Users without a password in the config (and none generated in the secrets file) are skipped.
    Returns the usernames created.
    """
    created = []
    existing = set(s.scalars(select(User.username)))
    for uc in cfg.users:
        if uc.username in existing:
            continue
        if uc.password is None:
            log.warning("user %s has no password configured; not created", uc.username)
            continue
        s.add(
            User(
                username=uc.username,
                role=uc.role,
                display_name=uc.display_name,
                password_hash=hash_password(uc.password.get_secret_value()),
                active=True,
                failed_logins=0,
                must_change_password=cfg.hub.force_password_change,
            )
        )
        created.append(uc.username)
    return created
