"""Response models of the dashboard's JSON routes (the OpenAPI at ``/api/openapi.json``).

Every JSON route declares one of these (or a model of the layer that owns the data:
:mod:`storage.incident` for incidents, ``sessions.seating.Assignment``, ``capture.ingest``'s
own) as its ``response_model``, so the OpenAPI describes every response.  Times are ISO-8601
strings; :data:`storage.incident.IsoTime` keeps ``datetime.isoformat()``'s ``+00:00`` form.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sessions.credit import CreditRecordOut
from sessions.holds import HoldInfo
from sessions.lifecycle import SessionInfo
from storage.incident import EventItem, IsoTime


def media(*media_types: str, description: str = "Successful Response") -> dict[str, Any]:
    """Route arguments for a route that answers bytes, not JSON: ``@router.get(path,
    **media("image/jpeg"))`` documents the media type(s) instead of an ``application/json``."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "response_class": Response,
        "responses": {200: {"description": description, "content": {m: binary for m in media_types}}},
    }


#: A database row id in a URL path (alerts, segments, sessions).  Bounded to what every database
#: column holds (PostgreSQL ``integer``): a larger number is a 422 naming it, not a driver
#: overflow answered 500 (found by the API fuzzer, tests/test_api_fuzz.py).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="database id")]


class Ok(BaseModel):
    ok: bool


class Health(BaseModel):
    """``/healthz``: 200 when the database answers, else 503 (no auth: no data)."""

    ok: bool
    db: bool
    bus: bool
    recorder: bool


# -- users and audit --------------------------------------------------------------------------


class UserOut(BaseModel):
    username: str
    display_name: str | None
    role: str
    active: bool
    locked_until: IsoTime | None
    failed_logins: int
    created_at: IsoTime | None


class UserList(BaseModel):
    users: list[UserOut]


class AuditEntry(BaseModel):
    id: int
    at: IsoTime
    actor: str
    role: str | None
    action: str
    target: str | None
    ip: str | None
    details: dict[str, Any] | None


class AuditList(BaseModel):
    entries: list[AuditEntry]
    more: bool = Field(default=False, description="older rows match the filters too (ask with before_id)")


class ConfigView(BaseModel):
    """The running configuration (``config.EvalwatchConfig``) with every secret masked and the
    users' passwords left out; each section as in the YAML file."""

    hub: dict[str, Any]
    storage: dict[str, Any]
    capture: dict[str, Any]
    detection: dict[str, Any]
    rules: dict[str, Any]
    users: list[dict[str, Any]]
    sites: list[dict[str, Any]]
    secrets_file: str | None
    notifications: dict[str, Any] = Field(default_factory=dict, description="the SMTP password masked")


# -- live wall --------------------------------------------------------------------------------


class CameraOut(BaseModel):
    id: str
    name: str
    width: int
    height: int
    seats: list[str]


class RoomOut(BaseModel):
    id: str
    name: str
    cameras: list[CameraOut]


class SiteOut(BaseModel):
    id: str
    name: str
    rooms: list[RoomOut]


class Sites(BaseModel):
    sites: list[SiteOut]
    timezone: str = Field(description="hub.timezone: the UI shows every time in the hub's zone")


class CameraStatus(BaseModel):
    site: str
    room: str
    camera: str
    online: bool
    fps: float
    last_frame_age: float | None = Field(description="seconds since the last frame")
    last_error: str | None = None
    backlog_dropped: int = Field(
        0, description="live frames dropped because the hub's receive path fell behind (since start)"
    )
    alerts: dict[str, int] = Field(default_factory=dict, description="open alerts by rule")


class CameraStatusList(BaseModel):
    cameras: list[CameraStatus]


class ThumbFrame(BaseModel):
    seq: int
    age: float
    jpeg: str = Field(description="base64 JPEG")


class Thumbs(BaseModel):
    frames: dict[str, ThumbFrame] = Field(description="site/room/camera → its newer picture")
    offline: list[str]


class SdpAnswer(BaseModel):
    sdp: str
    type: str


# -- replay -----------------------------------------------------------------------------------


