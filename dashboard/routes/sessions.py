"""HTTP API of evaluation sessions (the dashboard owns the routes; :mod:`sessions` the logic).

Routes and roles (gates from ``dashboard.policy``; documented in docs/sessions.md):

================================================  =====================================  ======
``GET  /api/sessions[?status=]``                  admin, supervisor, auditor, observer   list
``GET  /api/sessions/public-key``                 admin, supervisor, auditor, observer   PEM
``POST /api/sessions``                            admin, supervisor                      create
``GET  /api/sessions/{id}``                       admin, supervisor, auditor, observer   detail
``POST /api/sessions/{id}/start``                 admin, supervisor
``POST /api/sessions/{id}/close``                 admin, supervisor                      seal
``GET  /api/sessions/{id}/seal``                  admin, supervisor, auditor             verify
``GET  /api/sessions/{id}/report?format=&lang=``  admin, supervisor, auditor             file
``GET  /api/sessions/{id}/export?start=&end=&camera=``  admin, auditor                  zip
``POST /api/sessions/{id}/hold``  ``{reason}``      admin, auditor                         legal hold
``POST /api/sessions/{id}/release`` ``{reason}``    admin, auditor                         release it
``GET  /api/sessions/{id}/holds``                   admin, supervisor, auditor             holds
================================================  =====================================  ======

Errors use the dashboard's JSON body (``{"detail", "code"}``): unknown session 404
``err.not_found``; invalid spec or wrong status 422/409 ``err.invalid_input`` with the reason in
``detail``.  Transitions are audit-logged by :mod:`sessions.lifecycle` (actor = username),
exports by :mod:`sessions.export`; reports are logged as ``session_report``; observers' views
as ``session_view``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.background import BackgroundTask

from dashboard.defs import HoldBody, HoldList, RowId, SealCheck, SessionList, media
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.policy import ROLES, Principal, allow
from dashboard.state import get_state
from sessions import holds as hl
from sessions import lifecycle as lc
from sessions.lifecycle import SessionInfo
from storage.common import as_utc

log = logging.getLogger("evalwatch.dashboard.sessions")

router = APIRouter(tags=["sessions"])

MANAGERS = ("admin", "supervisor")
READERS = ("admin", "supervisor", "auditor")
EXPORTERS = ("admin", "auditor")
HOLDERS = ("admin", "auditor")


def _err(e: lc.SessionError, status: int = 409) -> ApiError:
    if isinstance(e, lc.SessionNotFound):
        return ApiError(404, "err.not_found", str(e))
    return ApiError(status, "err.invalid_input", str(e))


def _mask(info: SessionInfo, role: str) -> SessionInfo:
    """Observers see the experts' codes, never their names (docs/credit.md): a seat's ``expert``
    becomes its ``expert_code`` (or ``-``)."""
    if role != "observer":
        return info
    seats = [x.model_copy(update={"expert": x.expert_code or "-"}) for x in info.seats]
    return info.model_copy(update={"seats": seats})


async def _key(request: Request) -> Any:
    from sessions.signing import HubKey

    return await asyncio.to_thread(HubKey.load_or_create, get_state(request).cfg.storage.data_dir)


@router.get("/api/sessions", response_model=SessionList)
async def list_sessions(
    auditor: Audit,
    st: State,
    me: Annotated[Principal, Depends(allow(*ROLES))],
    status: Annotated[str | None, Query(pattern="^(scheduled|running|closed)$")] = None,
) -> SessionList:
    """Every session (newest first), optionally of one status."""
    await auditor.observer("session_list")
    return SessionList(sessions=[_mask(x, me.role) for x in await lc.list_sessions(st.db, status)])


@router.get("/api/sessions/public-key", **media("application/x-pem-file"))
async def public_key(
    request: Request, me: Annotated[Principal, Depends(allow(*ROLES))]
) -> PlainTextResponse:
    """The hub's Ed25519 public key (PEM) that verifies seals and evidence exports."""
    key = await _key(request)
    return PlainTextResponse(
        key.public_pem(),
        media_type="application/x-pem-file",
        headers={
            "X-Key-Id": key.key_id,
            "Content-Disposition": 'attachment; filename="evalwatch_hub.pem"',
        },
    )


