"""Replay of archived footage: segment lists with event markers, ranged segment bytes, chain
verification badge, evidence export.

Segments are read from ``storage.models.Segment`` (one ~10 s H.264 MP4 each) and their bytes from
the segments bucket through :func:`segment_video` (HTTP ``Range`` supported, so the browser's
``<video>`` element can seek inside a segment without downloading it whole).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.errors import ApiError
from dashboard.policy import Principal, allow, client_ip
from dashboard.routes.common import fetch_object
from dashboard.routes.events import event_dict
from dashboard.state import DashState, get_state
from storage.models import Event, Segment

router = APIRouter(tags=["replay"])

REPLAYERS = ("admin", "supervisor", "auditor")
EXPORTERS = ("admin", "auditor")
MAX_RANGE = timedelta(hours=24)
MAX_EXPORT = timedelta(minutes=30)
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _check_range(
    st: DashState,
    site: str,
    room: str,
    camera: str,
    start: datetime,
    end: datetime,
    limit: timedelta = MAX_RANGE,
) -> tuple[datetime, datetime]:
    if (site, room, camera) not in st.camera_status():
        raise ApiError(404, "err.unknown_camera")
    start, end = _aware(start), _aware(end)
    if end <= start or end - start > limit:
        raise ApiError(422, "err.bad_range")
    return start, end


def _segments(s: Session, site: str, room: str, camera: str, start: datetime, end: datetime) -> list[Segment]:
    stmt = (
        select(Segment)
        .where(Segment.site == site, Segment.room == room, Segment.camera == camera)
        .where(Segment.start < end, Segment.end > start)
        .order_by(Segment.start)
    )
    return list(s.scalars(stmt))


def _seg_dict(g: Segment) -> dict[str, Any]:
    return {
        "id": g.id,
        "start": g.start.isoformat(),
        "end": g.end.isoformat(),
        "duration": (g.end - g.start).total_seconds(),
        "url": f"/api/segments/{g.id}/video",
        "seq": g.seq,
        "size": g.size,
        "sha256": g.sha256,
    }


@router.get("/api/replay/{site}/{room}/{camera}")
async def replay_index(
    site: str,
    room: str,
    camera: str,
    request: Request,
    me: Annotated[Principal, Depends(allow(*REPLAYERS))],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Segments overlapping ``[start, end)`` (by start) and the camera's events in that range
    (timeline markers).  Audit ``replay`` with the camera and range."""
    st = get_state(request)
    start, end = _check_range(st, site, room, camera, start, end)

    def q(s: Session) -> dict[str, Any]:
        segs = [_seg_dict(g) for g in _segments(s, site, room, camera, start, end)]
        evs = s.scalars(
            select(Event)
            .where(Event.site == site, Event.room == room, Event.camera == camera)
            .where(Event.started_at < end)
            .where((Event.ended_at.is_(None)) | (Event.ended_at > start))
            .order_by(Event.started_at)
            .limit(2000)
        )
        audit.add(
            s,
            me.username,
            "replay",
            role=me.role,
            target=f"{site}/{room}/{camera}",
            ip=client_ip(request),
            details={"start": start.isoformat(), "end": end.isoformat(), "segments": len(segs)},
        )
        return {"segments": segs, "events": [event_dict(e) for e in evs]}

    out = await run_db(st.db, q)
    return {"start": start.isoformat(), "end": end.isoformat(), **out}


