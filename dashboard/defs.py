"""Response models of the dashboard's JSON routes (the OpenAPI at ``/api/openapi.json``).

Every JSON route declares one of these (or a model of the layer that owns the data:
:mod:`storage.incident` for incidents, ``sessions.seating.Assignment``, ``capture.ingest``'s
own) as its ``response_model``, so the OpenAPI describes every response.  Times are ISO-8601
strings; :data:`storage.incident.IsoTime` keeps ``datetime.isoformat()``'s ``+00:00`` form.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

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
    """``storage.verify.verify_chain`` over a range."""

    ok: bool
    segments: int
    links: int
    problem: str | None
    message: str


# -- sessions ---------------------------------------------------------------------------------


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class SealCheck(BaseModel):
    ok: bool
    problems: list[str]
    key_id: str