@router.post("/api/sessions", status_code=201, response_model=SessionInfo)
async def create(
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow(*MANAGERS))],
    body: Annotated[dict[str, Any], Body()],
) -> SessionInfo:
    """Create a scheduled session from a spec (the same fields as the CLI's spec file)."""
    try:
        info = await lc.create_session(st.db, st.cfg, lc.parse_spec(body, "body"), me.username)
    except lc.SessionError as e:
        raise _err(e, 422) from None
    return info


@router.get("/api/sessions/{session_id}", response_model=SessionInfo)
async def detail(
    auditor: Audit,
    st: State,
    session_id: RowId, me: Annotated[Principal, Depends(allow(*ROLES))]
) -> SessionInfo:
    """One session: rooms/cameras, experts and seats, status, sealed heads."""
    await auditor.observer("session_view", f"session:{session_id}")
    try:
        return _mask(await lc.get_session(st.db, session_id), me.role)
    except lc.SessionError as e:
        raise _err(e) from None


@router.post("/api/sessions/{session_id}/start", response_model=SessionInfo)
async def start(
    st: State,
    session_id: RowId, request: Request, me: Annotated[Principal, Depends(allow(*MANAGERS))]
) -> SessionInfo:
    """``scheduled`` → ``running`` (409 otherwise, or when a room is in another running session)."""
    try:
        return await lc.start_session(st.db, session_id, me.username)
    except lc.SessionError as e:
        raise _err(e) from None


@router.post("/api/sessions/{session_id}/close", response_model=SessionInfo)
async def close(
    st: State,
    session_id: RowId, request: Request, me: Annotated[Principal, Depends(allow(*MANAGERS))]
) -> SessionInfo:
    """``running`` → ``closed``: records and signs every camera's chain head."""
    try:
        info = await lc.close_session(
            st.db, st.cfg, await _key(request), session_id, me.username, objects=st.services.objects
        )
    except lc.SessionError as e:
        raise _err(e) from None
    anchors = getattr(st.services, "anchors", None)
    if anchors is not None:  # the sealed heads also go outside the hub (sessions/anchors.py)
        try:
            await anchors.anchor(f"session_close:{info.code}")
        except Exception:  # the session is closed and sealed; the hourly anchor follows
            log.exception("anchoring the chain heads at the close of session %s failed", info.code)
    return info


@router.get("/api/sessions/{session_id}/seal", response_model=SealCheck)
async def seal(
    st: State,
    session_id: RowId, request: Request, me: Annotated[Principal, Depends(allow(*READERS))]
) -> SealCheck:
    """Whether the seal verifies with the hub's key or one of its rotated trusted keys (key
    files, never the DB): ``{ok, problems, key_id}``."""
    try:
        info = await lc.get_session(st.db, session_id)
    except lc.SessionError as e:
        raise _err(e) from None
    key = await _key(request)
    from sessions.signing import hub_trusted_pems

    trusted = await asyncio.to_thread(hub_trusted_pems, get_state(request).cfg.storage.data_dir, key)
    problems = lc.verify_seal(info, trusted)
    return SealCheck(ok=not problems, problems=problems, key_id=key.key_id)


@router.get("/api/sessions/{session_id}/report", **media("text/html", "application/pdf"))
async def report(
    auditor: Audit,
    st: State,
    session_id: RowId,
    me: Annotated[Principal, Depends(allow(*READERS))],
    fmt: Annotated[str, Query(alias="format", pattern="^(html|pdf)$")] = "html",
    lang: Annotated[str, Query(pattern="^(zh|en)$")] = "zh",
) -> Response:
    """The supervision report as HTML or PDF."""
    from sessions.report import build_report, render_html, render_pdf

    if st.services.objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        data = await build_report(st.db, st.services.objects, st.cfg, session_id)
    except lc.SessionError as e:
        raise _err(e) from None
    await auditor(
        "session_report",
        target=f"session:{session_id}",
        details={"format": fmt},
    )
    name = f"report_{data.session.code}.{fmt}"
    disp = {"Content-Disposition": f'inline; filename="{name}"'}
    if fmt == "pdf":
        pdf = await asyncio.to_thread(render_pdf, data, lang)
        return Response(pdf, media_type="application/pdf", headers=disp)
    html = render_html(data, lang)
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={**disp, "Content-Security-Policy": report_csp(html)})


