"""Notifications to people on site and notices in the room (docs/notifications.md).

* ``GET /api/notifications/log`` (admin, supervisor, auditor) — the delivery log: every try of
  every notification (webhook / WeCom / DingTalk / e-mail), newest first, and the ones waiting
  for their first try; ``?site=``, ``?status=`` (pending | sent | retry | failed), ``?limit=``;
* ``POST /api/rooms/{site}/{room}/notices`` (admin, supervisor) — a notice for the room's
  display (free ``text`` or a ``preset``); audit ``room_notice``; the agent's report arrives
  through ``POST /api/ingest/notices/{id}`` (audit ``room_notice_shown``) and is pushed to the
  dashboards as ``{"type": "notice"}``;
* ``GET /api/rooms/{site}/{room}/notices`` (admin, supervisor, auditor) — the room's latest
  notices with their status, and the presets.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from capture.notices import PRESETS
from dashboard.dbutil import run_db
from dashboard.defs import NotificationLog, RoomNoticeCreate, RoomNoticeList, RoomNoticePublic
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.notifications import log_rows
from dashboard.policy import Principal, allow

router = APIRouter(tags=["notifications"])


@router.get("/api/notifications/log", response_model=NotificationLog)
async def notification_log(
    st: State,
    me: Annotated[Principal, Depends(allow("admin", "supervisor", "auditor"))],
    site: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["pending", "sent", "retry", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The delivery log of the notifications to people on site, newest first."""
    rows = await run_db(st.db, lambda s: log_rows(s, site=site, status=status, limit=limit))
    return {"entries": rows}


def _room(st: Any, site: str, room: str) -> None:
    try:
        st.cfg.room(site, room)
    except KeyError:
        raise ApiError(404, "err.not_found", f"no room {room!r} at site {site!r}") from None


@router.post("/api/rooms/{site}/{room}/notices", response_model=RoomNoticePublic)
async def send_notice(
    st: State,
    auditor: Audit,
    site: str,
    room: str,
    body: RoomNoticeCreate,
    me: Annotated[Principal, Depends(allow("admin", "supervisor"))],
) -> dict[str, Any]:
    """Show a short notice full-screen on the room's display (and speak it)."""
    _room(st, site, room)
    if (body.text is None) == (body.preset is None):
        raise ApiError(400, "err.invalid_input", "give either 'text' or 'preset'")
    if body.preset is not None and body.preset not in PRESETS:
        raise ApiError(400, "err.invalid_input",
                       f"unknown preset {body.preset!r}; one of {', '.join(PRESETS)}")
    text = PRESETS[body.preset] if body.preset is not None else (body.text or "").strip()
    if not text:
        raise ApiError(400, "err.invalid_input", "the notice text is empty")
    notices = getattr(st.services, "notices", None)
    if notices is None:
        raise ApiError(503, "err.live_unavailable", "this hub has no agents to show notices")
    doc: dict[str, Any] = await notices.create(site, room, text, body.seconds, me.username, body.preset)
    await auditor("room_notice", target=f"{site}/{room}",
                  details={"notice": doc["id"], "text": text, "preset": body.preset, "seconds": body.seconds,
                           "control_sent": doc["control_sent"]})
    return doc


@router.get("/api/rooms/{site}/{room}/notices", response_model=RoomNoticeList)
async def list_notices(
    st: State,
    site: str,
    room: str,
    me: Annotated[Principal, Depends(allow("admin", "supervisor", "auditor"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The room's latest notices (newest first) with their status, and the presets."""
    _room(st, site, room)
    notices = getattr(st.services, "notices", None)
    rows = await notices.list(site, room, limit) if notices is not None else []
    return {"notices": rows, "presets": PRESETS}
