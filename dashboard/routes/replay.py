"""Replay of archived footage: segment lists with event markers, ranged segment bytes, chain
verification badge, evidence export.

Segments are read from ``storage.models.Segment`` (one ~10 s H.264 MP4 each) and their bytes from
the segments bucket through :func:`segment_video` (HTTP ``Range`` supported, so the browser's
``<video>`` element can seek inside a segment without downloading it whole).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import ChainCheck, ReplayIndex, RowId, media
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.experts import attach
from dashboard.policy import Principal, allow, client_ip
from dashboard.routes.common import fetch_object
from dashboard.state import DashState
from storage.common import CameraId, as_utc
from storage.incident import EventItem
from storage.models import EventRow, Segment

router = APIRouter(tags=["replay"])

REPLAYERS = ("admin", "supervisor", "auditor")
EXPORTERS = ("admin", "auditor")
MAX_RANGE = timedelta(hours=24)
MAX_EXPORT = timedelta(minutes=30)
#: A user's fetches of one segment within this many seconds are one audited ``segment_view``.
SEGMENT_AUDIT_GAP = 600.0
# At most 18 digits (a segment is far below 10**18 bytes): a number of thousands of digits used
# to reach int() and fail with a 500 (issue #12, finding 10); now it is a 416 like any bad range.
_RANGE_RE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")


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
    start, end = as_utc(start), as_utc(end)
    if end <= start or end - start > limit:
        raise ApiError(422, "err.bad_range")
    return start, end


#: No segment is longer: ingest refuses one above 1.5 x storage.segment_seconds + 1 s and
#: segment_seconds is at most 600.  The replay's segment query starts its index range this far
#: before ``start`` instead of at the camera's first segment (a year of rows: issue #17).
MAX_SEGMENT = timedelta(hours=1)


def segments_query(
    site: str, room: str, camera: str, start: datetime, end: datetime
) -> Select[Segment]:
    """A camera's segments overlapping ``[start, end)``, oldest first: one bounded range of
    ``ix_segments_camera_time`` (``bench/dbgrowth.py``, tests/test_db_growth.py)."""
    return (
        select(Segment)
        .where(Segment.site == site, Segment.room == room, Segment.camera == camera)
        .where(Segment.start < end, Segment.start > start - MAX_SEGMENT, Segment.end > start)
        .order_by(Segment.start)
    )


def events_queries(
    site: str, room: str, camera: str, start: datetime, end: datetime
) -> tuple[Select[EventRow], Select[EventRow]]:
    """The replay's timeline markers as two index ranges (a year of rows, issue #17): the
    camera's events that ended after ``start`` and began before ``end`` (``ix_events_camera_end``:
    the rows ending after ``start``, filtered inside the index), and its events still open
    (``ended_at`` null: one equality range).  One statement with ``ended_at IS NULL OR ...`` made
    SQLite walk the camera's whole history before ``end`` instead."""
    cam = (EventRow.site == site, EventRow.room == room, EventRow.camera == camera)
    ended = select(EventRow).where(*cam, EventRow.ended_at > start, EventRow.started_at < end)
    still_open = select(EventRow).where(*cam, EventRow.ended_at.is_(None))
    return ended, still_open


def replay_events(
    s: Session, site: str, room: str, camera: str, start: datetime, end: datetime, limit: int = 2000
) -> list[EventRow]:
    """A camera's events overlapping ``[start, end)``, oldest first, at most ``limit``."""
    ended, still_open = events_queries(site, room, camera, start, end)
    rows = list(s.scalars(ended)) + [e for e in s.scalars(still_open) if as_utc(e.started_at) < end]
    rows.sort(key=lambda e: (as_utc(e.started_at), e.id))
    return rows[:limit]


def _segments(s: Session, site: str, room: str, camera: str, start: datetime, end: datetime) -> list[Segment]:
    return list(s.scalars(segments_query(site, room, camera, start, end)))


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


