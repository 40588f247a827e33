"""Retention holds: what the retention purge (``storage.retention``) must keep.

* **Legal hold** on a session (a dispute): :func:`set_legal_hold` / :func:`release_legal_hold`
  (API ``POST /api/sessions/{id}/hold|release``, CLI ``evalwatch session hold|release``; admin
  or auditor).  While it is open, every camera of the session keeps its footage and snapshots
  overlapping the session's window (actual start..close; planned hours before it starts; a
  running session until now).  Both are audit-logged (``legal_hold`` / ``legal_hold_release``)
  in the same transaction as the change.  One open legal hold per session.
* **Export in progress**: :func:`export_hold` (an async context manager around an evidence
  export) keeps its cameras over its range until it ends, at most ``export_hold_hours``.

:func:`hold_windows` turns the open holds into the purge's :class:`storage.retention.HoldWindow`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from sessions.lifecycle import SessionError, _info, _load
from sessions.models import RetentionHold
from storage.common import CameraId, utcnow
from storage.models import AuditLog
from storage.retention import HoldWindow

MAX_REASON = 2000


class HoldError(SessionError):
    """A hold cannot be set or released (no reason, already held, not held)."""


class HoldInfo(BaseModel):
    """One retention hold (the API's and the CLI's view)."""

    id: int
    kind: str
    session_id: int | None
    cameras: list[str] | None
    start: datetime | None
    end: datetime | None
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    released_at: datetime | None
    released_by: str | None

    @classmethod
    def of(cls, row: RetentionHold) -> HoldInfo:
        return cls.model_validate(row, from_attributes=True)


def _open(s: Session, now: datetime) -> list[RetentionHold]:
    rows = s.scalars(
        select(RetentionHold).where(RetentionHold.released_at.is_(None)).order_by(RetentionHold.id)
    )
    return [r for r in rows if r.expires_at is None or r.expires_at > now]


def _audit(
    s: Session, actor: str, role: str | None, action: str, target: str, details: dict[str, Any]
) -> None:
    s.add(AuditLog(actor=actor[:64], role=role, action=action, target=target, details=details))


async def set_legal_hold(
    db: Any, ident: int | str, reason: str, actor: str, *, role: str | None = None
) -> HoldInfo:
    """Open a legal hold on session ``ident`` (id or code).  ``SessionNotFound``; ``HoldError``
    when ``reason`` is empty or the session is already held."""
    reason = (reason or "").strip()
    if not reason:
        raise HoldError("a legal hold needs a reason (e.g. the dispute's reference)")
    if len(reason) > MAX_REASON:
        raise HoldError(f"reason is longer than {MAX_REASON} characters")

    def go(s: Session) -> HoldInfo:
        row = _load(s, ident)
        held = s.scalars(
            select(RetentionHold).where(
                RetentionHold.kind == "legal",
                RetentionHold.session_id == row.id,
                RetentionHold.released_at.is_(None),
            )
        ).first()
        if held is not None:
            raise HoldError(
                f"session {row.code} is already under a legal hold (#{held.id}, by {held.created_by})"
            )
        hold = RetentionHold(kind="legal", session_id=row.id, reason=reason, created_by=actor[:64])
        s.add(hold)
        s.flush()
        details: dict[str, Any] = {"hold": hold.id, "reason": reason}
        _audit(s, actor, role, "legal_hold", f"session:{row.id}:{row.code}", details)
        return HoldInfo.of(hold)

    return await db.run(go)


async def release_legal_hold(
    db: Any, ident: int | str, actor: str, *, reason: str = "", role: str | None = None
) -> HoldInfo:
    """Release the open legal hold of session ``ident``; ``HoldError`` when there is none."""

    def go(s: Session) -> HoldInfo:
        row = _load(s, ident)
        hold = s.scalars(
            select(RetentionHold).where(
                RetentionHold.kind == "legal",
                RetentionHold.session_id == row.id,
                RetentionHold.released_at.is_(None),
            )
        ).first()
        if hold is None:
            raise HoldError(f"session {row.code} is not under a legal hold")
        hold.released_at = utcnow()
        hold.released_by = actor[:64]
        _audit(
            s,
            actor,
            role,
            "legal_hold_release",
            f"session:{row.id}:{row.code}",
            {"hold": hold.id, "reason": reason.strip()[:MAX_REASON]},
        )
        return HoldInfo.of(hold)

    return await db.run(go)


async def session_holds(db: Any, ident: int | str) -> list[HoldInfo]:
    """Every legal hold of session ``ident``, open or released, oldest first."""

    def go(s: Session) -> list[HoldInfo]:
        row = _load(s, ident)
        rows = s.scalars(
            select(RetentionHold).where(RetentionHold.session_id == row.id).order_by(RetentionHold.id)
        )
        return [HoldInfo.of(r) for r in rows]

    return await db.run(go)


@contextlib.asynccontextmanager
async def export_hold(
    db: Any,
    cameras: Sequence[CameraId],
    start: datetime | None,
    end: datetime | None,
    actor: str,
    *,
    hours: float = 12.0,
    what: str = "export",
) -> AsyncIterator[int]:
    """Keep ``cameras`` over ``[start, end)`` from the purge while the block runs."""

    def add(s: Session) -> int:
        row = RetentionHold(
            kind="export",
            cameras=[c.path for c in cameras],
            start=start,
            end=end,
            reason=what[:MAX_REASON],
            created_by=actor[:64],
            expires_at=utcnow() + timedelta(hours=hours),
        )
        s.add(row)
        s.flush()
        return row.id

    hold_id = await db.run(add)
    try:
        yield hold_id
    finally:

        def release(s: Session) -> None:
            row = s.get(RetentionHold, hold_id)
            if row is not None and row.released_at is None:
                row.released_at = utcnow()
                row.released_by = actor[:64]

        with contextlib.suppress(Exception):  # an expired hold ends by itself
            await db.run(release)


def _windows(s: Session, now: datetime) -> list[HoldWindow]:
    out: list[HoldWindow] = []
    for h in _open(s, now):
        if h.kind == "legal" and h.session_id is not None:
            try:
                info = _info(s, _load(s, h.session_id))
            except SessionError:
                continue
            start, end = info.window(now)
            if info.status == "running":
                end_opt: datetime | None = None  # still filming: everything from its start
            else:
                end_opt = end
            for cam in info.cameras:
                out.append(HoldWindow(cam, start, end_opt, f"legal hold #{h.id} on session {info.code}"))
        else:
            for path in h.cameras or []:
                try:
                    cam = CameraId.parse(path)
                except ValueError:
                    continue
                out.append(HoldWindow(cam, h.start, h.end, f"{h.kind} hold #{h.id}: {h.reason}"))
    return out


async def hold_windows(db: Any, now: datetime | None = None) -> list[HoldWindow]:
    """The open holds (legal holds of sessions, exports in progress) as purge windows."""
    at = now or utcnow()
    return await db.run(lambda s: _windows(s, at))