@router.get("/api/segments/{segment_id}/video")
async def segment_video(
    segment_id: int, request: Request, me: Annotated[Principal, Depends(allow(*REPLAYERS))]
) -> Response:
    """The segment's MP4 bytes; honours a single ``Range: bytes=a-b`` (206) — 416 when unsatisfiable."""
    st = get_state(request)
    seg = await run_db(st.db, lambda s: s.get(Segment, segment_id))
    if seg is None:
        raise ApiError(404, "err.segment_not_found")
    size = int(seg.size)
    rng = request.headers.get("range")
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=86400"}
    if rng:
        m = _RANGE_RE.match(rng.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if m.group(1):
            first = int(m.group(1))
            last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:
            first, last = max(0, size - int(m.group(2))), size - 1
        if first >= size or last < first:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        data = await fetch_object(
            st, st.cfg.storage.s3.bucket_segments, seg.key, "segment", first, last - first + 1
        )
        headers["Content-Range"] = f"bytes {first}-{first + len(data) - 1}/{size}"
        return Response(data, status_code=206, media_type=seg.content_type or "video/mp4", headers=headers)
    data = await fetch_object(st, st.cfg.storage.s3.bucket_segments, seg.key, "segment")
    return Response(data, media_type=seg.content_type or "video/mp4", headers=headers)


async def _verify(
    st: DashState, site: str, room: str, camera: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """``storage.verify.verify_chain`` over the range, as ``{ok, segments, links, problem, message}``.

    The chain is verified from object storage alone (the DB is not trusted); 502 when S3 is down.
    """
    from storage.verify import verify_chain

    objects = st.services.objects
    if objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        res = await verify_chain(
            objects, site, room, camera, start, end, bucket=st.cfg.storage.s3.bucket_segments
        )
    except Exception as e:
        st.metrics.s3_errors.labels(op="verify").inc()
        raise ApiError(502, "err.storage_unavailable") from e
    return {
        "ok": bool(res.ok),
        "segments": res.segments_checked,
        "links": res.links_checked,
        "problem": res.problem,
        "message": res.message,
    }


@router.get("/api/replay/{site}/{room}/{camera}/verify")
async def replay_verify(
    site: str,
    room: str,
    camera: str,
    request: Request,
    me: Annotated[Principal, Depends(allow(*REPLAYERS))],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Whether the hash chain of the camera verifies, fetching the segments in the range (the
    replay badge).  Audit ``verify``."""
    st = get_state(request)
    start, end = _check_range(st, site, room, camera, start, end)
    out = await _verify(st, site, room, camera, start, end)
    await audit.record(
        st.db,
        me.username,
        "verify",
        role=me.role,
        target=f"{site}/{room}/{camera}",
        ip=client_ip(request),
        details={"start": start.isoformat(), "end": end.isoformat(), "ok": out["ok"]},
    )
    return out


@router.get("/api/export/{site}/{room}/{camera}")
async def export_evidence(
    site: str,
    room: str,
    camera: str,
    request: Request,
    me: Annotated[Principal, Depends(allow(*EXPORTERS))],
    start: datetime,
    end: datetime,
    _fmt: Annotated[str, Query(alias="format", pattern="^zip$")] = "zip",
) -> Response:
    """A zip of the range's segments + ``manifest.json`` (segment hashes and chain links, events,
    who exported and when).  At most 30 minutes.  Audit ``export``."""
    st = get_state(request)
    start, end = _check_range(st, site, room, camera, start, end, MAX_EXPORT)

    def q(s: Session) -> tuple[list[dict[str, Any]], list[tuple[str, str]], list[dict[str, Any]]]:
        segs = _segments(s, site, room, camera, start, end)
        evs = s.scalars(
            select(Event)
            .where(Event.site == site, Event.room == room, Event.camera == camera)
            .where(Event.started_at < end, Event.started_at >= start - timedelta(hours=1))
        )
        meta = [
            {**_seg_dict(g), "key": g.key, "prev_hash": g.prev_hash, "link_hash": g.link_hash} for g in segs
        ]
        return (
            meta,
            [(g.key, f"segments/{g.start.strftime('%Y%m%dT%H%M%SZ')}_{g.seq}.mp4") for g in segs],
            [event_dict(e) for e in evs],
        )

    meta, files, events = await run_db(st.db, q)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for key, name in files:
            z.writestr(name, await fetch_object(st, st.cfg.storage.s3.bucket_segments, key, "export"))
        manifest = {
            "camera": f"{site}/{room}/{camera}",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "exported_by": me.username,
            "exported_at": datetime.now(UTC).isoformat(),
            "segments": meta,
            "events": events,
        }
        z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    await audit.record(
        st.db,
        me.username,
        "export",
        role=me.role,
        target=f"{site}/{room}/{camera}",
        ip=client_ip(request),
        details={"start": start.isoformat(), "end": end.isoformat(), "segments": len(files)},
    )
    fname = f"evidence_{site}_{room}_{camera}_{start.strftime('%Y%m%dT%H%M%SZ')}.zip"
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{fname}"'},
    )
