"""Sites tree, per-camera status for the live wall, grid thumbnails, and the WebRTC offer/answer."""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import CameraStatusList, SdpAnswer, Sites, Thumbs, media
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.live import GRID_FPS, GRID_WIDTH, LiveSession, ThumbViewing
from dashboard.policy import ANY_USER, Principal, allow, client_ip
from storage.common import CameraId
from storage.models import EventRow

router = APIRouter(tags=["live"])
log = logging.getLogger("evalwatch.dashboard.live")

LIVE_VIEWERS = ("admin", "supervisor", "observer")


@router.get("/api/sites", response_model=Sites)
async def sites(
    auditor: Audit,
    st: State, me: Annotated[Principal, Depends(allow(*ANY_USER))]
) -> dict[str, Any]:
    """Every site → room → camera (with its seats), in config order."""
    cfg = st.cfg
    await auditor.observer("sites_view")
    return {
        "sites": [
            {
                "id": s.id,
                "name": s.name or s.id,
                "rooms": [
                    {
                        "id": r.id,
                        "name": r.name or r.id,
                        "cameras": [
                            {
                                "id": c.id,
                                "name": c.name or c.id,
                                "width": c.width,
                                "height": c.height,
                                "seats": [seat.id for seat in r.seats_for(c.id)],
                            }
                            for c in r.cameras
                        ],
                    }
                    for r in s.rooms
                ],
            }
            for s in cfg.sites
        ],
        "timezone": cfg.hub.timezone,
    }


@router.get("/api/cameras/status", response_model=CameraStatusList)
async def camera_status(
    st: State,
    request: Request, me: Annotated[Principal, Depends(allow(*ANY_USER))]
) -> dict[str, Any]:
    """Status of every configured camera: online, fps, last frame age (s), open alerts by rule.

    Polled every ~2 s by the wall, so it is not audit-logged (the wall itself is, on load).
    Several hub nodes: the cameras of sites another node holds come from that node
    (``_status_from_holders``).
    """
    statuses = st.camera_status()
    await _status_from_holders(st, request, statuses)

    def q(s: Session) -> list[tuple[str, str, str, str, int]]:
        rows = s.execute(
            select(EventRow.site, EventRow.room, EventRow.camera, EventRow.rule, func.count())
            .where(EventRow.status.in_(("new", "acknowledged")))
            .group_by(EventRow.site, EventRow.room, EventRow.camera, EventRow.rule)
        )
        return [(a, b, c, d, int(n)) for a, b, c, d, n in rows]

    for site, room, cam, rule, n in await run_db(st.db, q):
        d = statuses.get((site, room, cam))
        if d is not None:
            d.setdefault("alerts", {})[rule] = n
    return {"cameras": [{"alerts": {}, **d} for d in statuses.values()]}


@router.get("/api/live/{site}/{room}/{camera}/thumb.jpg", **media("image/jpeg"))
async def live_thumb(
    st: State,
    site: str,
    room: str,
    camera: str,
    request: Request,
    me: Annotated[Principal, Depends(allow(*LIVE_VIEWERS))],
) -> Response:
    """The camera's latest live picture as a small JPEG (320 px, new at most 2×/s) for a wall tile.

    One JPEG per camera and frame, shared by every viewer; ``ETag`` is the picture's number, so
    ``If-None-Match`` answers 304 when nothing is new.  ``X-Frame-Age`` = seconds since the hub
    received it.  404 unknown camera, 503 no recorder, 409 no picture newer than 3 s (offline).
    Audited per viewing: ``live_view`` (``quality: thumb``) when a user starts watching the camera
    and ``live_view_end`` (seconds) after 15 s without a request from them.
    Several hub nodes: a camera whose site another node holds is asked from that node
    (``_thumb_via_holder``; it audits the viewing).
    """
    if not any((s.id, r.id, cam.id) == (site, room, camera) for s, r, cam in st.cfg.cameras()):
        raise ApiError(404, "err.unknown_camera")
    rec = st.services.recorder
    if rec is None:
        raise ApiError(503, "err.live_unavailable")
    forwarded = await _thumb_via_holder(st, request, site, room, camera)
    if forwarded is not None:
        return forwarded
    await _thumb_viewed(st, me, CameraId(site, room, camera).path, client_ip(request))
    st.live.sweep_thumb_viewings(lambda v: _thumb_view_end(st, v))
    got = await st.live.thumbs(rec).get(site, room, camera)
    if got is None:
        raise ApiError(409, "err.camera_offline")
    seq, jpeg, age = got
    headers = {"ETag": f'"{seq}"', "Cache-Control": "no-store", "X-Frame-Age": f"{age:.2f}"}
    if request.headers.get("if-none-match") == f'"{seq}"':
        return Response(status_code=304, headers=headers)
    return Response(jpeg, media_type="image/jpeg", headers=headers)


