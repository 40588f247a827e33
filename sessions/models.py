"""Tables of evaluation sessions (schema: ``storage/migrations/versions/0002_sessions.py``).

* ``eval_sessions`` — one row per session: project, bid codes, planned hours, status
  (``scheduled`` → ``running`` → ``closed``), who started/closed it and when, the seating seed,
  and the retention outcome recorded at sealing.
* ``session_cameras`` — the rooms and cameras involved (a room appears through its cameras).
* ``session_seats`` — the experts and their assigned seats (``expert``, ``bid``, ``site``/``room``,
  ``seat``); an expert sits once per session and a seat holds one expert.
* ``session_heads`` — the seal: per camera the final chain head (``head_seq``, ``head_hash``),
  the first chain position of the session (``first_seq``), the signed canonical payload and its
  Ed25519 signature (base64).  Written once, at close.

All times are timezone-aware UTC (``storage.models.UTCDateTime``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from storage.models import Base, UTCDateTime, utcnow

STATUSES = ("scheduled", "running", "closed")


class EvalSession(Base):
    """An evaluation session (see the module docstring)."""

    __tablename__ = "eval_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    project: Mapped[str] = mapped_column(String(200))
    bids: Mapped[list[str]] = mapped_column(JSON)
    planned_start: Mapped[datetime] = mapped_column(UTCDateTime)
    planned_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    seating_seed: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    public_key_pem: Mapped[str | None] = mapped_column(Text)
    retention: Mapped[dict[str, object] | None] = mapped_column(JSON)


class SessionCamera(Base):
    """A camera (and so its room) involved in a session."""

    __tablename__ = "session_cameras"
    session_id: Mapped[int] = mapped_column(
        ForeignKey("eval_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    room: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[str] = mapped_column(String(64), primary_key=True)


class SessionSeat(Base):
    """One expert on one seat of a session."""

    __tablename__ = "session_seats"
    __table_args__ = (UniqueConstraint("session_id", "expert", name="uq_session_expert"),)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("eval_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    room: Mapped[str] = mapped_column(String(64), primary_key=True)
    seat: Mapped[str] = mapped_column(String(64), primary_key=True)
    expert: Mapped[str] = mapped_column(String(200))
    bid: Mapped[str] = mapped_column(String(64))


class SessionHead(Base):
    """The signed final chain head of one camera of a closed session."""

    __tablename__ = "session_heads"
    session_id: Mapped[int] = mapped_column(
        ForeignKey("eval_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    room: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seq: Mapped[int] = mapped_column(Integer)
    head_seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))


HOLD_KINDS = ("legal", "export")


class RetentionHold(Base):
    """Footage the retention purge must keep (``storage.retention``).

    ``legal``: a legal hold on a session (a dispute), set and released by an admin or auditor;
    it protects the session's cameras over its whole window.  ``export``: an export in progress,
    over its cameras (``cameras``: ``site/room/camera`` paths) and ``[start, end)``; released when
    the export ends, and ignored after ``expires_at`` (a crashed export holds nothing forever).
    A hold is open while ``released_at`` is null.
    """

    __tablename__ = "retention_holds"
    __table_args__ = (Index("ix_holds_open", "released_at", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[int | None] = mapped_column(Integer)
    cameras: Mapped[list[str] | None] = mapped_column(JSON)
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(64))