@router.get("/api/replay/{site}/{room}/{camera}", response_model=ReplayIndex)
async def replay_index(
    st: State,
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
    start, end = _check_range(st, site, room, camera, start, end)

    def q(s: Session) -> dict[str, Any]:
        segs = [_seg_dict(g) for g in _segments(s, site, room, camera, start, end)]
        evs = replay_events(s, site, room, camera, start, end)
        audit.add(
            s,
            me.username,
            "replay",
            role=me.role,
            target=CameraId(site, room, camera).path,
            ip=client_ip(request),
            details={"start": start.isoformat(), "end": end.isoformat(), "segments": len(segs)},
        )
        items = [EventItem.from_row(e) for e in evs]
        attach(s, items, me.role)
        return {"segments": segs, "events": items}

    out = await run_db(st.db, q)
    return {"start": start.isoformat(), "end": end.isoformat(), **out}


@router.get("/api/segments/{segment_id}/video", **media("video/mp4"))
async def segment_video(
    auditor: Audit,
    st: State,
    segment_id: RowId, request: Request, me: Annotated[Principal, Depends(allow(*REPLAYERS))]
) -> Response:
    """The segment's MP4 bytes; honours a single ``Range: bytes=a-b`` (206) — 416 when unsatisfiable.

    Audit ``segment_view`` (camera, segment id, key, start) at the first fetch of a segment by a
    user and again after ``SEGMENT_AUDIT_GAP`` seconds: a ``<video>`` element's many range
    requests of one viewing make one row, a fetch by id outside the replay view is logged too
    (finding 13 of #12)."""
    seg = await run_db(st.db, lambda s: s.get(Segment, segment_id))
    if seg is None:
        raise ApiError(404, "err.segment_not_found")
    now = time.monotonic()
    seen = st.segment_audit.get((me.username, segment_id))
    if seen is None or now - seen > SEGMENT_AUDIT_GAP:
        if len(st.segment_audit) > 10_000:  # forget the old ones
            for k in [k for k, t in st.segment_audit.items() if now - t > SEGMENT_AUDIT_GAP]:
                del st.segment_audit[k]
        st.segment_audit[(me.username, segment_id)] = now
        await auditor("segment_view", target=CameraId(seg.site, seg.room, seg.camera).path, details={
            "segment_id": segment_id, "key": seg.key, "start": seg.start.isoformat(), "seq": seg.seq})
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
    """:func:`sessions.verify.verify_replay_window` over the range, as ``{ok, segments, links,
    problem, message, notes}``.

    The window's links and segments in object storage are checked against the database's link
    hashes, and those against the nearest closed session's seal (signature checked with the hub's
    key files): neither a consistent rewrite in object storage nor one in the database verifies,
    and the object-storage cost is bounded by the window (finding 8 of #12).  502 when S3 is down.
    """
    from sessions.verify import verify_replay_window

    objects = st.services.objects
    if objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        res = await verify_replay_window(
            st.db, objects, st.cfg.storage.data_dir, site, room, camera, start, end,
            bucket=st.cfg.storage.s3.bucket_segments,
        )
    except Exception as e:
        st.metrics.s3_errors.labels(op="verify").inc()
        raise ApiError(502, "err.storage_unavailable") from e
    out = {
        "ok": bool(res.ok),
        "segments": res.segments_checked,
        "links": res.links_checked,
        "problem": res.problem,
        "message": res.message,
        "notes": list(res.notes),
    }
    if res.ok:
        # A segment overlapping a closed session's sealed window but not in its seal was added
        # after the fact (finding 4 of #12): the chain alone cannot tell, the seal can.
        from sessions.sealed import added_after_seal

        late = await run_db(st.db, lambda s: added_after_seal(s, site, room, camera, start, end))
        if late:
            out.update(ok=False, problem="inserted", message=late[0] + (
                f" (and {len(late) - 1} more)" if len(late) > 1 else ""))
    return out


@router.get("/api/replay/{site}/{room}/{camera}/verify", response_model=ChainCheck)
async def replay_verify(
    auditor: Audit,
    st: State,
    site: str,
    room: str,
    camera: str,
    me: Annotated[Principal, Depends(allow(*REPLAYERS))],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Whether the hash chain of the camera verifies, fetching the segments in the range (the
    replay badge).  Audit ``verify``."""
    start, end = _check_range(st, site, room, camera, start, end)
    out = await _verify(st, site, room, camera, start, end)
    await auditor(
        "verify",
        target=CameraId(site, room, camera).path,
        details={"start": start.isoformat(), "end": end.isoformat(), "ok": out["ok"]},
    )
    return out


@router.get("/api/export/{site}/{room}/{camera}", **media("application/zip"))
async def export_evidence(
    auditor: Audit,
    st: State,
    site: str,
    room: str,
    camera: str,
    me: Annotated[Principal, Depends(allow(*EXPORTERS))],
    start: datetime,
    end: datetime,
    _fmt: Annotated[str, Query(alias="format", pattern="^zip$")] = "zip",
) -> Response:
    """The range's evidence zip in the ``sessions.export`` format (chain links up to a signed
    head, segments as archived, events + snapshots, signed manifest): ``evalwatch verify FILE.zip``
    checks it offline.  At most 30 minutes.  Audit ``export``."""
    from dashboard.evidence import (
        EvidenceError,
        NoFootage,
        SealNotTrusted,
        export_camera_range,
        remove_export,
    )
    from sessions.export import ExportTooLarge

    start, end = _check_range(st, site, room, camera, start, end, MAX_EXPORT)
    if st.services.objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        r = await export_camera_range(st, site, room, camera, start, end, me.username)
    except NoFootage as e:
        raise ApiError(422, "err.no_footage", str(e)) from None
    except SealNotTrusted as e:
        raise ApiError(409, "err.conflict", str(e)) from None
    except ExportTooLarge as e:  # finding 13 of #12
        raise ApiError(413, "err.export_too_large", str(e)) from None
    except EvidenceError as e:
        raise ApiError(502, "err.storage_unavailable", str(e)) from None
    except OSError as e:
        st.metrics.s3_errors.labels(op="export").inc()
        raise ApiError(502, "err.storage_unavailable") from e
    except Exception as e:
        if type(e).__module__.startswith(("minio", "urllib3", "storage", "aiohttp", "botocore")):
            st.metrics.s3_errors.labels(op="export").inc()
            raise ApiError(502, "err.storage_unavailable") from e
        raise
    await auditor(
        "export",
        target=CameraId(site, room, camera).path,
        details={
            "start": start.isoformat(),
            "end": end.isoformat(),
            "segments": r.segments,
            "links": r.links,
            "anchor": r.anchor,
            "session_id": r.session_id,
            "file": r.path.name,
        },
    )
    return FileResponse(
        r.path,
        media_type="application/zip",
        filename=r.path.name,
        background=BackgroundTask(remove_export, r.path),
    )
