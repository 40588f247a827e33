"""Notices in the room, the hub's side (docs/notifications.md, "Notice in the room").

A supervisor sends a short notice to a room ("请勿使用手机"); the room PC's agent shows it
full-screen on the room's display, speaks it, and reports back (``capture/notice_display.py``).

:class:`RoomNotices` keeps each notice as a ``room_notices`` row (``storage.models.RoomNotice``)
and delivers it to the room's agent two ways, as the live-rate boost is delivered:

* at once over the ``evalwatch-control`` data channel of one of the room's cameras
  (``capture.recorder.Recorder.send_room_control``): ``{"notice": {id, room, text, seconds}}``;
* in every heartbeat answer (``notices``: the site's notices not reported yet, at most
  ``PENDING_MAX_AGE`` old) — agents without the channel, and a lost message, catch up there.

The agent shows a notice once per id and reports with ``POST /api/ingest/notices/{id}``
(:meth:`RoomNotices.report`): the row gets ``status`` ``shown`` or ``not_shown`` (``reason``),
``spoken``, ``shown_at`` and the agent's host; the audit log gets ``room_notice_shown``; the
dashboards get ``{"type": "notice", "notice": {...}}`` on the alert push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.common import utcnow
from storage.models import AuditLog, RoomNotice

log = logging.getLogger("capture.notices")

#: A notice nobody reported within this long is no longer offered to the agent (a room PC
#: switched on the next morning must not flash yesterday's notices).
PENDING_MAX_AGE = timedelta(minutes=10)
#: Presets the dashboard offers (free text is allowed too).
PRESETS: dict[str, str] = {
    "no_phone": "请勿使用手机",
    "stay_seated": "请回到座位，保持安静",
    "no_talking": "评标期间请勿交谈",
    "camera": "请勿遮挡摄像头",
}


class NoticeReportIn(BaseModel):
    """The agent's report on a notice (``POST /api/ingest/notices/{id}``)."""

    model_config = ConfigDict(extra="forbid")
    site: str
    room: str
    shown: bool = Field(description="shown full-screen on the room's display")
    reason: str | None = Field(default=None, max_length=200, description="why not shown (e.g. no display)")
    spoken: bool = Field(default=False, description="spoken by the system's text-to-speech")
    shown_at: datetime | None = None
    via: str | None = Field(default=None, max_length=16, description="control | heartbeat")
    host: str | None = Field(default=None, max_length=128)


class NoticeOut(BaseModel):
    """A notice as agents get it (heartbeat answers, the control channel)."""

    id: int
    room: str
    text: str
    seconds: float


def notice_dict(r: RoomNotice) -> dict[str, Any]:
    """A ``room_notices`` row as the API shows it."""
    return {
        "id": r.id, "site": r.site, "room": r.room, "text": r.text, "preset": r.preset,
        "seconds": r.seconds, "created_at": r.created_at, "created_by": r.created_by,
        "status": r.status, "via": r.via, "reported_at": r.reported_at, "shown_at": r.shown_at,
        "reason": r.reason, "spoken": r.spoken, "agent_host": r.agent_host,
    }


class RoomNotices:
    """The notices waiting for their rooms' agents (one per hub node; rows in the database)."""

    def __init__(self, db: Any, recorder: Any = None) -> None:
        self.db = db
        self.recorder = recorder
        #: Called with ``{"type": "notice", "notice": {...}}`` when a notice changes (the
        #: dashboard's alert push).
        self.on_change: Callable[[dict[str, Any]], None] | None = None

    async def create(self, site: str, room: str, text: str, seconds: float, by: str,
                     preset: str | None = None) -> dict[str, Any]:
        """Store a notice and send it over the room's control channel when one is open; the
        heartbeat answers carry it until the agent reports."""

        def add(s: Session) -> dict[str, Any]:
            row = RoomNotice(site=site, room=room, text=text, preset=preset, seconds=seconds,
                             created_by=by, created_at=utcnow(), status="pending")
            s.add(row)
            s.flush()
            return notice_dict(row)

        doc = await self.db.run(add)
        sent = False
        if self.recorder is not None:
            msg = {"notice": NoticeOut(id=doc["id"], room=room, text=text, seconds=seconds).model_dump()}
            sent = bool(self.recorder.send_room_control(site, room, msg))
        log.info("room notice id=%s site=%s room=%s by=%s control_channel=%s", doc["id"], site, room, by,
                 sent)
        doc["control_sent"] = sent
        return doc

    async def pending(self, site: str) -> list[NoticeOut]:
        """The site's notices its agent has not reported yet (for the heartbeat answer)."""

        def q(s: Session) -> list[NoticeOut]:
            rows = s.scalars(
                select(RoomNotice).where(RoomNotice.site == site, RoomNotice.status == "pending",
                                         RoomNotice.created_at >= utcnow() - PENDING_MAX_AGE)
                .order_by(RoomNotice.id)
            ).all()
            return [NoticeOut(id=r.id, room=r.room, text=r.text, seconds=r.seconds) for r in rows]

        out: list[NoticeOut] = await self.db.run(q)
        return out

    async def report(self, site: str, notice_id: int, body: NoticeReportIn) -> dict[str, Any] | None:
        """Record the agent's report (``None``: no such notice of this site and room).  A second
        report of the same notice updates nothing but is answered the same."""

        def work(s: Session) -> tuple[dict[str, Any], bool] | None:
            row = s.get(RoomNotice, notice_id)
            if row is None or row.site != site or row.room != body.room:
                return None
            if row.status != "pending":
                return notice_dict(row), False
            row.status = "shown" if body.shown else "not_shown"
            row.reported_at = utcnow()
            row.shown_at = body.shown_at if body.shown else None
            row.reason = None if body.shown else (body.reason or "not shown")
            row.spoken = body.spoken
            row.via = body.via
            row.agent_host = body.host
            s.add(AuditLog(actor=f"agent:{site}"[:64], role=None, action="room_notice_shown",
                           target=f"{site}/{row.room}", ip=None,
                           details={"notice": row.id, "shown": body.shown, "reason": row.reason,
                                    "spoken": body.spoken, "via": body.via, "host": body.host,
                                    "shown_at": body.shown_at.isoformat() if body.shown_at else None}))
            s.flush()
            return notice_dict(row), True

        got = await self.db.run(work)
        if got is None:
            return None
        doc, changed = got
        if changed:
            log.info("room notice id=%s site=%s room=%s status=%s reason=%s spoken=%s via=%s", notice_id,
                     site,
                     doc["room"], doc["status"], doc["reason"], doc["spoken"], doc["via"])
            if self.on_change is not None:
                try:
                    self.on_change({"type": "notice", "notice": _jsonable(doc)})
                except Exception:
                    log.exception("pushing the notice status failed")
        return doc

    async def list(self, site: str, room: str, limit: int = 20) -> list[dict[str, Any]]:
        def q(s: Session) -> list[dict[str, Any]]:
            rows = s.scalars(select(RoomNotice).where(RoomNotice.site == site, RoomNotice.room == room)
                             .order_by(RoomNotice.id.desc()).limit(limit)).all()
            return [notice_dict(r) for r in rows]

        out: list[dict[str, Any]] = await self.db.run(q)
        return out


def _jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in doc.items()}