class SegmentOut(BaseModel):
    id: int
    start: IsoTime
    end: IsoTime
    duration: float
    url: str
    seq: int | None
    size: int
    sha256: str


class ReplayIndex(BaseModel):
    start: IsoTime
    end: IsoTime
    segments: list[SegmentOut]
    events: list[EventItem]


class ChainCheck(BaseModel):
    """The replay badge over a range (``sessions.verify.verify_replay_window``): ``notes`` says
    what anchors it (a session's seal, or the database's links only)."""

    ok: bool
    segments: int
    links: int
    problem: str | None
    message: str
    notes: list[str] = []


# -- sessions ---------------------------------------------------------------------------------


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class SealCheck(BaseModel):
    ok: bool
    problems: list[str]
    key_id: str


# -- experts and credit records (dashboard/routes/experts.py, docs/credit.md) ----------------


class ExpertCreate(BaseModel):
    """A new expert (admin).  The ID number is hashed at once and never stored or shown."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    id_number: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=32)
    photo_key: str | None = Field(default=None, max_length=512)


class ExpertUpdate(BaseModel):
    """Fields to change (absent = unchanged)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    id_number: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=32)
    photo_key: str | None = Field(default=None, max_length=512)
    active: bool | None = None


class ExpertPublic(BaseModel):
    """An expert as the API shows it: never the ID number (``has_id_number`` says whether its
    hash is on file); ``name``, ``phone`` and ``photo_key`` are null for observers."""

    code: str
    name: str | None
    phone: str | None
    photo_key: str | None
    has_id_number: bool
    active: bool
    source: str | None
    updated_at: IsoTime
    updated_by: str | None
    violations: int = Field(description="credit records whose current decision is violation")


class ExpertList(BaseModel):
    experts: list[ExpertPublic]


class ImportProblem(BaseModel):
    line: int = Field(description="the row in the file (the header is line 1)")
    problem: str


class ImportReport(BaseModel):
    created: int
    updated: int
    errors: list[ImportProblem]


class CreditJudge(BaseModel):
    """Confirm an incident as a violation (a category is required) or dismiss it."""

    decision: Literal["violation", "dismissed"]
    category: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=2000)


class CreditRevise(BaseModel):
    """A change of a credit record: new decision/category/note, the expert's statement, an
    appeal (``open``) or its outcome (``upheld`` | ``overturned``); ``reason`` says why."""

    decision: Literal["violation", "dismissed"] | None = None
    category: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)
    statement: str | None = Field(default=None, max_length=4000)
    appeal: Literal["open", "upheld", "overturned"] | None = None
    reason: str = Field(default="", max_length=2000)


class CreditList(BaseModel):
    records: list[CreditRecordOut]


class ExpertDetail(BaseModel):
    """The expert page: the expert and every credit record (violations and dismissals)."""

    expert: ExpertPublic
    records: list[CreditRecordOut]


class CreditCategories(BaseModel):
    categories: list[str]


class CreditFeed(BaseModel):
    """The signed JSON feed for the city's credit platform: ``signature`` is the base64
    Ed25519 signature of ``canonical_json(feed)`` by the hub key (``key_id``); verify it with
    a public key you already trust (``GET /api/sessions/public-key``)."""

    feed: dict[str, Any]
    signature: str
    key_id: str
    public_key_pem: str
