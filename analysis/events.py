"""Incidents raised by the rules, and the updates ("opened" / "updated" / "closed") about them.

Times are float seconds.  In ``evalwatch analyze`` they count from the start of the video; in the
live pipeline they are POSIX timestamps (``datetime.timestamp()``), so ``started_at`` /
``ended_at`` give the UTC datetimes stored in ``storage.models.EventRow``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

RULES = ("extra_person", "phone", "seat_empty", "camera_tamper", "camera_offline")
#: Raised by the hub about a site agent's edge analysis (``evalwatch.edgehub``).
CHECK_RULES = ("analysis_mismatch", "analysis_offline")
#: Raised by the hub about a full disk (``evalwatch.diskwatch``): its WAL, its database, an
#: agent's spool.
SYSTEM_RULES = ("disk_full",)
TAMPER_KINDS = ("covered", "defocused", "moved", "frozen")

Action = Literal["opened", "updated", "closed"]


@dataclass
class Event:
    """One incident: one rule at one seat (or camera) from ``start_s`` to ``end_s``.

    ``end_s`` is ``None`` while the incident is still open.  ``confidence`` is the peak
    confidence seen so far.  ``snapshot`` holds a JPEG (boxes and seat polygons drawn) taken when
    the event opened; ``snapshot_key`` is where it was stored (object key or file path), if
    anywhere.  ``footage_start_s`` / ``footage_end_s`` bound the footage an auditor should replay.
    """

    rule: str
    camera: str
    seat: str | None
    start_s: float
    confidence: float
    kind: str | None = None
    end_s: float | None = None
    room: str | None = None
    site: str | None = None
    footage_start_s: float = 0.0
    footage_end_s: float | None = None
    snapshot: bytes | None = field(default=None, repr=False)
    snapshot_key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: The evaluation session running in the room when the event opened, if any.
    session_id: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Who analysed: ``hub`` or ``agent`` (edge analysis; the update came over the ingest API).
    origin: Literal["hub", "agent"] = "hub"

    @property
    def open(self) -> bool:
        return self.end_s is None

    @property
    def started_at(self) -> datetime:
        """``start_s`` as a UTC datetime (meaningful for live events, whose times are POSIX)."""
        return datetime.fromtimestamp(self.start_s, UTC)

    @property
    def ended_at(self) -> datetime | None:
        return None if self.end_s is None else datetime.fromtimestamp(self.end_s, UTC)

    def summary(self) -> dict[str, Any]:
        """The ``evalwatch analyze --json`` line: rule, kind (tamper only), seat, times, confidence."""
        d: dict[str, Any] = {"rule": self.rule}
        if self.rule == "camera_tamper":
            d["kind"] = self.kind
        d.update(
            seat=self.seat,
            start_s=round(self.start_s, 2),
            end_s=None if self.end_s is None else round(self.end_s, 2),
            confidence=round(self.confidence, 3),
        )
        return d


@dataclass(frozen=True)
class EventUpdate:
    """A change to an incident: ``opened``, ``updated`` (peak confidence rose) or ``closed``.

    In the hub, ``analysis.store.EventStore`` writes it to the database and publishes it as a
    :class:`storage.incident.EventLive` (the incident contract every consumer reads)."""

    action: Action
    event: Event
