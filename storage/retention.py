"""The retention purge: delete footage, chain links and snapshots whose retention has expired.

What goes (``purge(...)``, see docs/storage.md "Retention"):

* a segment and its chain link, when the segment ended more than ``storage.retention_days`` ago,
  it is uploaded (not waiting in the WAL), it is not its camera's newest segment (the chain head
  stays, so the next segment still chains onto it), no :class:`HoldWindow` of its camera overlaps
  it, and no stored version of either object is still under object-lock retention;
* an incident's snapshot, when the incident ended more than ``retention_days`` ago and no hold
  covers it (the incident row stays; its ``snapshot_key`` is cleared).

Consecutive purged links of a camera form a *range*.  Before deleting anything of a range its
record (:func:`storage.chain.purge_record`: first/last seq, the ``prev_hash`` of the first link,
the ``link_hash`` of the last — the anchor) is written beside the links, so
:func:`storage.verify.verify_chain` checks what remains from object storage alone; the same range
is stored in ``purged_ranges`` and summarised in the audit log (``retention_purge``).

Object lock: every version of both objects of a segment is checked before the segment is
chosen; one still retained blocks that segment (reported with its retain-until date, kept, and
tried again on a later run).  Versions are deleted one by one without ever bypassing
governance retention; a delete the server refuses anyway is reported as a failure, and the
purge of that camera stops there.

Holds come from the caller (``hold_windows``): legal holds of sessions and exports in progress
(``sessions.holds``); this module does not know sessions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.chain import chain_key, purge_record, purge_record_key
from storage.common import CameraId, utcnow
from storage.db import Database
from storage.models import AuditLog, EventRow, PurgedRange, Segment
from storage.objects import ObjectLocked, ObjectMissing, ObjectStore, StorageError

log = logging.getLogger("evalwatch.storage.retention")


@dataclass(frozen=True)
class HoldWindow:
    """Footage of ``camera`` overlapping ``[start, end)`` must stay (None: unbounded)."""

    camera: CameraId
    start: datetime | None
    end: datetime | None
    reason: str

    def covers(self, camera: CameraId, start: datetime, end: datetime) -> bool:
        return (
            camera == self.camera
            and (self.end is None or start < self.end)
            and (self.start is None or end > self.start)
        )


@dataclass
class PurgedSpan:
    """One range of consecutive links of a camera that goes (or went)."""

    camera: CameraId
    first_seq: int
    last_seq: int
    first_prev_hash: str
    last_link_hash: str
    start: datetime
    end: datetime
    segments: int
    bytes: int
    keys: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (segment key, link key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera.path,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "segments": self.segments,
            "bytes": self.bytes,
            "anchor": {"seq": self.last_seq, "link_hash": self.last_link_hash},
        }


@dataclass
class PurgeReport:
    """What a purge run deleted (or, ``dry_run``, would delete), what it kept and why."""

    run_id: str
    dry_run: bool
    now: datetime
    cutoff: datetime
    spans: list[PurgedSpan] = field(default_factory=list)
    snapshots: int = 0
    snapshot_keys: list[str] = field(default_factory=list, repr=False)
    held: int = 0  # expired segments kept by a hold
    locked: list[str] = field(default_factory=list)  # expired segments kept by object lock
    late_holds: list[str] = field(default_factory=list)  # ranges kept by a hold opened meanwhile
    failures: list[str] = field(default_factory=list)

    @property
    def segments(self) -> int:
        return sum(s.segments for s in self.spans)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.spans)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "at": self.now.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "segments": self.segments,
            "bytes": self.bytes,
            "snapshots": self.snapshots,
            "held_segments": self.held,
            "locked": self.locked[:100],
            "locked_count": len(self.locked),
            "failures": self.failures[:100],
            "late_holds": self.late_holds[:100],
            "ranges": [s.to_dict() for s in self.spans],
        }

    def lines(self) -> list[str]:
        """Human-readable summary (the CLI's output)."""
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"retention cutoff {self.cutoff.isoformat()}: {verb} {self.segments} segments "
            f"({self.bytes / 1e6:.1f} MB) and {self.snapshots} snapshots"
        ]
        for s in self.spans:
            out.append(
                f"  {s.camera.path}: links {s.first_seq}..{s.last_seq}, {s.start.isoformat()} .. "
                f"{s.end.isoformat()}, {s.segments} segments; anchor seq {s.last_seq} {s.last_link_hash[:16]}"
            )
        if self.held:
            out.append(f"  kept by holds: {self.held} expired segments")
        for msg in self.locked[:20]:
            out.append(f"  kept (object lock): {msg}")
        if len(self.locked) > 20:
            out.append(f"  ... and {len(self.locked) - 20} more kept by object lock")
        for msg in self.late_holds:
            out.append(f"  kept (hold): {msg}")
        for msg in self.failures:
            out.append(f"  FAILED: {msg}")
        return out