class HoldBody(BaseModel):
    """``POST /api/sessions/{id}/hold|release``: why (a dispute's reference), audit-logged."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


class HoldList(BaseModel):
    holds: list[HoldInfo]


# -- site agents: enrolment, credentials, status ------------------------------------------------


class EnrollCodeCreate(BaseModel):
    """``POST /api/sites/{site}/enroll-codes``: how long the code is valid (default
    ``hub.enroll_code_hours``)."""

    hours: float | None = Field(default=None, gt=0, le=24 * 30)


class EnrollCodePublic(BaseModel):
    """A new enrolment code: shown this once (the hub keeps only its hash)."""

    id: int
    site: str
    code: str
    expires_at: IsoTime


class EnrollCreate(BaseModel):
    """``POST /api/agent/enroll``: the code an admin gave the room PC."""

    code: str = Field(min_length=1, max_length=64)
    host: str | None = Field(default=None, max_length=128, description="the PC's host name (audit only)")


class EnrollPublic(BaseModel):
    """What the agent keeps in its state directory (the credential is shown this once)."""

    site: str
    credential_id: str
    credential: str
    hub_url: str = Field(description="hub.public_url")
    tls_fingerprint: str | None = Field(
        default=None, description="sha256 of the hub's TLS certificate (DER, hex) when it serves TLS; "
        "null while it serves plain HTTP")


class AgentCredentialPublic(BaseModel):
    id: str
    site: str
    created_at: IsoTime
    enrolled_ip: str | None
    revoked_at: IsoTime | None
    revoked_by: str | None


class AgentCameraState(BaseModel):
    room: str
    camera: str
    connection: str | None = Field(description="the live WebRTC connection as the agent sees it")
    frames: float | None
    pending_segments: float | None
    last_error: str | None


class AgentStatusPublic(BaseModel):
    """One agent's latest heartbeat (``capture.agentstatus``)."""

    site: str
    credential_id: str | None = Field(description="the enrolled credential; null: the secrets-file token")
    host: str | None
    ip: str | None
    last_seen: IsoTime
    version: str | None
    os: str | None
    cpu_load: float | None = Field(description="1-minute load average per core (1.0 = every core busy)")
    cpu_count: int | None
    spool_bytes: int | None
    spool_quota_bytes: int | None
    spool_percent: float | None
    clock_offset_s: float | None = Field(description="agent clock minus hub clock at receipt, seconds")
    cameras: list[AgentCameraState]
    flags: list[str] = Field(description="clock (off > 2 s), spool (> 80 % full), silent (no heartbeat 30 s)")


class AgentList(BaseModel):
    agents: list[AgentStatusPublic]
    credentials: list[AgentCredentialPublic]


class AgentRevokeCreate(BaseModel):
    """``POST /api/sites/{site}/revoke-agent``: one credential id, or null for all of the site's."""

    id: str | None = Field(default=None, max_length=32)


class AgentRevokePublic(BaseModel):
    site: str
    revoked: list[str]


# -- notifications to people on site, notices in the room (docs/notifications.md) --------------


class NotificationLogEntry(BaseModel):
    """One try of one notification (``status``: sent | retry | failed), or one not tried yet
    (``pending``, ``attempt`` 0)."""

    at: IsoTime
    delivery_id: int
    site: str
    target_id: str = Field(description="the target's id in sites[].notify")
    channel: Literal["webhook", "wecom", "dingtalk", "email"]
    target: str = Field(description="URL without its query values / recipients, masked")
    source: Literal["event", "warning"]
    ref: str = Field(description="the event id or the warning id")
    attempt: int
    status: Literal["pending", "sent", "retry", "failed"]
    http_status: int | None
    error: str | None
    seconds: float | None
    delivery_status: Literal["pending", "sent", "failed"]
    next_at: IsoTime | None = Field(description="pending deliveries: the next try")


class NotificationLog(BaseModel):
    entries: list[NotificationLogEntry]


class RoomNoticeCreate(BaseModel):
    """``POST /api/rooms/{site}/{room}/notices``: free ``text`` or a ``preset`` (its text)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, min_length=1, max_length=200)
    preset: str | None = Field(default=None, max_length=64)
    seconds: float = Field(default=15.0, ge=3, le=300, description="how long the room's display shows it")


class RoomNoticePublic(BaseModel):
    id: int
    site: str
    room: str
    text: str
    preset: str | None
    seconds: float
    created_at: IsoTime
    created_by: str
    status: Literal["pending", "shown", "not_shown"]
    via: str | None = Field(description="control (data channel) | heartbeat")
    reported_at: IsoTime | None
    shown_at: IsoTime | None
    reason: str | None = Field(description="not shown: why (e.g. no display)")
    spoken: bool | None
    agent_host: str | None
    control_sent: bool | None = Field(
        default=None, description="POST only: sent over the control channel at once"
    )


class RoomNoticeList(BaseModel):
    notices: list[RoomNoticePublic]
    presets: dict[str, str] = Field(description="preset id → text")
