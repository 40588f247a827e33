"""What the dashboard needs from the rest of the hub — the contract ``evalwatch.hub`` wires.

``dashboard.app.create_app(services)`` accepts any object with these attributes (the
:class:`Services` dataclass is the canonical one).  Only the methods listed in the protocols below
are called, so a test may pass small fakes.

* ``cfg`` — the loaded :class:`config.EvalwatchConfig` (``hub.secret_key`` must be set: it signs
  session cookies; ``users`` seed accounts on startup; ``sites`` give the live-wall layout).
* ``db`` — :class:`storage.db.Database`; the dashboard uses ``db.session()`` (a context manager
  yielding a SQLAlchemy ``Session``) or, failing that, calls ``db.sessionmaker()``.  Tables come from
  ``storage.models``; the dashboard never creates or migrates them.
* ``objects`` — :class:`storage.objects.ObjectStore` (snapshots and segment bytes, ranged reads).
* ``segments`` — :class:`storage.segments.SegmentStore` (``list_segments``) — optional: without
  it the dashboard queries ``storage.models.Segment`` directly.
* ``bus`` — :class:`analysis.bus.EventBus`; one subscription fans out to every ``/ws/events``
  client.  ``None`` disables live alert push (the REST API still works).
* ``recorder`` — :class:`capture.recorder.Recorder` or ``None`` (no live video; tiles show offline).
* ``relay`` — optional :class:`dashboard.notify.EventRelay` (several hub nodes on one PostgreSQL
  database): the alert fan-out sends this node's updates to the others and pushes theirs to its
  own browsers.  ``None`` (SQLite, one node): local only.
* ``agents`` — :class:`capture.agentstatus.AgentMonitor` (the agents' latest heartbeats) or
  ``None`` (``GET /api/agents`` lists credentials only).
* ``anchors`` — optional :class:`sessions.anchors.Anchorer`: a session close also anchors the
  chain heads (``GET /api/anchors/feed`` serves the records from the database either way).
* ``notices`` — :class:`capture.notices.RoomNotices` (notices shown in a room by its agent) or
  ``None`` (``POST /api/rooms/{site}/{room}/notices`` answers 503).
* ``extra_routers`` — routers included verbatim (the capture engineer's ``/api/ingest/*``
  routes, authenticated by per-site agent tokens; the dashboard's role policy lists them as
  agent-only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from storage.incident import EventLive


@runtime_checkable
class DatabaseLike(Protocol):
    """``storage.db.Database``: ``session()`` yields a SQLAlchemy session (commit is ours)."""

    def session(self) -> AbstractContextManager[Session]: ...


class ObjectStoreLike(Protocol):
    """``storage.objects.ObjectStore``: ranged reads of stored objects.

    ``length=None`` means to the end.  Raises ``KeyError``/``FileNotFoundError`` (or any exception
    whose class name contains ``NoSuch``/``NotFound``) for a missing object; anything else is counted
    as an S3 error and answered 502.
    """

    async def get_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes: ...


class SegmentStoreLike(Protocol):
    """``storage.segments.SegmentStore``: archived segments overlapping ``[start, end)``, by start."""

    def list_segments(
        self, site: str, room: str, camera: str, start: datetime, end: datetime
    ) -> list[Any]: ...


class EventBusLike(Protocol):
    """``analysis.bus.EventBus``: ``subscribe()`` gives an async iterator of
    :class:`storage.incident.EventLive` (the incident contract; ``phase``: opened | updated |
    closed)."""

    def subscribe(self) -> AsyncIterator[EventLive]: ...


class CameraStatusLike(Protocol):
    """``capture.recorder.CameraStatus`` (read by attribute; extra fields are ignored)."""

    site: str
    room: str
    camera: str
    online: bool
    fps: float


class RecorderLike(Protocol):
    """``capture.recorder.Recorder``: per-camera status and a relayed live track."""

    def status(self) -> list[Any]: ...

    def live_track(
        self, site: str, room: str, camera: str, *, width: int | None = None, fps: float | None = None
    ) -> Any | None:
        """The camera's relayed track (``None``: offline), reduced to ``width`` px / ``fps``."""


@dataclass
class Services:
    """The hub's services as the dashboard sees them (see the module docstring)."""

    cfg: EvalwatchConfig
    db: Any
    objects: Any | None = None
    segments: Any | None = None
    bus: Any | None = None
    recorder: Any | None = None
    pipeline: Any | None = None  # analysis.live.AnalysisPipeline (for /metrics)
    agents: Any | None = None  # capture.agentstatus.AgentMonitor (GET /api/agents)
    disks: Any | None = None  # evalwatch.diskwatch.DiskWatch: readings() for the disk gauges
    relay: Any | None = None  # dashboard.notify.EventRelay: alerts across hub nodes (PostgreSQL)
    # sessions.anchors.Anchorer: anchors the chain heads at each session close (None: not wired)
    anchors: Any | None = None
    leases: Any | None = None  # storage.leases.LeaseManager: which node holds which site (live view)
    jobs: Any | None = None  # storage.joblock.JobLeader: the node that runs the scheduled jobs
    notices: Any | None = None  # capture.notices.RoomNotices: notices shown in a room (None: no route)
    extra_routers: list[APIRouter] = field(default_factory=list)
    # Called when the web server begins to stop, before it waits for open requests: they end
    # the hub's long-lived answers (agents' session long polls) so a stop is not held by them.
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
