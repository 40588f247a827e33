"""Administration: users, the audit log, the (secret-free) configuration."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.alerts import jsonable
from dashboard.dbutil import run_db
from dashboard.defs import AuditEntry, AuditList, ConfigView, UserList, UserOut, media
from dashboard.deps import State
from dashboard.errors import ApiError
from dashboard.notifications import mask_url
from dashboard.policy import Principal, allow, client_ip
from dashboard.security import hash_password_async, validate_new_password
from dashboard.strings import load_dictionary
from sessions.credit import text_cell
from storage.common import as_utc, utcnow
from storage.db import masked
from storage.models import AuditLog, User

router = APIRouter(tags=["admin"])

RoleName = Literal["admin", "supervisor", "auditor", "observer"]
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"


def _user(u: User) -> UserOut:
    return UserOut(
        username=u.username, display_name=u.display_name, role=u.role, active=bool(u.active),
        locked_until=u.locked_until, failed_logins=u.failed_logins, created_at=u.created_at,
    )


@router.get("/api/users", response_model=UserList)
async def list_users(
    st: State, request: Request, me: Annotated[Principal, Depends(allow("admin"))]
) -> UserList:
    users = await run_db(st.db, lambda s: [_user(u) for u in s.scalars(select(User).order_by(User.username))])
    return UserList(users=users)


class UserIn(BaseModel):
    username: Annotated[str, Field(pattern=USERNAME)]
    role: RoleName
    display_name: Annotated[str | None, Field(max_length=200)] = None
    password: Annotated[str, Field(max_length=256)]


class UserPatch(BaseModel):
    role: RoleName | None = None
    display_name: Annotated[str | None, Field(max_length=200)] = None
    active: bool | None = None
    password: Annotated[str | None, Field(max_length=256)] = None
    unlock: bool = False


@router.post("/api/users", status_code=201, response_model=UserOut)
async def create_user(
    st: State,
    body: UserIn, request: Request, me: Annotated[Principal, Depends(allow("admin"))]
) -> UserOut:
    """Create a user (409 ``err.user_exists``; 422 for a weak password).  With
    ``hub.force_password_change`` the user must choose their own password at first login (the
    admin knows this one)."""
    problem = validate_new_password(body.password)
    if problem:
        raise ApiError(422, problem)
    pw = await hash_password_async(body.password)

    def create(s: Session) -> UserOut | None:
        if s.scalars(select(User).where(User.username == body.username)).first():
            return None
        u = User(
            username=body.username,
            role=body.role,
            display_name=body.display_name,
            password_hash=pw,
            active=True,
            failed_logins=0,
            must_change_password=st.cfg.hub.force_password_change,
        )
        s.add(u)
        audit.add(
            s,
            me.username,
            "user_create",
            role=me.role,
            target=f"user:{body.username}",
            ip=client_ip(request),
            details={"role": body.role},
        )
        s.flush()
        return _user(u)

    out = await run_db(st.db, create)
    if out is None:
        raise ApiError(409, "err.user_exists")
    return out


@router.patch("/api/users/{username}", response_model=UserOut)
async def update_user(
    st: State,
    username: str, body: UserPatch, request: Request, me: Annotated[Principal, Depends(allow("admin"))]
) -> UserOut:
    """Change role / name / active flag / password, or unlock.  Admins cannot demote or
    deactivate themselves (so the hub always keeps an admin)."""
    if username == me.username and ((body.role and body.role != me.role) or body.active is False):
        raise ApiError(409, "err.cannot_demote_self")
    if body.password is not None:
        problem = validate_new_password(body.password)
        if problem:
            raise ApiError(422, problem)
    pw = await hash_password_async(body.password) if body.password is not None else None

    def update(s: Session) -> tuple[UserOut, int] | None:
        u = s.scalars(select(User).where(User.username == username)).first()
        if u is None:
            return None
        changed = []
        if body.role is not None:
            u.role = body.role
            changed.append("role")
        if body.display_name is not None:
            u.display_name = body.display_name
            changed.append("display_name")
        if body.active is not None:
            u.active = body.active
            changed.append("active")
        if pw is not None:
            u.password_hash = pw
            # the admin knows it: the user chooses their own at next login (an admin resetting
            # their own password has just chosen it)
            u.must_change_password = st.cfg.hub.force_password_change and u.id != me.user_id
            changed.append("password")
        if body.unlock:
            u.failed_logins, u.locked_until = 0, None
            changed.append("unlock")
        audit.add(
            s,
            me.username,
            "user_update",
            role=me.role,
            target=f"user:{username}",
            ip=client_ip(request),
            details={"changed": changed, "role": body.role, "active": body.active},
        )
        s.flush()
        return _user(u), u.id

    out = await run_db(st.db, update)
    if out is None:
        raise ApiError(404, "err.user_not_found")
    if body.unlock:
        st.throttle.clear_account(username)
    st.users.invalidate(out[1])
    if body.password is not None or body.active is False:  # their open sessions end now
        await st.logins.revoke_user(out[1])
    return out[0]


def audit_query(
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 200,
) -> Select[AuditLog]:
    """``GET /api/audit``'s statement: newest first (by id), each filter when given; ``target``
    is a literal prefix.  Walked from the newest row down (by id; a time range by ``ix_audit_time``)
    until ``limit`` rows match: a million rows (a year) on SQLite here, 0.7–3.3 ms for an action,
    a user, a camera, a day or the next page, ~95 ms for a target matched by few or no rows (every
    row read) — ``bench/dbgrowth.py --audit-rows``, docs/storage.md "Database growth"."""
    stmt = select(AuditLog)
    if actor:
        stmt = stmt.where(AuditLog.actor == actor)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if target:
        stmt = stmt.where(AuditLog.target.startswith(target, autoescape=True))
    if since:
        stmt = stmt.where(AuditLog.at >= since)
    if until:
        stmt = stmt.where(AuditLog.at < until)
    if before_id:
        stmt = stmt.where(AuditLog.id < before_id)
    return stmt.order_by(AuditLog.id.desc()).limit(limit)


class AuditFilter:
    """The audit log's filters as ``GET /api/audit`` and its export take them (a dependency:
    ``f: Annotated[AuditFilter, Depends()]``)."""

    def __init__(
        self,
        actor: Annotated[
            str | None, Query(max_length=64, description="exactly this user (or agent:<site>)")
        ] = None,
        action: Annotated[str | None, Query(max_length=64, description="exactly this action")] = None,
        target: Annotated[
            str | None,
            Query(max_length=200, description="targets starting with this: site1/room1, event:12, session:3"),
        ] = None,
        since: Annotated[datetime | None, Query(description="at or after (ISO 8601 with a zone)")] = None,
        until: Annotated[datetime | None, Query(description="before (ISO 8601 with a zone)")] = None,
    ) -> None:
        self.actor, self.action, self.target, self.since, self.until = actor, action, target, since, until

    def check(self) -> None:
        """422 ``err.bad_audit_range`` when ``until`` is not after ``since`` (called by the route,
        after its role gate)."""
        if self.since and self.until and self.until <= self.since:
            raise ApiError(422, "err.bad_audit_range")

    def query(self, *, before_id: int | None = None, limit: int) -> Select[AuditLog]:
        return audit_query(actor=self.actor, action=self.action, target=self.target, since=self.since,
                           until=self.until, before_id=before_id, limit=limit)

    def used(self, **more: Any) -> Any:
        """The filters given (and ``more``), for the audit row of the read: JSON-ready."""
        given = {"actor": self.actor, "action": self.action, "target": self.target, "since": self.since,
                 "until": self.until, **more}
        return jsonable({k: v for k, v in given.items() if v is not None})


@router.get("/api/audit", response_model=AuditList)
async def audit_log(
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow("admin", "auditor"))],
    f: Annotated[AuditFilter, Depends()],
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="older than this row: the next page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> AuditList:
    """Audit rows newest first, filtered; ``more`` says older rows match too (ask again with
    ``before_id`` = the last row's id).  Reading the audit log is itself audited (``audit_view``,
    with the filters)."""
    f.check()

    def q(s: Session) -> AuditList:
        rows = [
            AuditEntry(
                id=a.id, at=a.at, actor=a.actor, role=a.role, action=a.action, target=a.target, ip=a.ip,
                details=jsonable(a.details),
            )
            for a in s.scalars(f.query(before_id=before_id, limit=limit + 1))
        ]
        audit.add(s, me.username, "audit_view", role=me.role, ip=client_ip(request),
                  details=f.used(before_id=before_id))
        return AuditList(entries=rows[:limit], more=len(rows) > limit)

    return await run_db(st.db, q)


#: Rows one audit-log export may hold; a filter matching more is refused (413), not cut short:
#: an auditor's file is the whole answer to the question asked, or nothing.
AUDIT_EXPORT_MAX = 100_000


@router.get("/api/audit/export", **media("text/csv"))
async def audit_export(
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow("admin", "auditor"))],
    f: Annotated[AuditFilter, Depends()],
    lang: Literal["zh-CN", "en"] = "zh-CN",
) -> Response:
    """The audit rows the filters of ``GET /api/audit`` select, newest first, as CSV (UTF-8 with a
    BOM): time in UTC and in ``hub.timezone``, user, role, action code and name (in ``lang``),
    target, address, details (JSON).  More than :data:`AUDIT_EXPORT_MAX` rows: 413
    ``err.audit_export_too_large``.  The export is itself audited (``audit_export``, with the
    filters and the row count)."""
    f.check()
    names = load_dictionary(lang)
    zone = ZoneInfo(st.cfg.hub.timezone)

    def q(s: Session) -> bytes | None:
        stmt = f.query(limit=AUDIT_EXPORT_MAX + 1)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "at_utc", f"at ({st.cfg.hub.timezone})", "actor", "role", "action", "action_name",
                    "target", "ip", "details"])
        n = 0
        # written as read, 2,000 rows at a time: the hub holds the CSV text, not the rows too
        for a in s.scalars(stmt.execution_options(yield_per=2000)):
            n += 1
            if n > AUDIT_EXPORT_MAX:
                return None
            at = as_utc(a.at)
            w.writerow([a.id, at.isoformat(), at.astimezone(zone).isoformat(), *(
                text_cell(v) for v in (a.actor, a.role or "", a.action,
                                       names.get(f"audit_action.{a.action}", a.action), a.target or "",
                                       a.ip or "", json.dumps(jsonable(a.details), ensure_ascii=False)
                                       if a.details else ""))])
        audit.add(s, me.username, "audit_export", role=me.role, ip=client_ip(request),
                  details=f.used(rows=n))
        return ("\ufeff" + buf.getvalue()).encode("utf-8")

    data = await run_db(st.db, q)
    if data is None:
        raise ApiError(413, "err.audit_export_too_large")
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(data, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="audit_{stamp}.csv"'})


@router.get("/api/config", response_model=ConfigView)
async def config_view(
    st: State, request: Request, me: Annotated[Principal, Depends(allow("admin"))]
) -> dict[str, Any]:
    """The running configuration with every secret (keys, tokens, passwords) masked — also the
    ones inside plain strings: the database URL's password, credentials in TURN/STUN URLs
    (finding 11 of #12)."""
    cfg = st.cfg
    data = cfg.model_dump(mode="json")  # SecretStr dumps as '**********'
    for u in data.get("users", []):
        u.pop("password", None)
    storage = data.get("storage", {})
    if isinstance(storage.get("database_url"), str):
        storage["database_url"] = masked(storage["database_url"])
    hub = data.get("hub", {})
    for k in ("stun_urls", "turn_urls"):
        hub[k] = [_mask_userinfo(u) for u in hub.get(k) or []]
    for site in data.get("sites", []):  # robot URLs carry their token in the query
        for target in site.get("notify") or []:
            if isinstance(target.get("url"), str):
                target["url"] = mask_url(target["url"])
    return data


def _mask_userinfo(url: str) -> str:
    """``turn://user:pass@host`` → ``turn://***@host`` (and ``turn:user:pass@host`` alike)."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme, sep, _ = head.partition("://") if "://" in head else head.partition(":")
    return f"{scheme}{sep}***@{rest}"