# --- planning --------------------------------------------------------------------------------


def _expired_segments(s: Session, cutoff: datetime) -> list[Segment]:
    """Uploaded segments ended before ``cutoff``, except each camera's newest (the head)."""
    heads = (
        select(Segment.site, Segment.room, Segment.camera, func.max(Segment.seq).label("head"))
        .group_by(Segment.site, Segment.room, Segment.camera)
        .subquery()
    )
    stmt = (
        select(Segment)
        .join(
            heads,
            (Segment.site == heads.c.site)
            & (Segment.room == heads.c.room)
            & (Segment.camera == heads.c.camera),
        )
        .where(Segment.end < cutoff, Segment.uploaded.is_(True), Segment.seq < heads.c.head)
        .order_by(Segment.site, Segment.room, Segment.camera, Segment.seq)
    )
    return list(s.scalars(stmt))


def _expired_snapshots(s: Session, cutoff: datetime) -> list[EventRow]:
    stmt = (
        select(EventRow)
        .where(EventRow.snapshot_key.is_not(None), EventRow.ended_at.is_not(None), EventRow.ended_at < cutoff)
        .order_by(EventRow.id)
    )
    return list(s.scalars(stmt))


async def _lock_blocker(objects: ObjectStore, bucket: str, keys: list[str], now: datetime) -> str | None:
    """Why one of ``keys`` cannot be deleted yet (a version retained past ``now``), or None."""
    for key in keys:
        for v in await objects.versions(bucket, key):
            if v.delete_marker:
                continue
            until = await objects.retained_until(bucket, key, v.version_id)
            if until is not None and until > now:
                return f"{key} is under object-lock retention until {until.isoformat()}"
    return None


async def _delete_all_versions(objects: ObjectStore, bucket: str, key: str) -> None:
    for v in await objects.versions(bucket, key):
        try:
            await objects.delete_version(bucket, key, v.version_id)
        except ObjectMissing:
            pass


class _Checker:
    """Object-lock checks with bounded concurrency."""

    def __init__(self, objects: ObjectStore, bucket: str, now: datetime, concurrency: int = 8) -> None:
        self.objects, self.bucket, self.now = objects, bucket, now
        self.sem = asyncio.Semaphore(concurrency)

    async def blocker(self, keys: list[str]) -> str | None:
        async with self.sem:
            return await _lock_blocker(self.objects, self.bucket, keys, self.now)


