"""User accounts: lookup (with a short cache for the per-request session check) and seeding."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from dashboard.dbutil import run_db
from dashboard.security import hash_password
from storage.models import User

log = logging.getLogger("evalwatch.dashboard")


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    role: str
    display_name: str | None
    password_hash: str
    active: bool


def _row(u: User) -> UserRow:
    return UserRow(u.id, u.username, u.role, u.display_name, u.password_hash, bool(u.active))


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


def seed_users(s: Session, cfg: EvalwatchConfig) -> list[str]:
    """Create the config's users that do not exist yet (never changes existing accounts).

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
            )
        )
        created.append(uc.username)
    return created
