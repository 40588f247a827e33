"""The agent's bounded local segment spool.

Layout: ``spool_dir/<site>/<room>/<camera>/<start>_<end>.mp4`` where start/end are UTC times
``YYYYmmddTHHMMSS.fffZ``.  A segment is written as ``*.mp4.part`` and renamed when complete, so a
listed ``.mp4`` is always a whole file.  After the hub accepted it an empty ``*.mp4.done`` marker
is created next to it; the segment itself stays until the quota needs the space (so it can be
re-sent when the hub reports it missing).  Quota: ``spool_max_mb``; uploaded segments are dropped
first (oldest first), then — with a warning, because that footage exists nowhere else — the
oldest not yet uploaded ones.

The disk counts too (``min_free_mb``, ``capture.spool_min_free_mb``): when less than that is free
on the spool's file system — a disk smaller than the quota, or filled by something else — the
same eviction runs until that much is free again (or the spool is empty), so the camera keeps
recording the newest footage instead of failing to write.  ``disk_report()`` says how the disk
stands (``low``: it was below the minimum at the last check); the agent sends it in every
heartbeat and the hub shows ``disk_full`` while it is low.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storage.disk import DiskUsage, disk_usage

log = logging.getLogger(__name__)

TIME_FMT = "%Y%m%dT%H%M%S"

#: One eviction at a time per spool folder (:meth:`Spool.enforce_quota`): every camera's writer
#: enforces the quota at the same segment boundary, and the demo's and the benches' agents
#: share one folder through several :class:`Spool` objects.
_EVICTING: dict[Path, threading.Lock] = {}
_EVICTING_GUARD = threading.Lock()


def _eviction_lock(root: Path) -> threading.Lock:
    key = root.resolve()
    with _EVICTING_GUARD:
        return _EVICTING.setdefault(key, threading.Lock())


def fmt_stamp(t: datetime) -> str:
    """The spool's file-name time stamp (``20240506T070809.123Z``: UTC, milliseconds), not an
    ISO 8601 string: file names must sort and must not hold ``:`` (Windows)."""
    t = t.astimezone(UTC)
    return t.strftime(TIME_FMT) + f".{t.microsecond // 1000:03d}Z"


def parse_stamp(s: str) -> datetime:
    """The UTC time of a :func:`fmt_stamp` stamp (``ValueError`` when it is not one).  Times the
    API and the command line read are ISO 8601: ``storage.common.parse_time``."""
    base, _, frac = s.removesuffix("Z").partition(".")
    t = datetime.strptime(base, TIME_FMT).replace(tzinfo=UTC)
    return t.replace(microsecond=int((frac or "0").ljust(3, "0")[:3]) * 1000)


@dataclass(frozen=True)
class SpooledSegment:
    site: str
    room: str
    camera: str
    start: datetime
    end: datetime
    path: Path

    @property
    def done(self) -> bool:
        return self.path.with_name(self.path.name + ".done").exists()

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


class Spool:
    def __init__(self, root: str | Path, max_mb: float, min_free_mb: float = 0.0):
        self.root = Path(root)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self.dropped_unsent = 0
        self.dropped_sent = 0
        self.disk_low = False
        self.disk: DiskUsage | None = None

    def _disk(self) -> DiskUsage | None:
        try:
            self.disk = disk_usage(self.root)
        except OSError as e:
            log.warning("spool: cannot read the disk of %s: %s", self.root, e)
            return None
        return self.disk

    def disk_report(self) -> dict[str, object]:
        """The spool's disk for the heartbeat: size, free, fill ratio, the minimum, ``low``."""
        d = self._disk()
        if d is None:
            return {"path": str(self.root), "low": True, "error": "unreadable", "total_bytes": 0,
                    "free_bytes": 0}
        low = self.disk_low or (self.min_free_bytes > 0 and d.free < self.min_free_bytes)
        return {**d.to_dict(), "min_free_bytes": self.min_free_bytes, "low": low,
                "dropped_unsent": self.dropped_unsent, "dropped_sent": self.dropped_sent}

    def camera_dir(self, site: str, room: str, camera: str) -> Path:
        return self.root / site / room / camera

    def path_for(self, site: str, room: str, camera: str, start: datetime, end: datetime) -> Path:
        return self.camera_dir(site, room, camera) / f"{fmt_stamp(start)}_{fmt_stamp(end)}.mp4"

    def segments(
        self, site: str | None = None, room: str | None = None, camera: str | None = None
    ) -> list[SpooledSegment]:
        """Complete segments, oldest first (ties broken by camera)."""
        out: list[SpooledSegment] = []
        if not self.root.exists():
            return out
        for p in self.root.glob("*/*/*/*.mp4"):
            cam_dir = p.parent
            s, r, c = cam_dir.parent.parent.name, cam_dir.parent.name, cam_dir.name
            if (site and s != site) or (room and r != room) or (camera and c != camera):
                continue
            try:
                a, b = p.stem.split("_")
                seg = SpooledSegment(s, r, c, parse_stamp(a), parse_stamp(b), p)
            except ValueError:
                log.warning("spool: ignoring unexpected file %s", p)
                continue
            out.append(seg)
        out.sort(key=lambda x: (x.start, x.site, x.room, x.camera))
        return out

    def pending(self, site: str | None = None) -> list[SpooledSegment]:
        """Complete segments not yet accepted by the hub (of ``site`` only, if given)."""
        return [s for s in self.segments(site) if not s.done]

    def mark_done(self, seg: SpooledSegment) -> None:
        seg.path.with_name(seg.path.name + ".done").touch()

    def mark_rejected(self, seg: SpooledSegment, reason: str) -> None:
        """Move a segment the hub refused (4xx) aside so it does not block the queue."""
        target = seg.path.with_name(seg.path.name + ".rejected")
        os.replace(seg.path, target)
        target.with_name(target.name + ".txt").write_text(reason[:2000], encoding="utf-8")

    def total_bytes(self) -> int:
        """Bytes of every file under the spool root.  Files may be renamed or removed while this
        walks (the writers of other cameras, the uploader): those are skipped, never an error
        (it used to abort the segment writer's boundary step: ``encode failed``)."""
        total = 0
        for folder, _dirs, files in os.walk(self.root):  # os.walk ignores vanished folders
            for name in files:
                try:
                    st = os.stat(os.path.join(folder, name), follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
        return total

    def enforce_quota(self) -> None:
        """Evict until the spool fits its quota and the disk minimum: uploaded segments first,
        oldest first, then the oldest not yet uploaded (with a warning).  One caller at a time
        per spool folder; a segment another caller already removed is skipped, not counted (the
        writers of several cameras used to race here and drop pending footage, issue #17)."""
        with _eviction_lock(self.root):
            self._enforce_quota()

    def _enforce_quota(self) -> None:
        total = self.total_bytes()
        disk = self._disk() if self.min_free_bytes else None
        free = disk.free if disk is not None else None
        low = free is not None and free < self.min_free_bytes
        if low and not self.disk_low:
            log.warning("spool disk low: %.1f MB free on %s (minimum %.1f MB); evicting oldest first",
                        (free or 0) / 1e6, self.root, self.min_free_bytes / 1e6)
        self.disk_low = low

        def fits() -> bool:
            return total <= self.max_bytes and (free is None or free >= self.min_free_bytes)

        if fits():
            return
        segs = self.segments()
        for want_done in (True, False):
            for seg in segs:
                if fits():
                    return
                if not seg.path.exists() or seg.done != want_done:
                    continue  # gone (the uploader's re-send check, a rejected move) or the other pass
                size = seg.size
                self.remove(seg)
                total -= size
                if free is not None:
                    free += size
                if want_done:
                    self.dropped_sent += 1
                    log.info(
                        "spool full: dropped uploaded segment site=%s room=%s camera=%s start=%s",
                        seg.site,
                        seg.room,
                        seg.camera,
                        fmt_stamp(seg.start),
                    )
                else:
                    self.dropped_unsent += 1
                    log.warning(
                        "spool full (%d MB quota, %.1f MB free on disk): dropped NOT-YET-UPLOADED segment "
                        "site=%s room=%s camera=%s start=%s end=%s",
                        self.max_bytes // (1024 * 1024),
                        (free or 0) / 1e6,
                        seg.site,
                        seg.room,
                        seg.camera,
                        fmt_stamp(seg.start),
                        fmt_stamp(seg.end),
                    )

    def remove(self, seg: SpooledSegment) -> None:
        for p in (seg.path, seg.path.with_name(seg.path.name + ".done")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
