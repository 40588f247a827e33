"""The incident contract: one incident as every consumer sees it, defined once.

An incident is raised by the analysis (``analysis.events.Event``), written as a database row
(:class:`storage.models.EventRow`), and then shown in four places that all use these models and
these field names:

=====================  ======================================================================
where                  model
=====================  ======================================================================
event bus (hub)        :class:`EventLive` — published by ``analysis.store.EventStore`` after
                       the row is written, one per ``opened`` / ``updated`` / ``closed``
WebSocket              :class:`EventMessage` — ``{"type": "event", "event": EventLive |
``/ws/events``         EventWorkflow, "hub_sent_at"}`` (``EventWorkflow``: an alert's state
                       changed through the REST API)
REST ``/api/events``   :class:`EventItem` — one row with its alert workflow state
export ``events.json``  :class:`ExportedEvent` — one row as archived in an evidence zip
=====================  ======================================================================

One name per field, everywhere: ``camera`` is the camera slug (the path is ``site/room/camera``),
``phase`` says what happened (``opened`` | ``updated`` | ``closed`` from the analysis,
``workflow`` from a user), ``status`` is the alert workflow state, ``snapshot_url`` the authorised
route of the snapshot (``snapshot_key``, the object key, only appears in the archive, where the
snapshot travels with the event).  Times are ISO-8601 UTC strings (``datetime.isoformat()``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

if TYPE_CHECKING:
    from storage.models import EventRow

#: The alert workflow: new → acknowledged → resolved | false_alarm.
Status = Literal["new", "acknowledged", "resolved", "false_alarm"]
#: Who raised an incident: the hub's own analysis, or a site agent's edge analysis.
Origin = Literal["hub", "agent"]
#: What an analysis update says about its incident.
LivePhase = Literal["opened", "updated", "closed"]

#: A datetime written as ``datetime.isoformat()`` (``+00:00``, as the API always wrote them).
IsoTime = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str, when_used="json")]


def snapshot_url(event_id: int) -> str:
    """The dashboard route that serves an incident's snapshot (authorised, audited)."""
    return f"/api/events/{event_id}/snapshot"


class EventFields(BaseModel):
    """What every form of an incident carries."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="database id: what the workflow routes act on")
    site: str
    room: str
    camera: str = Field(description="camera slug (the path is site/room/camera)")
    seat: str | None
    rule: str = Field(description="extra_person | phone | seat_empty | camera_tamper | camera_offline"
                      " | analysis_mismatch | analysis_offline | disk_full")
    kind: str | None = Field(description="camera_tamper only: covered | defocused | moved | frozen")
    started_at: IsoTime
    ended_at: IsoTime | None = Field(description="null while the incident is open")
    confidence: float = Field(description="peak confidence so far")
    footage_start: IsoTime | None = Field(description="footage an auditor should replay: start")
    footage_end: IsoTime | None = Field(description="footage an auditor should replay: end")
    session_id: int | None = Field(default=None, description="the evaluation session running then")
    origin: Origin = Field(
        default="hub",
        description="who analysed: hub (the hub's pipeline) or agent (edge analysis on the room PC)",
    )


class EventHandled(EventFields):
    """An incident with its alert workflow state: who acknowledged and resolved it, and how."""

    status: Status
    acknowledged_by: str | None = None
    acknowledged_at: IsoTime | None = None
    resolved_by: str | None = None
    resolved_at: IsoTime | None = None
    note: str | None = None


class EventItem(EventHandled):
    """An incident as the API lists it (``GET /api/events`` items and the like)."""

    snapshot_url: str | None = Field(default=None, description="null when there is no snapshot")

    @classmethod
    def from_row(cls, row: EventRow) -> EventItem:
        item = cls.model_validate(row)
        item.snapshot_url = snapshot_url(row.id) if row.snapshot_key else None
        return item


class EventWorkflow(EventItem):
    """WebSocket payload: a user acknowledged / resolved / dismissed the alert."""

    phase: Literal["workflow"] = "workflow"


class EventLive(EventFields):
    """An analysis update about an incident, after its row is written (the bus message).

    ``status`` is ``"new"`` on ``opened`` and absent otherwise (an update does not know the
    workflow state: a browser keeps its own).  ``snapshot_url`` appears once the snapshot is
    stored (usually in the ``updated`` message following ``opened``).
    """

    phase: LivePhase
    uid: str = Field(description="the analysis's id of the incident (stable across updates)")
    status: Status | None = Field(default=None, exclude_if=lambda v: v is None)
    snapshot_url: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EventMessage(BaseModel):
    """One ``/ws/events`` message about an incident."""

    type: Literal["event"] = "event"
    event: Annotated[EventLive | EventWorkflow, Field(discriminator="phase")]
    hub_sent_at: float | None = Field(
        default=None, exclude_if=lambda v: v is None, description="fan-out time (epoch s) of a live update"
    )


class ExportedEvent(EventHandled):
    """An incident as archived in an evidence zip's ``events.json``.

    ``snapshot_key`` is the object key of its snapshot; the writer adds ``snapshot``, the path of
    the snapshot inside the zip (or null).
    """

    snapshot_key: str | None = None

    @classmethod
    def dump(cls, row: EventRow) -> dict[str, Any]:
        """The ``events.json`` entry of ``row`` (a JSON-ready dict the writer adds to)."""
        return cls.model_validate(row).model_dump(mode="json")
