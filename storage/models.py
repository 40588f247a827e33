"""Metadata tables (SQLAlchemy 2).  SQLite by default, PostgreSQL by URL; schema via Alembic.

Times are stored as timezone-aware UTC.  ``site``/``room``/``camera`` are the stable slugs from
the config, denormalised onto segments and events so archive queries never need a join.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false
from sqlalchemy.types import JSON, TypeDecorator

from storage.common import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; evalwatch stores UTC-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))


class Room(Base):
    __tablename__ = "rooms"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))


class Camera(Base):
    __tablename__ = "cameras"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer, default=640)
    height: Mapped[int] = mapped_column(Integer, default=480)
    fps: Mapped[float] = mapped_column(Float, default=15.0)


class Seat(Base):
    __tablename__ = "seats"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    polygon: Mapped[list[list[float]]] = mapped_column(JSON)
    row: Mapped[int | None] = mapped_column(Integer)
    col: Mapped[int | None] = mapped_column(Integer)


class Segment(Base):
    """One archived video segment and its link in the camera's hash chain.

    ``seq`` is the position in the per-camera chain (append order, from 1); ``link_hash`` =
    sha256(prev_link_hash ‖ canonical metadata ‖ sha256 of the bytes).
    """

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("site", "room", "camera", "seq", name="uq_segment_chain_pos"),
        UniqueConstraint("site", "room", "camera", "start", name="uq_segment_start"),
        Index("ix_segments_camera_time", "site", "room", "camera", "start"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64), default="video/mp4")
    source: Mapped[str] = mapped_column(String(16), default="live")  # live | backfill
    seq: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    link_hash: Mapped[str] = mapped_column(String(64))
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The hub node that appended this link and the site lease epoch it held (``storage.leases``);
    #: None for rows written before leases existed / by a store without a lease fence.
    node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    epoch: Mapped[int | None] = mapped_column(BigInteger, default=None)


class HubNode(Base):
    """A running hub node: renewed with its leases (``seen_at`` is the database's clock)."""

    __tablename__ = "hub_nodes"
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(512))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SiteLease(Base):
    """Which node ingests a site until ``expires_at``; ``epoch`` grows by one each time the
    site changes hands (the fencing token checked by every chain append)."""

    __tablename__ = "site_leases"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventRow(Base):
    """One incident raised by a rule: opens, updates (peak confidence), closes; then handled."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_camera_time", "site", "room", "camera", "started_at"),
        # a year of rows (issue #17, migration 0009): the events list newest first / open ones,
        # the replay's markers of one camera (events still open or ending after the range start)
        Index("ix_events_started_at", "started_at", "id"),
        Index("ix_events_status_time", "status", "started_at"),
        Index("ix_events_camera_end", "site", "room", "camera", "ended_at", "started_at"),
        UniqueConstraint("uid", name="uq_events_uid"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    seat: Mapped[str | None] = mapped_column(String(64))
    # extra_person | phone | seat_empty | camera_tamper | camera_offline
    rule: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str | None] = mapped_column(String(32))  # tamper kind: covered | defocused | moved | frozen
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    snapshot_key: Mapped[str | None] = mapped_column(String(512))
    footage_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    footage_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Alert workflow: new -> acknowledged -> resolved | false_alarm
    status: Mapped[str] = mapped_column(String(16), default="new")
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, object] | None] = mapped_column(JSON)
    # Who analysed: "hub" (the hub's pipeline) or "agent" (edge analysis on the room PC).
    origin: Mapped[str] = mapped_column(String(8), default="hub", server_default="hub")
    # The analysis's stable id of the incident, and the sequence number of the last update
    # applied (agent updates are retried: the hub upserts by uid and ignores older sequences).
    uid: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # admin | supervisor | auditor | observer
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A seeded account must choose its own password before anything else (finding 11 of #12).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class LoginSession(Base):
    """A dashboard login (finding 5 of issue #12): the session cookie carries a random id whose
    sha256 is ``id``; the session is valid while the row is neither revoked nor expired."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user", "user_id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditLog(Base):
    """Append-only record of who did what (logins, live views, replays, exports, alert actions)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_time", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))  # username, "agent:<site>", or "system"
    role: Mapped[str | None] = mapped_column(String(16))
    # login, login_failed, live_view, replay, export, alert_ack...
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, object] | None] = mapped_column(JSON)


class EnrollCode(Base):
    """A one-time enrolment code for a site's agent (``storage.agents``): only its sha256 is kept;
    it is redeemed at most once (``used_at``) and not after ``expires_at``."""

    __tablename__ = "enroll_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_ip: Mapped[str | None] = mapped_column(String(64))
    credential_id: Mapped[str | None] = mapped_column(String(32))


class AgentCredential(Base):
    """A site agent's own credential, issued by redeeming an enrolment code: only its sha256 is
    kept; ``revoked_at`` set = refused on every agent route from then on."""

    __tablename__ = "agent_credentials"
    __table_args__ = (Index("ix_agent_credentials_site", "site"),)
    # the public id (``evalwatch site revoke-agent SITE ID``)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enroll_code_id: Mapped[int | None] = mapped_column(Integer)
    enrolled_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class PurgedRange(Base):
    """Chain links (and their segments) of one camera deleted by a retention purge.

    ``first_prev_hash`` is the ``prev_hash`` of link ``first_seq`` and ``last_link_hash`` the
    hash of link ``last_seq``: the anchor the chain verification resumes from at
    ``last_seq + 1``.  The same record is stored in object storage beside the links
    (``<camera>/chain/purged/<first>-<last>.json``, storage/chain.py), so the chain still
    verifies from object storage alone; this row is the database's copy (and what the audit
    log's ``retention_purge`` row summarises).
    """

    __tablename__ = "purged_ranges"
    __table_args__ = (
        UniqueConstraint("site", "room", "camera", "first_seq", name="uq_purged_first"),
        Index("ix_purged_camera", "site", "room", "camera", "last_seq"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    first_seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    first_prev_hash: Mapped[str] = mapped_column(String(64))
    last_link_hash: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    segments: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainAnchor(Base):
    """One signed anchor of every camera's chain head (``sessions/anchors.py``): taken at each
    session close and on ``storage.anchor_cron``.  ``document`` is the signed JSON record exactly
    as served in the feed (``GET /api/anchors/feed``) and written to the anchor store
    (``storage.anchor``) under ``store_key``; ``store_error`` says why that write failed.  The row
    is only the hub's copy: a record's signature, not this table, is what a verifier trusts, and
    the copies observers and the anchor store keep are what a rewritten table cannot change."""

    __tablename__ = "chain_anchors"
    __table_args__ = (Index("ix_chain_anchors_at", "anchored_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    anchored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    cameras: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    store_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    store_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class NotificationDelivery(Base):
    """One notification to one target of a site (``sites[].notify``): an incident that opened
    or an early warning, rendered for the target's channel when sent (``dashboard/notifications.py``).

    ``dedupe`` (``<site>/<target>/<source>:<ref>``) makes a second offer of the same thing — the
    same incident seen twice, two hub nodes — a no-op.  ``status``: ``pending`` (waiting for
    ``next_at``), ``sent``, ``failed`` (``max_attempts`` used up, or the target left the config).
    ``lease_until``: a node sending it holds it until then (several hub nodes on one database).
    Pending rows survive a restart of the hub: the next start sends them.
    """

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notify_due", "status", "next_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    site: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(512))  # masked URL / recipients
    source: Mapped[str] = mapped_column(String(16))  # event | warning
    ref: Mapped[str] = mapped_column(String(128))  # the event id / the warning's id
    dedupe: Mapped[str] = mapped_column(String(400), unique=True)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class NotificationAttempt(Base):
    """One try of a :class:`NotificationDelivery` (the delivery log): when, which attempt, the
    outcome (``sent`` / ``retry`` / ``failed``), the receiver's HTTP status and the error."""

    __tablename__ = "notification_attempts"
    __table_args__ = (Index("ix_notify_attempt_time", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("notification_deliveries.id"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)


class RoomNotice(Base):
    """A notice a supervisor sent to a room ("请勿使用手机"): shown full-screen and spoken by the
    room PC's agent (``capture/notices.py``).  ``status``: ``pending`` (not yet reported by the
    agent), ``shown``, ``not_shown`` (``reason``: no display, ...).  ``via``: how it reached the
    agent (``control``: the WebRTC control channel, ``heartbeat``: a heartbeat answer)."""

    __tablename__ = "room_notices"
    __table_args__ = (Index("ix_room_notice_room", "site", "room", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(500))
    preset: Mapped[str | None] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    via: Mapped[str | None] = mapped_column(String(16))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(200))
    spoken: Mapped[bool | None] = mapped_column(Boolean)
    agent_host: Mapped[str | None] = mapped_column(String(128))
