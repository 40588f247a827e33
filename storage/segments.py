"""Segment archive: durable write-ahead, per-camera hash chain, in-order upload to S3.

Object layout in the segments bucket (see docs/storage.md)::

    <site>/<room>/<camera>/<YYYY>/<MM>/<DD>/<HHMMSS>_<mmm>.mp4   segment bytes (start time, UTC)
    <site>/<room>/<camera>/chain/<seq:08d>.json                 chain link (storage/chain.py)

Times are truncated to milliseconds, so the key is a function of (camera, start) alone.

``put`` contract (what callers rely on):

1. The bytes and the link are written to ``wal_dir/<site>/<room>/<camera>/<seq>.seg|.json``
   with fsync (data first, link JSON last: the JSON marks a complete entry).
2. The DB row (segment + its chain link) is inserted in ONE transaction.  If that fails the WAL
   entry is removed and the error propagates: nothing was archived.
3. Upload is attempted at once unless S3 is known to be down.  If S3 is unreachable
   (``StorageUnavailable``) the entry stays in the WAL and the background uploader (``start()``)
   retries with exponential backoff, strictly in append order.  Upload is idempotent: an object
   that already exists with the same sha256 counts as uploaded; one that exists with other
   content is **never replaced** (finding 14 of issue #12: a hub whose database was reset, or a
   second hub on the same bucket, would otherwise write over archived footage and chain links):
   the upload fails with :class:`SegmentConflict`, the entry stays in the WAL and ``put`` raises
   it (the ingest answers 409).  After both objects are stored the row is flagged ``uploaded``
   and the WAL entry deleted.
4. The same (camera, start) with identical bytes returns the existing record; with different
   bytes raises :class:`SegmentConflict`.  If that record is still waiting for its upload and
   this node's WAL does not hold it (another hub node wrote the row and died before uploading,
   issue #14), the re-sent bytes are written to this node's WAL and uploaded from here.
5. With a ``fence`` (several hub nodes, ``storage.leases``): the insert's transaction first
   checks that this node holds the site's lease (``FOR SHARE`` on the lease row) and records
   the node and the lease epoch on the row; otherwise :class:`storage.leases.LeaseLost` is
   raised and nothing is archived (one writer per camera, enforced by the database).  The
   uploader only uploads this node's rows (and rows without a node): another live node's
   pending rows are in *its* WAL.

``start()`` scans the WAL first (hub restart): complete entries already in the DB are queued;
an entry whose DB insert never committed is inserted if it chains onto the camera's head (so a
crash between the fsync and the commit loses nothing), otherwise moved to ``wal_dir/_orphaned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.models import SLUG
from storage.chain import GENESIS, chain_key, compute_link_hash, link_bytes, link_fields
from storage.common import CameraId
from storage.db import Database
from storage.disk import is_enospc
from storage.files import write_atomic
from storage.leases import Fence, LeaseLost
from storage.models import AuditLog, Segment
from storage.objects import ObjectMissing, ObjectStore, StorageError, StorageUnavailable

log = logging.getLogger("evalwatch.storage.segments")

_EXT = {"video/mp4": ".mp4", "video/webm": ".webm", "video/mp2t": ".ts", "video/x-matroska": ".mkv"}


class SegmentConflict(StorageError):
    """A segment with the same camera and start time exists with different content."""


class WalFull(StorageError):
    """The write-ahead directory's disk is full: the segment was not archived (the sender keeps
    it and retries; nothing already archived is touched)."""


class SegmentRefused(StorageError):
    """The store's ``guard`` refused the segment (e.g. it overlaps a sealed session window,
    finding 4 of issue #12); the message says why.  Nothing was archived; an audit row
    ``segment_refused`` records it."""


#: ``guard(session, site, room, camera, start, end)`` → why a new segment must be refused, or None.
#: Runs inside the insert's transaction (``evalwatch.hub`` injects ``sessions.sealed.sealed_conflict``).
SegmentGuard = Callable[[Session, str, str, str, datetime, datetime], "str | None"]


def _ms(t: datetime) -> datetime:
    return t.replace(microsecond=(t.microsecond // 1000) * 1000)


class SegmentMeta(BaseModel):
    """What the recorder knows about a segment before it is stored.

    ``start``/``end`` must be timezone-aware; they are converted to UTC and truncated to
    milliseconds.  ``end`` must be after ``start``.
    """

    model_config = ConfigDict(extra="forbid")

    site: str = Field(pattern=SLUG)
    room: str = Field(pattern=SLUG)
    camera: str = Field(pattern=SLUG)
    start: datetime
    end: datetime
    content_type: str = "video/mp4"
    source: Literal["live", "backfill"] = "live"

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must be timezone-aware (UTC), got a naive datetime")
        return _ms(v.astimezone(UTC))

    @model_validator(mode="after")
    def _order(self) -> SegmentMeta:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self

    @property
    def camera_path(self) -> str:
        return CameraId(self.site, self.room, self.camera).path

    def key(self) -> str:
        """Deterministic object key from (site, room, camera, start, content_type)."""
        s = self.start
        ext = _EXT.get(self.content_type, ".bin")
        return f"{self.camera_path}/{s:%Y/%m/%d/%H%M%S}_{s.microsecond // 1000:03d}{ext}"


class SegmentRecord(BaseModel):
    """One archived segment as stored in the DB (the row, detached)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site: str
    room: str
    camera: str
    start: datetime
    end: datetime
    key: str
    sha256: str
    size: int
    content_type: str
    source: str
    seq: int
    prev_hash: str
    link_hash: str
    uploaded: bool
    created_at: datetime
    node_id: str | None = None
    epoch: int | None = None

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def link_fields(self) -> dict[str, Any]:
        return link_fields(
            site=self.site,
            room=self.room,
            camera=self.camera,
            seq=self.seq,
            key=self.key,
            start=self.start,
            end=self.end,
            sha256=self.sha256,
            size=self.size,
            content_type=self.content_type,
            source=self.source,
            prev_hash=self.prev_hash,
        )