MAX_BATCH = 200


@router.get("/api/live/thumbs", response_model=Thumbs)
async def live_thumbs(
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow(*LIVE_VIEWERS))],
    c: Annotated[list[str] | None, Query(max_length=MAX_BATCH)] = None,
) -> dict[str, Any]:
    """The wall's tiles in one request: ``c=site/room/camera:seq`` per tile on screen (``seq`` =
    the picture the tile shows, 0 for none).  Answers ``frames`` {camera: {seq, age, jpeg (base64)}}
    for cameras with a newer picture, ``offline`` [camera] for those without a picture newer than
    3 s; unknown cameras are ignored.  Same JPEGs, sharing and per-viewing audit as ``thumb.jpg``.
    Several hub nodes: the tiles of sites another node holds are asked from it in one request
    per holder (``_thumbs_from_holders``; it audits those viewings).
    """
    rec = st.services.recorder
    if rec is None:
        raise ApiError(503, "err.live_unavailable")
    known = {CameraId(s.id, r.id, cam.id).path for s, r, cam in st.cfg.cameras()}
    hub = st.live.thumbs(rec)
    ip = client_ip(request)
    wanted: dict[str, str] = {}
    for item in c or []:
        target, _, have = item.rpartition(":")
        if target in known:
            wanted[target] = have
    # Several hub nodes: tiles of sites another node holds come from it (it audits the viewing).
    frames, offline = await _thumbs_from_holders(st, request, wanted)
    for target in wanted:
        await _thumb_viewed(st, me, target, ip)
    pictures = await hub.get_many([CameraId.parse(t).as_tuple() for t in wanted])
    for target, have in wanted.items():
        got = pictures[CameraId.parse(target).as_tuple()]
        if got is None:
            offline.append(target)
            continue
        seq, jpeg, age = got
        if have != str(seq):
            frames[target] = {"seq": seq, "age": round(age, 2), "jpeg": base64.b64encode(jpeg).decode()}
    st.live.sweep_thumb_viewings(lambda v: _thumb_view_end(st, v))
    return {"frames": frames, "offline": offline}


async def _thumb_viewed(state: Any, me: Principal, target: str, ip: str | None) -> None:
    """Note that ``me`` asked for ``target``'s thumbnail: audit ``live_view`` when this starts a
    viewing, ``live_view_end`` for the viewings that ended meanwhile."""
    starts, ended = state.live.thumb_audit.touch(me.username, me.role, target, ip)
    for v in ended:
        await _thumb_view_end(state, v)
    if starts:
        await audit.record(
            state.db,
            me.username,
            "live_view",
            role=me.role,
            target=target,
            ip=ip,
            details={"quality": "thumb"},
        )


async def _thumb_view_end(state: Any, v: ThumbViewing) -> None:
    await audit.record(
        state.db,
        v.username,
        "live_view_end",
        role=v.role,
        target=v.target,
        ip=v.ip,
        details={"quality": "thumb", "seconds": round(v.last - v.started, 1)},
    )


class OfferIn(BaseModel):
    sdp: Annotated[str, Field(min_length=10, max_length=100_000)]
    type: Literal["offer"]
    quality: Literal["grid", "full"] = "grid"


async def _holders(st: Any, request: Request, sites: set[str]) -> dict[str, set[str]]:
    """Holder URL → the ones of ``sites`` that another hub node holds (empty: one node, or a
    request another node forwarded here)."""
    leases = st.services.leases
    if leases is None or request.headers.get(PROXIED_HEADER):
        return {}
    out: dict[str, set[str]] = {}
    for site in sites:
        if leases.holds(site):
            continue
        url = await leases.holder_url(site)
        if url and url.rstrip("/") != st.cfg.hub.url.rstrip("/"):
            out.setdefault(url, set()).add(site)
    return out


def _forward_headers(st: Any, request: Request) -> dict[str, str]:
    headers = {PROXIED_HEADER: st.services.leases.node_id}
    for name in ("cookie", "x-csrf-token", "user-agent"):
        if name in request.headers:
            headers[name] = request.headers[name]
    return headers


