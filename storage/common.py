"""The shared vocabulary every stage uses: camera ids and UTC time helpers.

This module sits at the bottom of the product (it imports nothing from evalwatch), so capture,
analysis, sessions and the dashboard can all speak the same words:

* :class:`CameraId` — one camera, ``site/room/camera``; ``str(cam)`` and ``cam.path`` are that
  path and :meth:`CameraId.parse` reads it back;
* :func:`utcnow` — the current time, timezone-aware UTC;
* :func:`as_utc` — a datetime as aware UTC, a naive one read as UTC;
* :func:`parse_time` — an ISO-8601 time that must carry a UTC offset (``...Z`` or ``+08:00``), as
  UTC; ``ValueError`` otherwise, :class:`NoTimezone` (a ``ValueError``) when only the offset is
  missing (callers turn it into their own error: HTTP 400, CLI exit 2…).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, order=True)
class CameraId:
    """One camera: the config's site, room and camera slugs."""

    site: str
    room: str
    camera: str

    def __str__(self) -> str:
        return self.path

    @property
    def path(self) -> str:
        """``site/room/camera`` (the same as ``str(cam)``)."""
        return f"{self.site}/{self.room}/{self.camera}"

    @classmethod
    def parse(cls, path: str) -> CameraId:
        """``"site/room/camera"`` → ``CameraId``; ``ValueError`` unless three non-empty parts."""
        parts = path.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a site/room/camera path: {path!r}")
        return cls(*parts)

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.site, self.room, self.camera)


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """``t`` as aware UTC (a naive ``t`` is taken to be UTC already)."""
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


class NoTimezone(ValueError):
    """A readable time without a UTC offset."""


def parse_time(s: str) -> datetime:
    """ISO-8601 with a timezone (``Z`` accepted), as UTC; ``ValueError`` when unreadable,
    :class:`NoTimezone` when naive."""
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise NoTimezone(f"{s!r} has no timezone; add Z or +08:00")
    return t.astimezone(UTC)
