"""Incident updates from a site agent's edge analysis: the wire format and the agent's disk spool.

The agent's analysis (wired by ``evalwatch.edge``) turns every incident update (opened / updated /
closed) into one :class:`IncidentUpdateIn` JSON document and hands it to :class:`IncidentSpool`:
one file per update, numbered in the order they happened, written before anything is sent.  The
agent's incident uploader (``capture.agent``) POSTs them oldest first to
``/api/ingest/incidents`` and deletes a file only once the hub acknowledged it, so updates
survive a cut link or an agent restart and arrive in order.  Each carries the incident's
agent-side stable ``uid`` and its ``seq`` within that incident: the hub upserts by ``uid`` and
ignores a ``seq`` it already applied, so a retry never makes a second event row.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage.files import write_atomic

log = logging.getLogger("capture.incidents")

#: Rules an agent's analysis may report (the hub's own checks add analysis_* and camera_offline).
EDGE_RULES = ("extra_person", "phone", "seat_empty", "camera_tamper")
#: Update files kept at most; beyond it the oldest are dropped with a warning (a hub gone for days).
MAX_PENDING = 20_000
#: A snapshot larger than this is not a room-camera JPEG.
MAX_SNAPSHOT_BYTES = 2_000_000


class WireBox(BaseModel):
    """One detection, normalised 0..1 coordinates of the analysed frame."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=32)
    score: float = Field(ge=0, le=1)
    x1: float = Field(ge=-0.01, le=1.01)
    y1: float = Field(ge=-0.01, le=1.01)
    x2: float = Field(ge=-0.01, le=1.01)
    y2: float = Field(ge=-0.01, le=1.01)


class IncidentUpdateIn(BaseModel):
    """``POST /api/ingest/incidents``: one update of one incident raised by the agent's analysis."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=64)
    room: str = Field(min_length=1, max_length=64)
    camera: str = Field(min_length=1, max_length=64)
    uid: str = Field(pattern=r"^[0-9a-f]{8,64}$", description="agent-side stable incident id")
    seq: int = Field(ge=1, description="update number within the incident (1 = opened)")
    action: Literal["opened", "updated", "closed"]
    rule: Literal["extra_person", "phone", "seat_empty", "camera_tamper"]
    kind: str | None = Field(default=None, max_length=32)
    seat: str | None = Field(default=None, max_length=64)
    confidence: float = Field(ge=0, le=1)
    started_at: datetime
    ended_at: datetime | None = None
    footage_start: datetime | None = None
    footage_end: datetime | None = None
    session_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    boxes: list[WireBox] = Field(default_factory=list, max_length=200)
    snapshot_jpeg: str | None = Field(default=None, description="base64 JPEG, on opened")

    @field_validator("started_at", "ended_at", "footage_start", "footage_end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset (ISO 8601 ...+00:00)")
        return v

    @field_validator("snapshot_jpeg")
    @classmethod
    def _jpeg(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > MAX_SNAPSHOT_BYTES * 4 // 3 + 4:
            raise ValueError(f"snapshot larger than {MAX_SNAPSHOT_BYTES} bytes")
        try:
            data = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("snapshot_jpeg is not base64") from None
        if not data.startswith(b"\xff\xd8"):
            raise ValueError("snapshot_jpeg is not a JPEG image")
        return v

    def snapshot(self) -> bytes | None:
        return None if self.snapshot_jpeg is None else base64.b64decode(self.snapshot_jpeg)


class IncidentStored(BaseModel):
    """The hub's answer: the event row, and whether this update was new (false: a retry)."""

    id: int
    applied: bool


class IncidentSpool:
    """Ordered, durable queue of incident update documents on disk (one JSON file each).

    ``put`` may be called from any thread; files are named by a monotonic counter so that
    ``pending()`` lists them in the order they were put, also after a restart.
    """

    def __init__(self, root: str | Path, max_pending: int = MAX_PENDING):
        self.root = Path(root)
        self.rejected_dir = self.root / "rejected"
        self.max_pending = max_pending
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        existing = self.pending()
        self._next = int(existing[-1].stem) + 1 if existing else 1
        self.dropped = 0
        self.rejected = 0

    def put(self, doc: dict[str, Any]) -> Path:
        """Write one update durably (tmp + fsync + rename); returns its file."""
        data = json.dumps(doc, separators=(",", ":"), default=_json_default).encode()
        with self._lock:
            path = self.root / f"{self._next:012d}.json"
            self._next += 1
            write_atomic(path, data)
            pending = self.pending()
            for old in pending[: max(0, len(pending) - self.max_pending)]:
                old.unlink(missing_ok=True)
                self.dropped += 1
                log.warning("incident spool full: dropped unsent update %s spool=%s", old.name, self.root)
        return path

    def pending(self) -> list[Path]:
        """Unsent updates, oldest first."""
        return sorted(p for p in self.root.glob("*.json") if p.stem.isdigit())

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path, reason: str) -> None:
        """The hub refused this update for good: keep it aside (not retried) with the reason."""
        self.rejected_dir.mkdir(exist_ok=True)
        os.replace(path, self.rejected_dir / path.name)
        (self.rejected_dir / f"{path.stem}.reason").write_text(reason, encoding="utf-8")
        self.rejected += 1


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if hasattr(o, "item"):  # numpy scalars in details
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
