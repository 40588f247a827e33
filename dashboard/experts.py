"""Experts on incidents, for the dashboard (docs/credit.md).

Every incident on an assigned seat of a session carries ``expert_code`` — the REST items
(:func:`attach`) and the WebSocket messages (:class:`ExpertTagger`, the :class:`AlertHub`'s
``enrich`` hook) — and ``expert_name`` only for roles that may see names: observers never do
(:func:`names_allowed`; the WebSocket fan-out strips the name from observers' copies).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from dashboard.dbutil import run_db
from sessions.experts import event_experts
from storage.incident import EventFields, EventLive
from storage.models import EventRow

#: Seconds a seat lookup of the live push is reused (a session's seats do not change while it runs).
TAG_TTL = 5.0


def names_allowed(role: str | None) -> bool:
    """Observers see expert codes only; every other role sees names."""
    return role != "observer"


def attach(s: Session, items: Sequence[EventFields], role: str | None) -> None:
    """Set ``expert_code`` (and ``expert_name`` when ``role`` may see it) on ``items`` in place."""
    found = event_experts(s, items)
    show = names_allowed(role)
    for it in items:
        who = found.get(it.id)
        if who is not None:
            it.expert_code = who.code
            it.expert_name = who.name if show else None


class ExpertTagger:
    """Tags live incidents with the expert of their seat (cached per incident for ``TAG_TTL``)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._cache: dict[int, tuple[float, str | None, str | None]] = {}

    async def __call__(self, ev: EventLive) -> None:
        if not ev.seat:
            return
        hit = self._cache.get(ev.id)
        now = time.monotonic()
        if hit is None or now - hit[0] > TAG_TTL:
            probe = EventRow(
                id=ev.id,
                site=ev.site,
                room=ev.room,
                seat=ev.seat,
                started_at=ev.started_at,
                session_id=ev.session_id,
            )
            who = (await run_db(self.db, lambda s: event_experts(s, [probe]))).get(ev.id)
            hit = (now, who.code if who else None, who.name if who else None)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[ev.id] = hit
        ev.expert_code, ev.expert_name = hit[1], hit[2]