def report_csp(html: str) -> str:
    """The dashboard's CSP with the SHA-256 of each of the report's inline ``<style>`` blocks
    allowed (finding 15 of #12: ``style-src 'self'`` blocked the report's styling).  The report
    stays one self-contained file (it is downloaded and kept), so its style stays inline; nothing
    else inline is allowed (scripts stay ``'self'`` only)."""
    import base64
    import hashlib
    import re

    from dashboard.policy import CSP

    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode('utf-8')).digest()).decode()}'"
        for block in re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    )
    return CSP.replace("style-src 'self'", f"style-src 'self' {hashes}".rstrip())


@router.get("/api/sessions/{session_id}/export", **media("application/zip"))
async def export(
    st: State,
    session_id: RowId,
    request: Request,
    me: Annotated[Principal, Depends(allow(*EXPORTERS))],
    start: datetime | None = None,
    end: datetime | None = None,
    camera: Annotated[list[str] | None, Query()] = None,
) -> FileResponse:
    """The evidence zip of a closed session (optionally a time range and some cameras)."""
    from sessions.export import ExportTooLarge, export_session

    if st.services.objects is None:
        raise ApiError(503, "err.storage_unavailable")
    tmpdir = Path(tempfile.mkdtemp(prefix="evalwatch-export-"))
    out = tmpdir / f"evidence_session{session_id}.zip"

    def cleanup() -> None:
        out.unlink(missing_ok=True)
        tmpdir.rmdir()

    try:
        r = await export_session(
            st.db,
            st.services.objects,
            st.cfg,
            await _key(request),
            session_id,
            out,
            start=as_utc(start) if start else None,
            end=as_utc(end) if end else None,
            cameras=camera,
            actor=me.username,
            progress=False,
            max_bytes=st.cfg.storage.export_max_bytes,
        )
    except lc.SessionError as e:
        await asyncio.to_thread(cleanup)
        raise _err(e, 422 if not isinstance(e, lc.SessionNotFound) else 404) from None
    except ExportTooLarge as e:  # finding 13 of #12
        await asyncio.to_thread(cleanup)
        raise ApiError(413, "err.export_too_large", str(e)) from None
    except BaseException:
        await asyncio.to_thread(cleanup)
        raise
    return FileResponse(
        r.path, media_type="application/zip", filename=out.name, background=BackgroundTask(cleanup)
    )



@router.post("/api/sessions/{session_id}/hold", response_model=hl.HoldInfo)
async def hold(
    st: State, session_id: RowId, body: HoldBody, me: Annotated[Principal, Depends(allow(*HOLDERS))]
) -> hl.HoldInfo:
    """Legal hold: the retention purge keeps the session's footage while it is open
    (audit ``legal_hold``).  422 without a reason, 409 when already held."""
    if not body.reason.strip():
        raise ApiError(422, "err.invalid_input", "a legal hold needs a reason (e.g. the dispute's reference)")
    try:
        return await hl.set_legal_hold(st.db, session_id, body.reason, me.username, role=me.role)
    except lc.SessionError as e:
        raise _err(e) from None


@router.post("/api/sessions/{session_id}/release", response_model=hl.HoldInfo)
async def release(
    st: State, session_id: RowId, body: HoldBody, me: Annotated[Principal, Depends(allow(*HOLDERS))]
) -> hl.HoldInfo:
    """Release the session's legal hold (audit ``legal_hold_release``); 409 when not held."""
    try:
        return await hl.release_legal_hold(st.db, session_id, me.username, reason=body.reason, role=me.role)
    except lc.SessionError as e:
        raise _err(e) from None


@router.get("/api/sessions/{session_id}/holds", response_model=HoldList)
async def holds(
    st: State, session_id: RowId, me: Annotated[Principal, Depends(allow(*READERS))]
) -> HoldList:
    """The session's legal holds, open (``released_at`` null) and released."""
    try:
        return HoldList(holds=await hl.session_holds(st.db, session_id))
    except lc.SessionError as e:
        raise _err(e) from None