# --- small sync helpers (run in worker threads) ----------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmps(*paths: Path) -> list[Path]:
    return [p.with_name(p.name + ".tmp") for p in paths]


def _cam_filter(site: str, room: str, camera: str) -> Any:
    return (Segment.site == site) & (Segment.room == room) & (Segment.camera == camera)


def _head(s: Session, site: str, room: str, camera: str) -> tuple[int, str]:
    row = s.scalars(
        select(Segment).where(_cam_filter(site, room, camera)).order_by(Segment.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.link_hash) if row else (0, GENESIS)


class SegmentStore:
    """The segment archive of the hub (see module docstring for the contract)."""

    def __init__(
        self,
        objects: ObjectStore,
        db: Database,
        wal_dir: str | Path,
        bucket: str,
        *,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        guard: SegmentGuard | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.objects = objects
        self.guard = guard
        self.fence = fence
        self.db = db
        self.wal_dir = Path(wal_dir)
        self.bucket = bucket
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._cam_locks: dict[str, asyncio.Lock] = {}
        self._upload_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._s3_down = False
        self._stopping = False
        self._reported_lost: set[int] = set()
        self._conflicts: dict[int, str] = {}
        self.wal_full_errors = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover the WAL and start the background uploader."""
        await asyncio.to_thread(self.wal_dir.mkdir, parents=True, exist_ok=True)
        await self._recover()
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._uploader(), name="segment-uploader")
        self._wake.set()

    async def stop(self) -> None:
        """Stop the uploader (pending entries stay in the WAL for the next start)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> SegmentStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- paths ----------------------------------------------------------------------------

    def _wal_paths(self, site: str, room: str, camera: str, seq: int) -> tuple[Path, Path]:
        d = self.wal_dir / site / room / camera
        return d / f"{seq:08d}.seg", d / f"{seq:08d}.json"

    def _lock(self, camera_path: str) -> asyncio.Lock:
        lock = self._cam_locks.get(camera_path)
        if lock is None:
            lock = self._cam_locks[camera_path] = asyncio.Lock()
        return lock

    # --- put ------------------------------------------------------------------------------

    async def put(self, meta: SegmentMeta, data: bytes) -> SegmentRecord:
        """Archive one segment (see module docstring).  Returns its record; ``uploaded`` tells
        whether it already reached S3."""
        if not data:
            raise ValueError(f"segment {meta.key()}: empty data")
        sha = hashlib.sha256(data).hexdigest()
        key = meta.key()
        where = f"site={meta.site} room={meta.room} camera={meta.camera} key={key}"
        async with self._lock(meta.camera_path):

            def existing(s: Session) -> Segment | None:
                return s.scalars(
                    select(Segment).where(
                        _cam_filter(meta.site, meta.room, meta.camera), Segment.start == meta.start
                    )
                ).first()

            def check(s: Session) -> Segment | None:
                row = existing(s)
                if row is None and self.guard is not None:
                    why = self.guard(s, meta.site, meta.room, meta.camera, meta.start, meta.end)
                    if why:
                        raise SegmentRefused(why)
                return row

            try:
                old = await self.db.run(check)
            except SegmentRefused as e:
                await self._refused(meta, sha, str(e))
                raise
            if old is not None:
                if old.sha256 == sha and old.size == len(data):
                    rec = SegmentRecord.model_validate(old)
                    if not rec.uploaded and self.fence is not None and rec.node_id != self.fence.node_id:
                        return await self._adopt(rec, data, where)
                    log.info("duplicate segment ignored %s seq=%s", where, old.seq)
                    return rec
                raise SegmentConflict(
                    f"segment {key} (seq {old.seq}) already archived with sha256 {old.sha256[:12]}…, "
                    f"got different bytes (sha256 {sha[:12]}…); refusing to replace archived footage"
                )
            seq, prev = await self.db.run(lambda s: _head(s, meta.site, meta.room, meta.camera))
            fields = link_fields(
                site=meta.site,
                room=meta.room,
                camera=meta.camera,
                seq=seq + 1,
                key=key,
                start=meta.start,
                end=meta.end,
                sha256=sha,
                size=len(data),
                content_type=meta.content_type,
                source=meta.source,
                prev_hash=prev,
            )
            link_hash = compute_link_hash(fields)
            seg_path, json_path = self._wal_paths(meta.site, meta.room, meta.camera, seq + 1)
            try:
                await asyncio.to_thread(self._wal_write, seg_path, json_path, data, link_bytes(fields))
            except OSError as e:
                await asyncio.to_thread(self._wal_remove, seg_path, json_path, *_tmps(seg_path, json_path))
                if is_enospc(e):
                    self.wal_full_errors += 1
                    log.error("WAL disk full, segment NOT archived (the agent keeps it and retries) %s "
                              "wal_dir=%s: %s", where, self.wal_dir, e)
                    raise WalFull(f"the hub's write-ahead disk ({self.wal_dir}) is full; segment {key} not "
                                  "archived, retry later") from None
                raise

            def insert(s: Session) -> Segment:
                # One writer per camera: this node's lease of the site, checked (and locked
                # against a takeover) in the very transaction that appends the link.
                epoch = self.fence.epoch(s, meta.site) if self.fence is not None else None
                if self.guard is not None:  # again in the insert's own transaction (a close meanwhile)
                    why = self.guard(s, meta.site, meta.room, meta.camera, meta.start, meta.end)
                    if why:
                        raise SegmentRefused(why)
                row = Segment(
                    site=meta.site,
                    room=meta.room,
                    camera=meta.camera,
                    start=meta.start,
                    end=meta.end,
                    key=key,
                    sha256=sha,
                    size=len(data),
                    content_type=meta.content_type,
                    source=meta.source,
                    seq=seq + 1,
                    prev_hash=prev,
                    link_hash=link_hash,
                    uploaded=False,
                    node_id=self.fence.node_id if self.fence is not None else None,
                    epoch=epoch,
                )
                s.add(row)
                s.flush()
                return row

            try:
                row = await self.db.run(insert)
            except BaseException as e:
                await asyncio.to_thread(self._wal_remove, seg_path, json_path)
                if isinstance(e, IntegrityError):
                    raise SegmentConflict(
                        f"segment {key}: conflicts with an archived row ({where})"
                    ) from None
                if isinstance(e, SegmentRefused):
                    await self._refused(meta, sha, str(e))
                if isinstance(e, LeaseLost):
                    log.warning("segment refused, this node does not hold the site's lease %s: %s", where, e)
                raise
            log.info("segment archived %s seq=%s size=%s epoch=%s", where, row.seq, row.size, row.epoch)
        rid = row.id
        if not self._s3_down:
            await self._drain()
        self._wake.set()
        if rid in self._conflicts:
            raise SegmentConflict(self._conflicts.pop(rid))
        return await self._record(rid)

    async def _adopt(self, rec: SegmentRecord, data: bytes, where: str) -> SegmentRecord:
        """A re-sent segment whose row another node committed but never uploaded (it died with
        the bytes in its WAL): keep them in this node's WAL and upload them from here, under
        this node's lease (the caller holds the camera lock)."""
        seg_path, json_path = self._wal_paths(rec.site, rec.room, rec.camera, rec.seq)
        fence = self.fence
        assert fence is not None

        def claim(s: Session) -> None:
            epoch = fence.epoch(s, rec.site)
            row = s.get(Segment, rec.id)
            if row is not None and not row.uploaded:
                row.node_id, row.epoch = fence.node_id, epoch

        if not await asyncio.to_thread(seg_path.exists):
            await asyncio.to_thread(self._wal_write, seg_path, json_path, data, link_bytes(rec.link_fields()))
        try:
            await self.db.run(claim)
        except LeaseLost:
            await asyncio.to_thread(self._wal_remove, seg_path, json_path)
            raise
        log.warning("segment archived by node %s but never uploaded; uploading the re-sent copy %s seq=%s",
                    rec.node_id, where, rec.seq)
        if not self._s3_down:
            await self._drain()
        self._wake.set()
        return await self._record(rec.id)

    async def _refused(self, meta: SegmentMeta, sha: str, why: str) -> None:
        """Audit a refused segment (the agent of its site sent it; ingest checked the token)."""
        log.warning("segment refused site=%s room=%s camera=%s start=%s: %s",
                    meta.site, meta.room, meta.camera, meta.start.isoformat(), why)

        def add(s: Session) -> None:
            s.add(AuditLog(
                actor=f"agent:{meta.site}", role="agent", action="segment_refused", target=meta.camera_path,
                details={"start": meta.start.isoformat(), "end": meta.end.isoformat(), "sha256": sha,
                         "source": meta.source, "reason": why},
            ))

        try:
            await self.db.run(add)
        except Exception:
            log.exception("could not audit a refused segment")

    def _wal_write(self, seg_path: Path, json_path: Path, data: bytes, link: bytes) -> None:
        seg_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(seg_path, data)
        write_atomic(json_path, link)
        _fsync_dir(seg_path.parent)

    @staticmethod
    def _wal_remove(*paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    async def _record(self, rid: int) -> SegmentRecord:
        row = await self.db.run(lambda s: s.get(Segment, rid))
        return SegmentRecord.model_validate(row)

    # --- upload ---------------------------------------------------------------------------

    async def flush(self) -> int:
        """Try to upload every pending segment now; returns how many are still pending."""
        await self._drain()
        return await self.pending_uploads()

    async def _drain(self) -> bool:
        """Upload pending rows in append order.  False when S3 is unreachable."""
        async with self._upload_lock:
            mine = self._pending()
            rows = await self.db.run(
                lambda s: list(s.scalars(select(Segment).where(mine).order_by(Segment.id)))
            )
            for row in rows:
                rec = SegmentRecord.model_validate(row)
                try:
                    await self._upload_one(rec)
                except StorageUnavailable as e:
                    if not self._s3_down:
                        log.warning(
                            "S3 unavailable, segments wait in the WAL site=%s room=%s camera=%s key=%s: %s",
                            rec.site,
                            rec.room,
                            rec.camera,
                            rec.key,
                            e,
                        )
                    self._s3_down = True
                    return False
                except (StorageError, OSError) as e:
                    if isinstance(e, SegmentConflict):
                        self._conflicts[rec.id] = str(e)
                    if rec.id not in self._reported_lost:
                        self._reported_lost.add(rec.id)
                        log.error(
                            "cannot upload segment site=%s room=%s camera=%s key=%s seq=%s: %s",
                            rec.site,
                            rec.room,
                            rec.camera,
                            rec.key,
                            rec.seq,
                            e,
                        )
            if self._s3_down:
                log.info("S3 reachable again; WAL drained")
            self._s3_down = False
            return True

    async def _upload_if_needed(
        self, key: str, data: bytes, sha: str, content_type: str, meta: dict[str, str]
    ) -> None:
        try:
            info = await self.objects.stat(self.bucket, key)
        except ObjectMissing:
            await self.objects.put_bytes(self.bucket, key, data, content_type, {**meta, "sha256": sha})
            return
        stored = info.metadata.get("sha256")
        if stored is None and info.size == len(data):
            # no checksum recorded with it (copied in by hand?): compare the bytes themselves
            stored = hashlib.sha256(await self.objects.get_bytes(self.bucket, key)).hexdigest()
        if stored == sha and info.size == len(data):
            return  # idempotent: already there
        # Never replace what is archived under this key (finding 14 of #12): on a versioned
        # bucket the new version would become the one every reader gets.  The entry stays in
        # the WAL, the row un-uploaded, and the conflict is logged until an operator acts.
        raise SegmentConflict(
            f"object {self.bucket}/{key} already holds other content (sha256 "
            f"{(stored or 'unknown')[:12]}…, {info.size} bytes; ours {sha[:12]}…, {len(data)} bytes); "
            "refusing to replace archived footage (the hub keeps its copy in the WAL)"
        )

    async def _upload_one(self, rec: SegmentRecord) -> None:
        seg_path, json_path = self._wal_paths(rec.site, rec.room, rec.camera, rec.seq)
        link = link_bytes(rec.link_fields())
        try:
            data = await asyncio.to_thread(seg_path.read_bytes)
        except FileNotFoundError:
            # Crash after upload but before the DB flag?  Accept if S3 has the right bytes.
            info = await self.objects.stat(self.bucket, rec.key)
            if info.metadata.get("sha256") != rec.sha256:
                raise StorageError(
                    f"WAL file {seg_path} is missing and S3 does not hold {rec.key}: footage lost"
                ) from None
            data = b""
        if data:
            if hashlib.sha256(data).hexdigest() != rec.sha256:
                raise StorageError(f"WAL file {seg_path} does not match the recorded sha256 of {rec.key}")
            await self._upload_if_needed(
                rec.key,
                data,
                rec.sha256,
                rec.content_type,
                {"seq": str(rec.seq), "link-hash": rec.link_hash, "source": rec.source},
            )
        ck = chain_key(rec.site, rec.room, rec.camera, rec.seq)
        await self._upload_if_needed(ck, link, hashlib.sha256(link).hexdigest(), "application/json", {})

        def mark(s: Session) -> None:
            row = s.get(Segment, rec.id)
            if row is not None:
                row.uploaded = True

        await self.db.run(mark)
        await asyncio.to_thread(self._wal_remove, seg_path, json_path)
        log.info(
            "segment uploaded site=%s room=%s camera=%s key=%s seq=%s",
            rec.site,
            rec.room,
            rec.camera,
            rec.key,
            rec.seq,
        )

    async def _uploader(self) -> None:
        delay = self.retry_min_s
        while not self._stopping:
            self._wake.clear()
            try:
                ok = await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("segment uploader error")
                ok = False
            if ok:
                delay = self.retry_min_s
                # Wait for a new put (or re-check now and then; errors are logged once).
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # arrives as the event fires, which made stop() hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.retry_max_s):
                        await self._wake.wait()
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    def _pending(self) -> Any:
        """Rows this store must upload: not uploaded and, with a fence, written by this node (or
        by no node): another live node's pending rows wait in its own WAL."""
        cond: Any = Segment.uploaded.is_(False)
        if self.fence is not None:
            cond = cond & (Segment.node_id.is_(None) | (Segment.node_id == self.fence.node_id))
        return cond

    async def pending_uploads(self) -> int:
        """Segments archived by this node but not yet in S3 (for metrics)."""

        def q(s: Session) -> int:
            n = s.scalar(select(func.count()).select_from(Segment).where(self._pending()))
            return int(n or 0)

        return await self.db.run(q)

    async def wait_uploaded(self, timeout_s: float = 30.0) -> None:
        """Wait until nothing is pending (tests, graceful shutdown).  TimeoutError otherwise."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.pending_uploads():
                    self._wake.set()
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise TimeoutError(f"segments still pending after {timeout_s}s (S3 down?)") from None

    # --- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        entries = await asyncio.to_thread(self._scan_wal)
        for json_path in entries:
            await self._recover_one(json_path)

    def _scan_wal(self) -> list[Path]:
        out: list[Path] = []
        for p in sorted(self.wal_dir.rglob("*")):
            if not p.is_file() or "_orphaned" in p.parts:
                continue
            if p.name.endswith(".tmp"):
                p.unlink()  # torn write from a crash: put() never returned
            elif p.suffix == ".seg" and not p.with_suffix(".json").exists():
                p.unlink()  # link never written: put() never returned
            elif p.suffix == ".json":
                out.append(p)
        return out

    def _orphan(self, json_path: Path, why: str) -> None:
        dest = self.wal_dir / "_orphaned" / json_path.parent.relative_to(self.wal_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for p in (json_path.with_suffix(".seg"), json_path):
            if p.exists():
                os.replace(p, dest / p.name)
        log.error("WAL entry %s set aside in %s: %s", json_path, dest, why)

    async def _recover_one(self, json_path: Path) -> None:
        seg_path = json_path.with_suffix(".seg")
        try:
            doc = json.loads(await asyncio.to_thread(json_path.read_text))
            data = await asyncio.to_thread(seg_path.read_bytes)
        except (OSError, ValueError) as e:
            await asyncio.to_thread(self._orphan, json_path, f"unreadable: {e}")
            return
        if compute_link_hash(doc) != doc.get("link_hash") or hashlib.sha256(data).hexdigest() != doc.get(
            "sha256"
        ):
            await asyncio.to_thread(self._orphan, json_path, "content does not match its link")
            return
        site, room, camera, seq = doc["site"], doc["room"], doc["camera"], int(doc["seq"])

        def reconcile(s: Session) -> str:
            row = s.scalars(
                select(Segment).where(_cam_filter(site, room, camera), Segment.seq == seq)
            ).first()
            if row is not None:
                if row.link_hash != doc["link_hash"]:
                    return "conflict"
                if not row.uploaded and self.fence is not None:
                    row.node_id = self.fence.node_id  # its bytes are in this WAL: upload from here
                return "done" if row.uploaded else "pending"
            head_seq, head_hash = _head(s, site, room, camera)
            if seq != head_seq + 1 or doc["prev_hash"] != head_hash:
                return "unchained"
            epoch = None
            if self.fence is not None:
                try:
                    epoch = self.fence.epoch(s, site)
                except LeaseLost:
                    return "not leased"
            s.add(
                Segment(
                    site=site,
                    room=room,
                    camera=camera,
                    start=datetime.fromisoformat(doc["start"].replace("Z", "+00:00")),
                    end=datetime.fromisoformat(doc["end"].replace("Z", "+00:00")),
                    key=doc["key"],
                    sha256=doc["sha256"],
                    size=int(doc["size"]),
                    content_type=doc["content_type"],
                    source=doc["source"],
                    seq=seq,
                    prev_hash=doc["prev_hash"],
                    link_hash=doc["link_hash"],
                    uploaded=False,
                    node_id=self.fence.node_id if self.fence is not None else None,
                    epoch=epoch,
                )
            )
            return "inserted"

        state = await self.db.run(reconcile)
        where = f"site={site} room={room} camera={camera} seq={seq} key={doc['key']}"
        if state == "done":
            await asyncio.to_thread(self._wal_remove, seg_path, json_path)
        elif state == "inserted":
            log.warning("recovered uncommitted segment from WAL %s", where)
        elif state == "pending":
            log.info("WAL segment queued for upload %s", where)
        else:
            await asyncio.to_thread(self._orphan, json_path, f"{state} with the DB chain ({where})")

    # --- queries and reads ----------------------------------------------------------------

    async def list_segments(
        self, site: str, room: str, camera: str, start: datetime, end: datetime
    ) -> list[SegmentRecord]:
        """Segments of the camera overlapping [start, end), by start time."""

        def q(s: Session) -> list[Segment]:
            return list(
                s.scalars(
                    select(Segment)
                    .where(_cam_filter(site, room, camera), Segment.start < end, Segment.end > start)
                    .order_by(Segment.start)
                )
            )

        return [SegmentRecord.model_validate(r) for r in await self.db.run(q)]

    async def missing_ranges(
        self, site: str, room: str, camera: str, start: datetime, end: datetime, tolerance_s: float = 0.5
    ) -> list[tuple[datetime, datetime]]:
        """Time ranges within [start, end) covered by no segment; gaps up to ``tolerance_s``
        are ignored (segment boundaries jitter)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("missing_ranges needs timezone-aware datetimes")
        tol = timedelta(seconds=tolerance_s)
        gaps: list[tuple[datetime, datetime]] = []
        cursor = start.astimezone(UTC)
        end = end.astimezone(UTC)
        for rec in await self.list_segments(site, room, camera, cursor, end):
            if rec.start - cursor > tol:
                gaps.append((cursor, rec.start))
            cursor = max(cursor, rec.end)
        if end - cursor > tol:
            gaps.append((cursor, end))
        return gaps

    async def presigned_url(self, record: SegmentRecord, expires: timedelta | float = 3600) -> str:
        """A time-limited URL for replay.  The segment must already be in S3."""
        if not record.uploaded:
            record = await self._record(record.id)
            if not record.uploaded:
                raise StorageUnavailable(f"segment {record.key} is still waiting in the WAL; use read()")
        return await self.objects.presigned_get(self.bucket, record.key, expires)

    async def read(self, record: SegmentRecord, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of a segment (ranged), from the WAL while it waits there, else from S3."""
        seg_path, _ = self._wal_paths(record.site, record.room, record.camera, record.seq)

        def local() -> bytes | None:
            try:
                with open(seg_path, "rb") as f:
                    f.seek(offset)
                    return f.read(-1 if length is None else length)
            except FileNotFoundError:
                return None

        data = await asyncio.to_thread(local)
        if data is not None:
            return data
        return await self.objects.get_bytes(self.bucket, record.key, offset, length)
