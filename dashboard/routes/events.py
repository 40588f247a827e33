"""Alerts: list/filter, snapshot, the acknowledge → resolve / false-alarm workflow, WebSocket push."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import RowId, media
from dashboard.deps import Audit, State
from dashboard.errors import ApiError, error_body
from dashboard.experts import attach
from dashboard.policy import ANY_USER, Principal, WsRefusal, allow, authenticate, client_ip, ws_allow
from dashboard.routes.common import fetch_object
from dashboard.state import DashState, get_state
from storage.common import as_utc, utcnow
from storage.incident import EventItem, EventWorkflow, Status
from storage.models import EventRow

router = APIRouter(tags=["alerts"])
log = logging.getLogger("evalwatch.dashboard")

HANDLERS = ("admin", "supervisor")
OPEN_STATES = ("new", "acknowledged")
REAUTH_SECONDS = 30.0


class EventList(BaseModel):
    items: list[EventItem]


def events_query(
    *,
    status: Sequence[str] | None = None,
    rule: str | None = None,
    site: str | None = None,
    room: str | None = None,
    camera: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> Select[EventRow]:
    """The events list's statement: newest first, filtered.  Served by an index on a year of
    rows (``ix_events_started_at``, ``ix_events_status_time``, ``ix_events_camera_time``;
    ``bench/dbgrowth.py``, tests/test_db_growth.py)."""
    stmt = select(EventRow)
    if status:
        stmt = stmt.where(EventRow.status.in_(status))
    for col, val in (
        (EventRow.rule, rule), (EventRow.site, site), (EventRow.room, room), (EventRow.camera, camera)
    ):
        if val:
            stmt = stmt.where(col == val)
    if since:
        stmt = stmt.where(EventRow.started_at >= as_utc(since))
    if until:
        stmt = stmt.where(EventRow.started_at < as_utc(until))
    return stmt.order_by(EventRow.started_at.desc(), EventRow.id.desc()).limit(limit)


@router.get("/api/events", response_model=EventList)
async def list_events(
    auditor: Audit,
    st: State,
    me: Annotated[Principal, Depends(allow(*ANY_USER))],
    status: Annotated[list[Status] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=32)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    room: Annotated[str | None, Query(max_length=64)] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventList:
    """Events newest first, filtered by state(s), rule, site/room/camera and start-time range."""
    await auditor.observer("event_list")

    def q(s: Session) -> list[EventItem]:
        stmt = events_query(status=status, rule=rule, site=site, room=room, camera=camera, since=since,
                            until=until, limit=limit)
        items = [EventItem.from_row(e) for e in s.scalars(stmt)]
        attach(s, items, me.role)
        return items

    return EventList(items=await run_db(st.db, q))


@router.get("/api/events/{event_id}", response_model=EventItem)
async def get_event(
    auditor: Audit,
    st: State,
    event_id: RowId, me: Annotated[Principal, Depends(allow(*ANY_USER))]
) -> EventItem:
    await auditor.observer("event_view", f"event:{event_id}")

    def q(s: Session) -> EventItem | None:
        e = s.get(EventRow, event_id)
        if e is None:
            return None
        item = EventItem.from_row(e)
        attach(s, [item], me.role)
        return item

    out = await run_db(st.db, q)
    if out is None:
        raise ApiError(404, "err.event_not_found")
    return out


@router.get("/api/events/{event_id}/snapshot", **media("image/jpeg", "image/png"))
async def snapshot(
    auditor: Audit,
    st: State,
    event_id: RowId, me: Annotated[Principal, Depends(allow(*ANY_USER))]
) -> Response:
    """The event's JPEG snapshot, read from the snapshots bucket (404 when it has none)."""
    key = await run_db(
        st.db, lambda s: (e.snapshot_key, True) if (e := s.get(EventRow, event_id)) else (None, False)
    )
    if not key[1]:
        raise ApiError(404, "err.event_not_found")
    if not key[0]:
        raise ApiError(404, "err.no_snapshot")
    await auditor.observer("snapshot_view", f"event:{event_id}")
    data = await fetch_object(st, st.cfg.storage.s3.bucket_snapshots, key[0], "snapshot")
    ctype = "image/png" if key[0].endswith(".png") else "image/jpeg"
    return Response(data, media_type=ctype, headers={"Cache-Control": "private, max-age=3600"})


class ResolveIn(BaseModel):
    note: Annotated[str, Field(max_length=2000)] = ""
    false_alarm: bool = False


class AckIn(BaseModel):
    note: Annotated[str, Field(max_length=2000)] = ""


async def _transition(
    request: Request, me: Principal, event_id: int, action: str, note: str
) -> EventItem:
    st = get_state(request)
    now = utcnow()

    def apply(s: Session) -> EventItem | str:
        e = s.get(EventRow, event_id)
        if e is None:
            return "err.event_not_found"
        if action == "ack":
            if e.status != "new":
                return "err.bad_transition"
            e.status = "acknowledged"
            e.acknowledged_by, e.acknowledged_at = me.username, now
        else:
            if e.status not in OPEN_STATES or (action == "resolve" and e.status != "acknowledged"):
                return "err.bad_transition"
            if e.acknowledged_by is None:
                e.acknowledged_by, e.acknowledged_at = me.username, now
            e.status = "resolved" if action == "resolve" else "false_alarm"
            e.resolved_by, e.resolved_at = me.username, now
        if note:
            e.note = note if not e.note else f"{e.note}\n{note}"
        audit.add(
            s,
            me.username,
            f"alert_{action}",
            role=me.role,
            target=f"event:{event_id}",
            ip=client_ip(request),
            details={"status": e.status, "note": note or None},
        )
        item = EventItem.from_row(e)
        attach(s, [item], "admin")  # every browser gets it: observers' copies lose the name
        return item

    out = await run_db(st.db, apply)
    if isinstance(out, str):
        raise ApiError(404 if out == "err.event_not_found" else 409, out)
    st.alerts.publish_event(EventWorkflow(**out.model_dump()))
    return out


