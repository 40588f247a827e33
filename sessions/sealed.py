"""Sealed windows: footage of a closed session's cameras cannot be added after its seal.

Finding 4 of issue #12: an agent token could archive a segment overlapping a sealed window (a
closed session's ``[started_at, closed_at)`` for one of its cameras), the replay badge said OK
and a camera-range export signed it.  A segment that overlaps a sealed window, even by 1 ms, and
is not inside that seal's ``first_seq..head_seq`` was added after the seal:

* :func:`sealed_conflict` — for a segment about to be archived (``storage.segments.SegmentStore``
  calls it as its ``guard``, injected by ``evalwatch.hub``, inside the insert's transaction): the
  refusal message, or None;
* :func:`added_after_seal` — for segments already archived (a row written around the guard: by a
  hub without it, during the close itself, or straight into the database): what the replay badge
  and the camera-range export report instead of OK.

Everything here runs inside the caller's DB session (sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sessions.models import EvalSession, SessionHead
from storage.common import CameraId
from storage.models import Segment


@dataclass(frozen=True)
class SealedWindow:
    """One closed session's seal of one camera."""

    code: str
    start: datetime
    end: datetime
    first_seq: int
    head_seq: int


def sealed_windows(
    s: Session, site: str, room: str, camera: str, start: datetime, end: datetime
) -> list[SealedWindow]:
    """The sealed windows of the camera overlapping ``[start, end)``."""
    rows = s.execute(
        select(EvalSession, SessionHead)
        .join(SessionHead, SessionHead.session_id == EvalSession.id)
        .where(SessionHead.site == site, SessionHead.room == room, SessionHead.camera == camera)
        .where(EvalSession.status == "closed", EvalSession.closed_at.is_not(None))
        .where(EvalSession.closed_at > start)
    ).all()
    out = []
    for sess, head in rows:
        w_start = sess.started_at or sess.planned_start
        assert sess.closed_at is not None
        if w_start < end:
            out.append(SealedWindow(sess.code, w_start, sess.closed_at, head.first_seq, head.head_seq))
    return out


def sealed_conflict(
    s: Session, site: str, room: str, camera: str, start: datetime, end: datetime
) -> str | None:
    """Why a *new* segment of the camera over ``[start, end)`` must be refused (it overlaps a sealed
    window), or None.  A new segment always lands after every seal's head, so any overlap is
    footage added after the fact."""
    for w in sealed_windows(s, site, room, camera, start, end):
        return (
            f"segment {CameraId(site, room, camera).path} {start.isoformat()}..{end.isoformat()} overlaps "
            f"the sealed window of session {w.code} ({w.start.isoformat()}..{w.end.isoformat()}); "
            "footage of a sealed session cannot be added after its seal"
        )
    return None


def added_after_seal(
    s: Session, site: str, room: str, camera: str, start: datetime, end: datetime
) -> list[str]:
    """Archived segments of the camera in ``[start, end)`` that overlap a sealed window without
    being part of that seal (seq outside ``first_seq..head_seq``), one message each."""
    out = []
    cam = (Segment.site == site) & (Segment.room == room) & (Segment.camera == camera)
    for w in sealed_windows(s, site, room, camera, start, end):
        rows = s.scalars(
            select(Segment)
            .where(cam, Segment.start < end, Segment.end > start)
            .where(Segment.start < w.end, Segment.end > w.start)
            .where((Segment.seq > w.head_seq) | (Segment.seq < w.first_seq))
            .order_by(Segment.seq)
        )
        for r in rows:
            out.append(
                f"segment {r.key} (seq {r.seq}) overlaps the sealed window of session {w.code} "
                f"but is not in its seal (seq {w.first_seq}..{w.head_seq}): added after the seal"
            )
    return out
