"""Event persistence for the live hub: DB row + snapshot JPEG in object storage, then the bus.

:class:`EventStore` is the pipeline's ``EventSink``.  For each update it first writes the
database (so every message on the bus carries the event's database ``id`` the dashboard acts
on), then publishes a :class:`storage.incident.EventLive` (the incident contract).  An opening
event is published before its snapshot is uploaded: the upload runs in the background and is
followed by an ``updated`` message carrying the ``snapshot_url`` (later updates of the same
event wait for it, so messages stay in order).
A snapshot that cannot be uploaded because S3 is down is written to the local write-ahead
folder and retried in the background: the event itself is never held back or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.bus import EventBus
from analysis.events import Event as Incident
from analysis.events import EventUpdate
from storage.files import write_atomic
from storage.incident import EventLive, snapshot_url
from storage.models import EventRow

log = logging.getLogger("evalwatch.events")


def snapshot_key(ev: Incident) -> str:
    """``site/room/camera/YYYY/MM/DD/HHMMSS_<id>.jpg`` (UTC, from the event start)."""
    t = ev.started_at
    return f"{ev.site}/{ev.room}/{ev.camera}/{t:%Y/%m/%d/%H%M%S}_{ev.id}.jpg"


def _ts(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def live_message(update: EventUpdate, db_id: int) -> EventLive:
    """The bus message for ``update`` of the incident whose row is ``db_id``: the row's fields
    as :meth:`EventStore._write` stores them (``status`` only when it opens)."""
    ev = update.event
    return EventLive(
        phase=update.action, uid=ev.id, id=db_id, site=ev.site or "", room=ev.room or "",
        camera=ev.camera, seat=ev.seat, rule=ev.rule, kind=ev.kind, started_at=ev.started_at,
        ended_at=ev.ended_at, confidence=round(ev.confidence, 3),
        footage_start=_ts(ev.footage_start_s) or ev.started_at,
        footage_end=_ts(ev.footage_end_s) or ev.ended_at, session_id=ev.session_id,
        status="new" if update.action == "opened" else None,
        snapshot_url=snapshot_url(db_id) if ev.snapshot_key else None, details=ev.details,
        origin=ev.origin,
    )


class EventStore:
    """Persist incident updates and publish them, in order, on ``bus``."""

    def __init__(
        self,
        db: Any,
        objects: Any,
        bucket: str,
        bus: EventBus,
        spool_dir: str | Path,
        *,
        retry_seconds: float = 5.0,
    ):
        self.db = db
        self.objects = objects
        self.bucket = bucket
        self.bus = bus
        self.spool_dir = Path(spool_dir)
        self.retry_seconds = retry_seconds
        self._ids: dict[str, int] = {}
        self._retry_task: asyncio.Task[None] | None = None
        self._uploads: dict[str, asyncio.Task[None]] = {}
        self.snapshot_errors = 0

    # -- lifecycle --

    async def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._retry_task = asyncio.create_task(self._retry_loop(), name="snapshot-retry")

    async def close(self) -> None:
        await self.flush()
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task

    # -- EventSink --

    async def handle(self, update: EventUpdate) -> None:
        await self.upsert(update)

    async def upsert(self, update: EventUpdate, seq: int | None = None) -> tuple[int, bool]:
        """Store and publish ``update``; returns ``(row id, applied)``.

        ``seq`` (updates from a site agent, which retries until acknowledged): the update's
        sequence number within its incident (``event.id``, stable on the agent).  The row is
        found by that id; an update whose ``seq`` is not newer than the row's is a retry and
        is acknowledged without a second row, write or bus message (``applied`` false)."""
        ev = update.event
        upload = self._uploads.pop(ev.id, None)
        if upload is not None:  # keep this event's messages in order: snapshot first
            with contextlib.suppress(Exception):
                await upload
        db_id, applied = await self.db.run(lambda s: self._write(s, update, seq))
        if not applied:
            log.info("event update %s seq=%s of uid=%s already stored id=%s site=%s room=%s camera=%s",
                      update.action, seq, ev.id, db_id, ev.site, ev.room, ev.camera)
            return db_id, False
        self._publish(update, db_id)
        if update.action == "opened" and ev.snapshot and ev.site:
            # The alert is out; the snapshot follows in an "updated" message with its key.
            self._uploads[ev.id] = asyncio.create_task(self._snapshot_then_update(ev, ev.snapshot, db_id))
        return db_id, True

    def _publish(self, update: EventUpdate, db_id: int) -> None:
        ev = update.event
        self.bus.publish(live_message(update, db_id))
        log.info(
            "event %s id=%s rule=%s kind=%s origin=%s site=%s room=%s camera=%s seat=%s",
            update.action, db_id, ev.rule, ev.kind, ev.origin, ev.site, ev.room, ev.camera, ev.seat,
        )

    async def _snapshot_then_update(self, ev: Incident, data: bytes, db_id: int) -> None:
        key = snapshot_key(ev)
        try:
            await self._store_snapshot(key, data)
        except Exception:
            log.exception("snapshot of event %s could not be stored", ev.id)
            return
        ev.snapshot_key = key

        def write(s: Any) -> None:
            row = s.get(EventRow, db_id)
            if row is not None:
                row.snapshot_key = key
                s.commit()

        await self.db.run(write)
        self._publish(EventUpdate("updated", ev), db_id)

    async def flush(self) -> None:
        """Wait for the snapshot uploads in flight (and their "updated" messages)."""
        tasks = list(self._uploads.values())
        self._uploads.clear()
        for t in tasks:
            with contextlib.suppress(Exception):
                await t

    def _write(self, session: Any, update: EventUpdate, seq: int | None = None) -> tuple[int, bool]:
        from sqlalchemy import select

        ev = update.event
        row: EventRow | None = None
        if ev.id in self._ids:
            row = session.get(EventRow, self._ids[ev.id])
        if row is None:
            row = session.scalars(select(EventRow).where(EventRow.uid == ev.id)).first()
        if row is not None and seq is not None and row.seq is not None and seq <= row.seq:
            return int(row.id), False
        if row is None:
            row = EventRow(
                site=ev.site or "", room=ev.room or "", camera=ev.camera, seat=ev.seat,
                rule=ev.rule, kind=ev.kind, started_at=ev.started_at, status="new",
                details={"uid": ev.id, **ev.details}, session_id=ev.session_id,
                origin=ev.origin, uid=ev.id,
            )
            session.add(row)
        if seq is not None:
            row.seq = seq
        row.ended_at = ev.ended_at
        row.confidence = max(row.confidence or 0.0, ev.confidence)
        row.snapshot_key = ev.snapshot_key or row.snapshot_key
        row.footage_start = _ts(ev.footage_start_s) or ev.started_at
        row.footage_end = _ts(ev.footage_end_s) or ev.ended_at
        session.commit()
        if update.action == "closed":
            self._ids.pop(ev.id, None)
        else:
            self._ids[ev.id] = row.id
        return int(row.id), True

    async def agent_incidents_since(self, since: datetime) -> list[tuple[str, str, str, str, str, float,
                                                                        float | None]]:
        """Incidents reported by site agents (``origin`` agent) still open or ended after
        ``since``: ``(site, room, camera, uid, rule, start, end)`` with times in epoch seconds,
        oldest first (what a restarted hub needs to judge its checks of the agents)."""
        from sqlalchemy import or_, select

        def q(session: Any) -> list[tuple[str, str, str, str, str, float, float | None]]:
            rows = session.scalars(
                select(EventRow).where(EventRow.origin == "agent",
                                       or_(EventRow.ended_at.is_(None), EventRow.ended_at >= since))
                .order_by(EventRow.started_at).limit(10_000))
            return [(r.site, r.room, r.camera, r.uid or str(r.id), r.rule, r.started_at.timestamp(),
                     None if r.ended_at is None else r.ended_at.timestamp()) for r in rows]

        result: list[tuple[str, str, str, str, str, float, float | None]] = await self.db.run(q)
        return result

    # -- snapshots --

    async def _store_snapshot(self, key: str, data: bytes) -> None:
        from storage.objects import StorageUnavailable

        try:
            await self.objects.put_bytes(self.bucket, key, data, "image/jpeg")
        except StorageUnavailable as e:
            self.snapshot_errors += 1
            path = self.spool_dir / key
            await asyncio.to_thread(_write_file, path, data)
            log.warning("snapshot spooled until S3 returns key=%s error=%s", key, e)

    async def _retry_loop(self) -> None:
        from storage.objects import StorageUnavailable

        while True:
            await asyncio.sleep(self.retry_seconds)
            for path in sorted(p for p in self.spool_dir.rglob("*.jpg") if p.is_file()):
                key = path.relative_to(self.spool_dir).as_posix()
                try:
                    await self.objects.put_bytes(self.bucket, key, path.read_bytes(), "image/jpeg")
                except StorageUnavailable:
                    break
                path.unlink()
                log.info("spooled snapshot uploaded key=%s", key)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