async def _thumbs_from_holders(
    st: Any, request: Request, wanted: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The tiles of ``wanted`` whose sites other nodes hold, asked from them (removed from
    ``wanted``): their ``frames`` and ``offline``; a holder that does not answer: offline."""
    holders = await _holders(st, request, {CameraId.parse(t).site for t in wanted})
    frames: dict[str, dict[str, Any]] = {}
    offline: list[str] = []
    if not holders:
        return frames, offline
    import httpx

    async with httpx.AsyncClient(timeout=3.0, trust_env=False) as c:
        for url, sites in holders.items():
            mine = {t: have for t, have in wanted.items() if CameraId.parse(t).site in sites}
            for t in mine:
                del wanted[t]
            try:
                r = await c.get(f"{url}/api/live/thumbs", params=[("c", f"{t}:{h}") for t, h in mine.items()],
                                headers=_forward_headers(st, request))
                r.raise_for_status()
                doc = r.json()
                frames.update({t: v for t, v in doc["frames"].items() if t in mine})
                offline += [t for t in doc["offline"] if t in mine]
            except (httpx.HTTPError, ValueError, KeyError) as e:
                log.warning("thumbnails from holder %s failed: %s", url, e)
                offline += list(mine)
    return frames, offline


async def _thumb_via_holder(st: Any, request: Request, site: str, room: str, camera: str) -> Response | None:
    """Several hub nodes (issue #14): the picture of a camera whose site another node holds is
    that node's (``GET …/thumb.jpg`` there, with the browser's session cookie and
    ``If-None-Match``, 3 s timeout); its 200 / 304 / 409 are passed on with their ``ETag`` and
    ``X-Frame-Age``.  None: no other node holds the site.  A holder that does not answer: 409
    (offline, like the wall's batch)."""
    holders = await _holders(st, request, {site})
    if not holders:
        return None
    holder = next(iter(holders))
    headers = _forward_headers(st, request)
    if "if-none-match" in request.headers:
        headers["if-none-match"] = request.headers["if-none-match"]
    import httpx

    try:
        async with httpx.AsyncClient(timeout=3.0, trust_env=False) as c:
            r = await c.get(f"{holder}/api/live/{site}/{room}/{camera}/thumb.jpg", headers=headers)
    except httpx.HTTPError as e:
        log.warning("thumbnail site=%s room=%s camera=%s: holder %s unreachable: %s",
                    site, room, camera, holder, e)
        raise ApiError(409, "err.camera_offline") from None
    passed = {k: r.headers[k] for k in ("etag", "x-frame-age") if k in r.headers}
    if r.status_code == 200:
        return Response(r.content, media_type="image/jpeg", headers={**passed, "Cache-Control": "no-store"})
    if r.status_code == 304:
        return Response(status_code=304, headers={**passed, "Cache-Control": "no-store"})
    log.warning("thumbnail site=%s room=%s camera=%s: holder %s answered HTTP %d",
                site, room, camera, holder, r.status_code)
    if r.status_code in (401, 403):
        raise ApiError(r.status_code, {401: "err.not_logged_in", 403: "err.forbidden"}[r.status_code])
    raise ApiError(409, "err.camera_offline")


async def _status_from_holders(st: Any, request: Request, statuses: dict[Any, dict[str, Any]]) -> None:
    """Several hub nodes (issue #14): a camera's status is its ingesting node's memory, so the
    cameras of sites another node holds are asked from that node (``GET /api/cameras/status``
    with the browser's session cookie, 2 s timeout, one request per holder); a holder that does
    not answer leaves its cameras offline here."""
    holders = await _holders(st, request, {site for site, _room, _cam in statuses})
    if not holders:
        return
    import asyncio

    import httpx

    headers = _forward_headers(st, request)

    async def ask(c: httpx.AsyncClient, url: str) -> tuple[str, list[dict[str, Any]]]:
        try:
            r = await c.get(f"{url}/api/cameras/status", headers=headers)
            r.raise_for_status()
            return url, list(r.json()["cameras"])
        except (httpx.HTTPError, ValueError, KeyError) as e:
            log.warning("camera status from holder %s failed: %s", url, e)
            return url, []

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as c:
        answers = await asyncio.gather(*(ask(c, url) for url in holders))
    for url, cams in answers:
        for d in cams:
            key = (d.get("site"), d.get("room"), d.get("camera"))
            if key in statuses and key[0] in holders[url]:
                statuses[key] = {k: v for k, v in d.items() if k != "alerts"}


#: Marks an offer one hub node forwards to another (never forwarded twice).
PROXIED_HEADER = "X-Evalwatch-Proxied"


async def _offer_via_holder(
    st: Any, request: Request, site: str, room: str, camera: str, body: OfferIn
) -> dict[str, str] | None:
    """Several hub nodes (issue #14): the camera's site is ingested by another node.  Forward the
    browser's offer there (its session cookie and CSRF token: login sessions live in the shared
    database and the cookie is signed with the shared ``hub.secret_key``) and return that node's
    answer; the browser then exchanges media with the holder directly (its ICE candidates are
    in the answer).  None: no other node holds the site."""
    holders = await _holders(st, request, {site})
    if not holders:
        return None
    holder = next(iter(holders))
    headers = _forward_headers(st, request)
    import httpx

    try:
        async with httpx.AsyncClient(timeout=15, trust_env=False) as c:
            r = await c.post(f"{holder}/api/live/{site}/{room}/{camera}/offer",
                             json=body.model_dump(), headers=headers)
    except httpx.HTTPError as e:
        log.warning("live offer for site=%s room=%s camera=%s: holder %s unreachable: %s",
                    site, room, camera, holder, e)
        raise ApiError(503, "err.live_unavailable") from None
    if r.status_code == 200:
        log.info("live offer site=%s room=%s camera=%s answered by the holder %s", site, room, camera, holder)
        return {"sdp": str(r.json()["sdp"]), "type": str(r.json()["type"])}
    log.warning("live offer site=%s room=%s camera=%s: holder %s answered HTTP %d",
                site, room, camera, holder, r.status_code)
    if r.status_code in (401, 403, 409, 422):
        code = {401: "err.not_logged_in", 403: "err.forbidden", 409: "err.camera_offline",
                422: "err.bad_sdp"}[r.status_code]
        raise ApiError(r.status_code, code)
    raise ApiError(503, "err.live_unavailable")


@router.post("/api/live/{site}/{room}/{camera}/offer", response_model=SdpAnswer)
async def live_offer(
    auditor: Audit,
    st: State,
    request: Request,
    site: str,
    room: str,
    camera: str,
    body: OfferIn,
    me: Annotated[Principal, Depends(allow(*LIVE_VIEWERS))],
) -> dict[str, str]:
    """Answer a browser's WebRTC offer with the camera's live track (audit ``live_view``).

    404 unknown camera, 503 no recorder on this hub, 409 camera offline, 422 unusable offer,
    429 when the user already has ``hub.max_live_per_user`` streams open.
    A camera whose site another hub node holds: the offer is forwarded to it (the answer is
    that node's; ``_offer_via_holder``).
    """
    if (site, room, camera) not in st.camera_status():
        raise ApiError(404, "err.unknown_camera")
    rec = st.services.recorder
    if rec is None:
        raise ApiError(503, "err.live_unavailable")
    cap = st.cfg.hub.max_live_per_user
    if sum(1 for v in st.live.sessions if v.username == me.username) >= cap:  # finding 13 of #12
        raise ApiError(429, "err.too_many_connections",
                       f"{me.username} already watches {cap} live streams (hub.max_live_per_user = {cap})")
    if body.quality == "grid":
        track = rec.live_track(site, room, camera, width=GRID_WIDTH, fps=GRID_FPS)
    else:
        track = rec.live_track(site, room, camera)
    if track is None:
        answer = await _offer_via_holder(st, request, site, room, camera, body)
        if answer is not None:  # the holder audited the live_view
            return answer
        raise ApiError(409, "err.camera_offline")
    target = CameraId(site, room, camera).path
    st.metrics.live_viewers.inc()  # decremented by on_live_end (or below on failure)
    try:
        answer, sess = await st.live.answer(body.sdp, body.type, track, me.username, target, me.session)
    except ValueError as e:
        st.metrics.live_viewers.dec()
        raise ApiError(422, "err.bad_sdp") from e
    # Revoking the viewer's login (logout, password change, deactivation) ends the stream at once
    # (finding 5 of #12); grid pictures are re-authenticated on every request anyway.
    sess.unwatch = st.logins.watch(me.session, me.user_id, lambda: st.live.close_login(me.session))
    await auditor(
        "live_view",
        target=target,
        details={"quality": body.quality},
    )
    return answer


async def on_live_end(state: Any, sess: LiveSession) -> None:
    """Audit the end of a live stream (seconds watched) and update the viewer gauge."""
    import time

    if not sess.established:
        return
    state.metrics.live_viewers.dec()
    await audit.record(
        state.db,
        sess.username,
        "live_view_end",
        target=sess.target,
        details={"seconds": round(time.time() - sess.started, 1)},
    )