@router.post("/api/events/{event_id}/ack", response_model=EventItem)
async def acknowledge(
    event_id: RowId,
    request: Request,
    me: Annotated[Principal, Depends(allow(*HANDLERS))],
    body: AckIn | None = None,
) -> EventItem:
    """new → acknowledged (409 ``err.bad_transition`` otherwise); records who and when."""
    return await _transition(request, me, event_id, "ack", body.note if body else "")


@router.post("/api/events/{event_id}/resolve", response_model=EventItem)
async def resolve(
    event_id: RowId, body: ResolveIn, request: Request, me: Annotated[Principal, Depends(allow(*HANDLERS))]
) -> EventItem:
    """acknowledged → resolved (a note is required), or new/acknowledged → false_alarm."""
    note = body.note.strip()
    if not body.false_alarm and not note:
        raise ApiError(422, "err.note_required")
    return await _transition(request, me, event_id, "false_alarm" if body.false_alarm else "resolve", note)


@router.websocket("/ws/events")
async def ws_events(
    st: State,
    websocket: WebSocket, me: Annotated[Principal | WsRefusal, Depends(ws_allow(*ANY_USER))]
) -> None:
    """Push ``{"type": "event", "event": {...}}`` for every event update and workflow change.

    Authenticated by the session cookie (same origin only); closes with 4401 (anonymous) or 4403
    (role / origin).  ``{"type": "resync"}`` tells the client it missed messages.  The client may
    send ``"ping"`` and gets ``{"type": "pong"}``.  The session is re-checked on every client
    message and every ``REAUTH_SECONDS`` whatever the traffic; a revoked session (logout,
    password change, deactivation) closes the socket at once with 4401 ``session revoked``.
    """
    if isinstance(me, WsRefusal):
        # accept first so the browser sees the close code (a refused handshake is just "1006")
        await websocket.accept()
        await websocket.close(code=me.code, reason=me.reason)
        return
    cap = st.cfg.hub.max_ws_per_user
    if st.ws_per_user.get(me.username, 0) >= cap:  # finding 13 of #12
        log.warning("ws refused: user=%s has %s alert sockets open (hub.max_ws_per_user)", me.username, cap)
        await deny_ws(websocket, 429, error_body(
            "err.too_many_connections",
            f"{me.username} already has {cap} alert connections open (hub.max_ws_per_user = {cap})"))
        return
    st.ws_per_user[me.username] = st.ws_per_user.get(me.username, 0) + 1
    try:
        await _ws_session(st, websocket, me)
    finally:
        left = st.ws_per_user.get(me.username, 1) - 1
        if left > 0:
            st.ws_per_user[me.username] = left
        else:
            st.ws_per_user.pop(me.username, None)


async def deny_ws(websocket: WebSocket, status: int, body: dict[str, Any]) -> None:
    """Refuse a WebSocket upgrade with an HTTP ``status`` and the app's JSON error ``body`` (the
    denial response uvicorn supports); else accept and close with ``4000 + status``."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, status_code=status))
        return
    await websocket.accept()
    await websocket.close(code=4000 + status, reason=str(body["detail"])[:120])


async def _ws_session(st: DashState, websocket: WebSocket, me: Principal) -> None:
    await websocket.accept()
    client = st.alerts.connect(me.username, me.role)
    st.metrics.ws_clients.inc()
    if me.role == "observer":
        await audit.record(st.db, me.username, "alerts_watch", role=me.role, ip=client_ip(websocket))

    revoked = asyncio.Event()
    stop_watch = st.logins.watch(me.session, me.user_id, revoked.set)

    async def reader() -> None:
        while True:
            msg = await websocket.receive_text()
            # Every client message re-checks the session (finding 5 of #12: the UI's pings
            # must not keep a revoked session's socket open).
            if await authenticate(websocket) is None:
                revoked.set()
                return
            if msg == "ping":
                client.offer({"type": "pong"})

    loop = asyncio.get_running_loop()
    rtask = asyncio.create_task(reader())
    revtask = asyncio.create_task(revoked.wait())
    try:
        await websocket.send_json({"type": "hello", "user": me.username})
        next_check = loop.time() + REAUTH_SECONDS
        while True:
            get = asyncio.create_task(client.queue.get())
            done, _ = await asyncio.wait(
                {get, rtask, revtask},
                timeout=max(0.0, next_check - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if revtask in done or revoked.is_set():
                get.cancel()
                await websocket.close(code=4401, reason="session revoked")
                break
            if rtask in done:
                get.cancel()
                break
            if loop.time() >= next_check:
                # Periodic re-check whatever the traffic (deactivated user, changed password,
                # session revoked by another process): at most REAUTH_SECONDS apart.
                next_check = loop.time() + REAUTH_SECONDS
                if await authenticate(websocket) is None:
                    get.cancel()
                    await websocket.close(code=4401, reason="session revoked")
                    break
            if get in done:
                await websocket.send_json(get.result())
            else:
                get.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        stop_watch()
        rtask.cancel()
        revtask.cancel()
        with contextlib.suppress(BaseException):
            await rtask
        st.alerts.disconnect(client)
        st.metrics.ws_clients.dec()
