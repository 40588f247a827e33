"""Login, logout, the current user, own password change."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import Ok
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.policy import ANY_USER, PUBLIC, Principal, allow_pending, client_ip, same_origin
from dashboard.security import (
    SESSION_COOKIE,
    hash_password_async,
    validate_new_password,
    verify_password_async,
)
from storage.models import User

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class MeOut(BaseModel):
    username: str
    role: str
    display_name: str | None
    csrf: str
    #: ``hub.timezone``: the UI shows every time in the hub's zone, not the browser's.
    timezone: str = "Asia/Shanghai"
    #: A seeded account must choose a new password (``POST /api/auth/password``) before any other
    #: route answers it (403 ``err.password_change_required``).
    password_change_required: bool = False


class PasswordIn(BaseModel):
    old_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Annotated[str, Field(min_length=1, max_length=256)]


@router.post("/api/auth/login", response_model=MeOut, dependencies=[Depends(PUBLIC)])
async def login(st: State, body: LoginIn, request: Request, response: Response) -> MeOut:
    """Check the password; on success set the session cookie and return the user and CSRF token.

    401 ``err.bad_credentials`` for a wrong/unknown user or password (same message and timing for
    both), 429 ``err.too_many_attempts`` while this address, or this address for this username,
    is throttled (``dashboard.security.LoginThrottle``: keyed by the username as typed, so it
    tells nothing about whether the account exists; no account is ever locked by others'
    failures).  Every attempt is audit-logged (``login`` / ``login_failed``).
    """
    ip = client_ip(request) or "?"
    if not same_origin(request):
        raise ApiError(403, "err.bad_origin")
    # Charge the address and the (address, account) pair before anything expensive: once either
    # is at its limit, further attempts (however concurrent) are refused here without argon2.
    ticket = st.throttle.reserve(ip, body.username)
    if ticket is None:
        await audit.record(st.db, body.username, "login_failed", ip=ip, details={"reason": "throttled"})
        raise ApiError(429, "err.too_many_attempts")
    delay = st.throttle.account_delay(body.username)

    def lookup(s: Session) -> tuple[int, str, bool, bool] | None:
        u = s.scalars(select(User).where(User.username == body.username)).first()
        if u is None:
            return None
        return u.id, u.password_hash, bool(u.active), bool(u.must_change_password)

    row = await run_db(st.db, lookup)
    # An unknown user is verified against a dummy hash: same work, same time.
    ok = await verify_password_async(row[1] if row else None, body.password) and row is not None and row[2]
    if delay:
        await asyncio.sleep(delay)
    if not ok:
        reason = "unknown_user" if row is None else ("inactive" if not row[2] else "bad_password")

        def failed(s: Session) -> None:
            if row is not None:  # informational (the users list shows it); never locks
                s.execute(
                    update(User)
                    .where(User.id == row[0])
                    .values(failed_logins=func.coalesce(User.failed_logins, 0) + 1)
                    .execution_options(synchronize_session=False)
                )
            audit.add(s, body.username, "login_failed", ip=ip, details={"reason": reason})

        await run_db(st.db, failed)
        raise ApiError(401, "err.bad_credentials")

    assert row is not None

    def succeed(s: Session) -> tuple[str, str | None, str]:
        u = s.get(User, row[0])
        assert u is not None
        u.failed_logins = 0
        u.locked_until = None
        audit.add(s, u.username, "login", role=u.role, ip=ip)
        return u.role, u.display_name, u.password_hash

    role, display, pw_hash = await run_db(st.db, succeed)
    st.throttle.success(ticket)
    token, sess = st.codec.issue(row[0], pw_hash)
    await st.logins.create(sess.key, row[0], ip, st.codec.max_age)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=st.codec.max_age,
        httponly=True,
        samesite="strict",
        secure=st.secure_cookies,
        path="/",
    )
    return MeOut(
        username=body.username, role=role, display_name=display, csrf=sess.csrf, timezone=st.cfg.hub.timezone,
        password_change_required=row[3],
    )


@router.post("/api/auth/logout", response_model=Ok)
async def logout(
    auditor: Audit,
    st: State,
    response: Response, me: Annotated[Principal, Depends(allow_pending(*ANY_USER))]
) -> dict[str, bool]:
    """End the session on the server (its cookie is refused from now on, its WebSocket and live
    streams are closed) and clear the cookie (audit ``logout``)."""
    await st.logins.revoke(me.session)
    await auditor("logout")
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=st.secure_cookies
    )
    return {"ok": True}


@router.get("/api/auth/me", response_model=MeOut)
async def me(
    st: State, request: Request, me: Annotated[Principal, Depends(allow_pending(*ANY_USER))]
) -> MeOut:
    """The logged-in user, the CSRF token to send as ``X-CSRF-Token`` on state changes and the
    hub's time zone (the UI displays times in it)."""
    return MeOut(
        username=me.username,
        role=me.role,
        display_name=me.display_name,
        csrf=me.csrf,
        timezone=st.cfg.hub.timezone,
        password_change_required=me.must_change,
    )


@router.post("/api/auth/password", response_model=Ok)
async def change_password(
    st: State,
    body: PasswordIn, request: Request, me: Annotated[Principal, Depends(allow_pending(*ANY_USER))]
) -> dict[str, bool]:
    """Change one's own password (old one required; throttled); every existing session of the user
    is revoked (log in again with the new one).  Clears ``password_change_required``."""
    problem = validate_new_password(body.new_password)
    if problem:
        raise ApiError(422, problem)

    ip = client_ip(request)
    # Throttled like a login (finding 6 of #12), keyed by the account whatever the address: a
    # stolen cookie cannot guess the current password at leisure.
    ticket = st.throttle.reserve(f"password-change:{me.user_id}", "password-change")
    if ticket is None:
        await audit.record(
            st.db, me.username, "password_change_failed", role=me.role, ip=ip, details={"reason": "throttled"}
        )
        raise ApiError(429, "err.too_many_attempts")

    def current(s: Session) -> str | None:
        u = s.get(User, me.user_id)
        return u.password_hash if u is not None else None

    def failed(s: Session) -> None:
        audit.add(s, me.username, "password_change_failed", role=me.role, ip=ip)

    # argon2 (verify + new hash) runs in worker threads, never on the loop nor inside a DB transaction.
    old_hash = await run_db(st.db, current)
    if old_hash is None or not await verify_password_async(old_hash, body.old_password):
        await run_db(st.db, failed)
        raise ApiError(401, "err.bad_credentials")
    new_hash = await hash_password_async(body.new_password)

    def change(s: Session) -> bool:
        u = s.get(User, me.user_id)
        if u is None or u.password_hash != old_hash:  # changed meanwhile: the old password is stale
            failed(s)
            return False
        u.password_hash = new_hash
        u.must_change_password = False
        audit.add(s, me.username, "password_change", role=me.role, ip=ip)
        return True

    if not await run_db(st.db, change):
        raise ApiError(401, "err.bad_credentials")
    st.throttle.success(ticket)
    st.users.invalidate(me.user_id)
    await st.logins.revoke_user(me.user_id)
    return {"ok": True}