async def plan_purge(
    db: Database,
    objects: ObjectStore,
    *,
    bucket_segments: str,
    bucket_snapshots: str,
    retention_days: float,
    holds: list[HoldWindow],
    now: datetime | None = None,
) -> PurgeReport:
    """What a purge would delete now (object locks checked, nothing changed)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    report = PurgeReport(run_id=uuid.uuid4().hex, dry_run=True, now=now, cutoff=cutoff)
    rows = await db.run(lambda s: _expired_segments(s, cutoff))
    candidates: list[Segment] = []
    for row in rows:
        cam = CameraId(row.site, row.room, row.camera)
        hold = next((h for h in holds if h.covers(cam, row.start, row.end)), None)
        if hold is not None:
            report.held += 1
            continue
        candidates.append(row)
    checker = _Checker(objects, bucket_segments, now)
    blockers = await asyncio.gather(
        *(checker.blocker([r.key, chain_key(r.site, r.room, r.camera, r.seq)]) for r in candidates)
    )
    span: PurgedSpan | None = None
    for row, blocker in zip(candidates, blockers, strict=True):
        cam = CameraId(row.site, row.room, row.camera)
        if blocker is not None:
            report.locked.append(f"{cam.path} seq {row.seq}: {blocker}")
            span = None
            continue
        if span is None or span.camera != cam or row.seq != span.last_seq + 1:
            span = PurgedSpan(
                camera=cam,
                first_seq=row.seq,
                last_seq=row.seq - 1,
                first_prev_hash=row.prev_hash,
                last_link_hash=row.prev_hash,
                start=row.start,
                end=row.end,
                segments=0,
                bytes=0,
            )
            report.spans.append(span)
        span.last_seq = row.seq
        span.last_link_hash = row.link_hash
        span.start = min(span.start, row.start)
        span.end = max(span.end, row.end)
        span.segments += 1
        span.bytes += row.size
        span.keys.append((row.key, chain_key(row.site, row.room, row.camera, row.seq)))
    snaps = await db.run(lambda s: _expired_snapshots(s, cutoff))
    snap_checker = _Checker(objects, bucket_snapshots, now)
    keep: list[EventRow] = []
    for ev in snaps:
        cam = CameraId(ev.site, ev.room, ev.camera)
        if any(h.covers(cam, ev.started_at, ev.ended_at or now) for h in holds):
            continue
        keep.append(ev)
    snap_blockers = await asyncio.gather(*(snap_checker.blocker([str(ev.snapshot_key)]) for ev in keep))
    for ev, blocker in zip(keep, snap_blockers, strict=True):
        if blocker is not None:
            report.locked.append(f"snapshot of event {ev.id}: {blocker}")
            continue
        report.snapshots += 1
        report.snapshot_keys.append(str(ev.snapshot_key))
    return report


# --- running ---------------------------------------------------------------------------------


async def purge(
    db: Database,
    objects: ObjectStore,
    *,
    bucket_segments: str,
    bucket_snapshots: str,
    retention_days: float,
    holds: list[HoldWindow],
    actor: str = "system",
    dry_run: bool = False,
    now: datetime | None = None,
    holds_now: Callable[[], Awaitable[list[HoldWindow]]] | None = None,
    concurrency: int = 4,
) -> PurgeReport:
    """Plan, then (unless ``dry_run``) delete and record.  See the module docstring.

    ``holds_now`` re-reads the holds before each range is deleted: a legal hold or an export that
    started after the plan keeps the ranges it touches (``late_holds``).  Cameras are purged
    ``concurrency`` at a time; the ranges of one camera in order."""
    report = await plan_purge(
        db,
        objects,
        bucket_segments=bucket_segments,
        bucket_snapshots=bucket_snapshots,
        retention_days=retention_days,
        holds=holds,
        now=now,
    )
    if dry_run:
        log.info(
            "retention dry run cutoff=%s segments=%d snapshots=%d locked=%d held=%d",
            report.cutoff.isoformat(),
            report.segments,
            report.snapshots,
            len(report.locked),
            report.held,
        )
        return report
    report.dry_run = False
    done: list[PurgedSpan] = []
    by_camera: dict[CameraId, list[PurgedSpan]] = {}
    for span in report.spans:
        by_camera.setdefault(span.camera, []).append(span)
    sem = asyncio.Semaphore(concurrency)

    async def one_camera(spans: list[PurgedSpan]) -> None:
        async with sem:
            for span in spans:
                if holds_now is not None:
                    hold = next(
                        (h for h in await holds_now() if h.covers(span.camera, span.start, span.end)), None
                    )
                    if hold is not None:
                        report.late_holds.append(
                            f"{span.camera.path} links {span.first_seq}..{span.last_seq} kept: {hold.reason} "
                            "started during the run"
                        )
                        continue
                finished = await _purge_span(db, objects, bucket_segments, span, report)
                if finished is None:
                    break  # that camera's purge stopped (a failure is reported)
                done.append(finished)
                if finished.last_seq != span.last_seq:
                    break

    await asyncio.gather(*(one_camera(spans) for spans in by_camera.values()))
    report.spans = sorted(done, key=lambda sp: (sp.camera.path, sp.first_seq))
    purged_snaps = 0
    for key in report.snapshot_keys:
        try:
            await _delete_all_versions(objects, bucket_snapshots, key)
        except (ObjectLocked, StorageError) as e:
            report.failures.append(f"snapshot {key}: {e}")
            continue
        purged_snaps += 1

        def clear(s: Session, key: str = key) -> None:
            for ev in s.scalars(select(EventRow).where(EventRow.snapshot_key == key)):
                ev.snapshot_key = None
                ev.details = {**(ev.details or {}), "snapshot_purged": report.run_id}

        await db.run(clear)
    report.snapshots = purged_snaps
    report.snapshot_keys = report.snapshot_keys[:0]

    def audit(s: Session) -> None:
        s.add(
            AuditLog(
                actor=actor[:64],
                role=None,
                action="retention_purge",
                target="storage",
                details=report.to_dict(),
            )
        )

    await db.run(audit)
    level = logging.ERROR if report.failures else logging.INFO
    log.log(
        level,
        "retention purge run=%s cutoff=%s segments=%d bytes=%d snapshots=%d ranges=%d "
        "locked=%d held=%d failures=%d",
        report.run_id,
        report.cutoff.isoformat(),
        report.segments,
        report.bytes,
        report.snapshots,
        len(report.spans),
        len(report.locked),
        report.held,
        len(report.failures),
    )
    for msg in report.failures:
        log.error("retention purge failure run=%s: %s", report.run_id, msg)
    return report


async def _purge_span(
    db: Database, objects: ObjectStore, bucket: str, span: PurgedSpan, report: PurgeReport
) -> PurgedSpan | None:
    """Delete one range (record first, then segment + link per seq, oldest first).  Returns the
    part actually deleted (None: nothing), recorded in the DB."""
    cam = span.camera
    record = purge_record(
        site=cam.site,
        room=cam.room,
        camera=cam.camera,
        first_seq=span.first_seq,
        last_seq=span.last_seq,
        first_prev_hash=span.first_prev_hash,
        last_link_hash=span.last_link_hash,
        start=span.start,
        end=span.end,
        segments=span.segments,
        run_id=report.run_id,
        purged_at=report.now,
    )
    from storage.chain import canonical_json

    try:
        await objects.put_bytes(
            bucket,
            purge_record_key(cam.site, cam.room, cam.camera, span.first_seq, span.last_seq),
            (canonical_json(record) + "\n").encode(),
            "application/json",
        )
    except StorageError as e:
        report.failures.append(
            f"{cam.path} links {span.first_seq}..{span.last_seq}: cannot write the purge "
            f"record, nothing deleted: {e}"
        )
        return None
    deleted = 0
    for seg_key, link_key in span.keys:
        try:
            await _delete_all_versions(objects, bucket, seg_key)
            await _delete_all_versions(objects, bucket, link_key)
        except (ObjectLocked, StorageError) as e:
            report.failures.append(
                f"{cam.path} seq {span.first_seq + deleted}: {e}; the purge of this camera stopped there "
                f"(links {span.first_seq + deleted}..{span.last_seq} stay; the next run retries)"
            )
            break
        deleted += 1
    if deleted == 0:
        return None
    last = span.first_seq + deleted - 1

    def record_db(s: Session) -> PurgedSpan:
        rows = list(
            s.scalars(
                select(Segment)
                .where(
                    Segment.site == cam.site,
                    Segment.room == cam.room,
                    Segment.camera == cam.camera,
                    Segment.seq >= span.first_seq,
                    Segment.seq <= last,
                )
                .order_by(Segment.seq)
            )
        )
        done = PurgedSpan(
            camera=cam,
            first_seq=span.first_seq,
            last_seq=last,
            first_prev_hash=span.first_prev_hash,
            last_link_hash=rows[-1].link_hash if rows else span.last_link_hash,
            start=min((r.start for r in rows), default=span.start),
            end=max((r.end for r in rows), default=span.end),
            segments=len(rows),
            bytes=sum(r.size for r in rows),
        )
        s.add(
            PurgedRange(
                run_id=report.run_id,
                site=cam.site,
                room=cam.room,
                camera=cam.camera,
                first_seq=done.first_seq,
                last_seq=done.last_seq,
                first_prev_hash=done.first_prev_hash,
                last_link_hash=done.last_link_hash,
                start=done.start,
                end=done.end,
                segments=done.segments,
                bytes=done.bytes,
                purged_at=report.now,
            )
        )
        s.execute(
            delete(Segment).where(
                Segment.site == cam.site,
                Segment.room == cam.room,
                Segment.camera == cam.camera,
                Segment.seq >= span.first_seq,
                Segment.seq <= last,
            )
        )
        return done

    done = await db.run(record_db)
    log.info(
        "retention purged site=%s room=%s camera=%s links=%d..%d segments=%d bytes=%d anchor=%s",
        cam.site,
        cam.room,
        cam.camera,
        done.first_seq,
        done.last_seq,
        done.segments,
        done.bytes,
        done.last_link_hash[:16],
    )
    return done


async def purged_ranges(db: Database, camera: CameraId) -> list[PurgedRange]:
    """The camera's purged ranges as the DB recorded them, oldest first."""

    def q(s: Session) -> list[PurgedRange]:
        return list(
            s.scalars(
                select(PurgedRange)
                .where(
                    PurgedRange.site == camera.site,
                    PurgedRange.room == camera.room,
                    PurgedRange.camera == camera.camera,
                )
                .order_by(PurgedRange.first_seq)
            )
        )

    return await db.run(q)
