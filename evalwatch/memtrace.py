"""Where the hub's memory goes over time: tracemalloc snapshots, logged as diffs (issue #17).

A lasting diagnostic, off by default (tracemalloc slows allocation-heavy code by ~1.5-2x).
``evalwatch hub --trace-memory MINUTES`` or ``EVALWATCH_TRACE_MEMORY=MINUTES`` starts tracing
at start-up; every ``MINUTES`` a daemon thread takes a snapshot and logs, against the first
snapshot taken after ``EVALWATCH_TRACE_MEMORY_WARMUP`` seconds (default 120) and against the
previous one:

* ``memtrace subsystem=... kib=... growth_kib=... growth_since_warmup_kib=...`` per subsystem
  (the allocating frame's file mapped to recorder, analysis, event store, alert hub, thumbnails,
  S3 client, aiortc, ... by :func:`subsystem`);
* ``memtrace top=N site=FILE:LINE growth_kib=... count_growth=...`` for the ``top`` allocation
  sites (innermost frame) that grew most since warm-up.

Read the hub's log for ``memtrace``; a site that keeps growing snapshot after snapshot is a leak
candidate.  The process's RSS is logged with each snapshot (``rss_kib``), so traced Python
memory can be told from native allocations (FFmpeg, onnxruntime) that tracemalloc does not see.
"""

from __future__ import annotations

import logging
import os
import threading
import tracemalloc
from typing import Any

log = logging.getLogger("evalwatch.memtrace")

#: File-path fragments → subsystem, first match wins (paths use "/" on every platform here).
SUBSYSTEMS: tuple[tuple[str, str], ...] = (
    ("/capture/recorder", "recorder"),
    ("/capture/ingest", "ingest"),
    ("/capture/agentstatus", "ingest"),
    ("/dashboard/thumbs", "thumbnails"),
    ("/dashboard/alerts", "alert hub"),
    ("/dashboard/notify", "alert hub"),
    ("/dashboard/", "dashboard"),
    ("/analysis/store", "event store"),
    ("/analysis/bus", "alert hub"),
    ("/analysis/snapshot", "event store"),
    ("/analysis/", "analysis"),
    ("/evalwatch/edgehub", "analysis"),
    ("/storage/segments", "segment store"),
    ("/storage/chain", "segment store"),
    ("/storage/objects", "S3 client"),
    ("/storage/", "storage"),
    ("/sessions/", "sessions"),
    ("/aiortc/", "aiortc"),
    ("/aioice/", "aiortc"),
    ("/av/", "aiortc"),
    ("/miniopy_async/", "S3 client"),
    ("/minio/", "S3 client"),
    ("/aiobotocore/", "S3 client"),
    ("/botocore/", "S3 client"),
    ("/aiohttp/", "S3 client"),
    ("/sqlalchemy/", "database"),
    ("/sqlite3/", "database"),
    ("/alembic/", "database"),
    ("/uvicorn/", "web server"),
    ("/starlette/", "web server"),
    ("/fastapi/", "web server"),
    ("/pydantic", "web server"),
    ("/h11/", "web server"),
    ("/websockets/", "web server"),
    ("/httpx/", "web server"),
    ("/httpcore/", "web server"),
    ("/numpy/", "numpy"),
    ("/onnxruntime/", "analysis"),
    ("/openvino/", "analysis"),
    ("/asyncio/", "asyncio"),
    ("/logging/", "logging"),
    ("/apscheduler/", "retention"),
)


def subsystem(filename: str) -> str:
    """The subsystem an allocating file belongs to ("other" when none matches)."""
    f = filename.replace("\\", "/")
    for frag, name in SUBSYSTEMS:
        if frag in f:
            return name
    return "other"


#: (file, line) -> (bytes, blocks) of one snapshot: what is kept between snapshots (not the
#: snapshots themselves, which hold every traced block and would inflate the process).
Sizes = dict[tuple[str, int], tuple[int, int]]


#: The tracer's own allocations (its per-line totals, tracemalloc's snapshot) are not reported.
_OWN = frozenset({__file__, tracemalloc.__file__})


def _sizes() -> Sizes:
    """The allocations alive now, grouped by allocating line (one snapshot, then dropped)."""
    snap = tracemalloc.take_snapshot()
    out = {(st.traceback[0].filename, st.traceback[0].lineno): (st.size, st.count)
           for st in snap.statistics("lineno") if st.traceback[0].filename not in _OWN}
    del snap
    return out


def _by_subsystem(sizes: Sizes) -> dict[str, int]:
    out: dict[str, int] = {}
    for (filename, _line), (size, _n) in sizes.items():
        name = subsystem(filename)
        out[name] = out.get(name, 0) + size
    return out


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return -1


class MemoryTracer:
    """Snapshots every ``interval`` seconds on a daemon thread, diffs logged (module docstring)."""

    def __init__(self, interval: float, *, warmup: float = 120.0, top: int = 15, frames: int = 1):
        if interval <= 0:
            raise ValueError(f"memory trace interval must be > 0 seconds, got {interval}")
        self.interval, self.warmup, self.top, self.frames = interval, warmup, top, frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline: Sizes | None = None
        self.previous: Sizes | None = None
        self.reports = 0

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
        self._thread = threading.Thread(target=self._run, name="memtrace", daemon=True)
        self._thread.start()
        log.info("memtrace on interval_s=%.0f warmup_s=%.0f", self.interval, self.warmup)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        if self._stop.wait(self.warmup):
            return
        self.baseline = self.previous = _sizes()
        log.info("memtrace baseline rss_kib=%d traced_kib=%d", _rss_kib(),
                 tracemalloc.get_traced_memory()[0] // 1024)
        while not self._stop.wait(self.interval):
            self.report()

    def report(self) -> list[str]:
        """Group what is allocated now by line and log it against the baseline and the previous
        report; returns the logged lines (tests read them)."""
        now = _sizes()
        base = self.baseline if self.baseline is not None else now
        prev = self.previous if self.previous is not None else now
        self.reports += 1
        lines = [f"memtrace report={self.reports} rss_kib={_rss_kib()} "
                 f"traced_kib={tracemalloc.get_traced_memory()[0] // 1024}"]
        sub, b, p = _by_subsystem(now), _by_subsystem(base), _by_subsystem(prev)
        for name in sorted(sub, key=lambda n: sub[n] - b.get(n, 0), reverse=True):
            lines.append(
                f"memtrace subsystem={name!r} kib={sub[name] // 1024} "
                f"growth_kib={(sub[name] - p.get(name, 0)) // 1024} "
                f"growth_since_warmup_kib={(sub[name] - b.get(name, 0)) // 1024}"
            )
        grown = sorted(((size - base.get(k, (0, 0))[0], n - base.get(k, (0, 0))[1], size, k)
                        for k, (size, n) in now.items()), reverse=True)
        for i, (dsize, dn, size, (filename, line)) in enumerate(grown[: self.top]):
            if dsize <= 0:
                break
            lines.append(f"memtrace top={i + 1} site={filename}:{line} subsystem={subsystem(filename)!r} "
                         f"growth_kib={dsize // 1024} kib={size // 1024} count_growth={dn} "
                         f"growth_since_last_kib={(size - prev.get((filename, line), (0, 0))[0]) // 1024}")
        for ln in lines:
            log.info("%s", ln)
        self.previous = now
        return lines


class AllocationCapture:
    """Every allocation of this process, native ones too, written by memray to ``path`` (issue #17).

    ``EVALWATCH_MEMRAY=FILE`` (``bench/soak.py --memray FILE``): from the hub's start until it
    stops, memray records each ``malloc``/``free``/``mmap`` of every thread — FFmpeg's, OpenVINO's,
    SQLite's as well as Python's large objects and pymalloc's arenas — with the Python stack that
    made it, and the process's RSS every second.  ``bench/memgrowth.py FILE --at M1 M2 ...`` then
    says which sites hold more memory at one minute than at another, and whether the RSS rises
    while the live bytes do not (the allocator, not a leak).  What tracemalloc cannot see.

    Cost, measured in the 20-camera soak: hub CPU within the usual 85-92 s/min, the capture
    ~36 MB per minute.  Needs memray (``pip install 'evalwatch[profile]'``)."""

    def __init__(self, path: str):
        self.path = path
        self._tracker: Any = None

    def start(self) -> None:
        try:
            import memray
        except ImportError:
            raise ValueError("EVALWATCH_MEMRAY needs memray: pip install 'evalwatch[profile]'") from None
        if os.path.exists(self.path):
            raise ValueError(f"EVALWATCH_MEMRAY: {self.path} exists already (memray will not overwrite it)")
        tracker = memray.Tracker(self.path, file_format=memray.FileFormat.ALL_ALLOCATIONS,
                                 memory_interval_ms=1000)
        try:
            tracker.__enter__()
        except OSError as e:
            raise ValueError(f"EVALWATCH_MEMRAY: cannot write {self.path}: {e}") from None
        self._tracker = tracker
        log.info("memtrace memray capture on file=%s", self.path)

    def stop(self) -> None:
        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)
            self._tracker = None
            log.info("memtrace memray capture off file=%s", self.path)


def capture_from_env() -> AllocationCapture | None:
    """A started memray capture when ``EVALWATCH_MEMRAY`` names a file, else None."""
    path = os.environ.get("EVALWATCH_MEMRAY")
    if not path:
        return None
    cap = AllocationCapture(path)
    cap.start()
    return cap


def from_env(minutes: float | None = None) -> MemoryTracer | None:
    """A started tracer for ``minutes`` (or ``EVALWATCH_TRACE_MEMORY``), None when neither is set."""
    raw = os.environ.get("EVALWATCH_TRACE_MEMORY")
    if minutes is None and raw:
        try:
            minutes = float(raw)
        except ValueError:
            raise ValueError(f"EVALWATCH_TRACE_MEMORY must be minutes (a number), got {raw!r}") from None
    if minutes is None:
        return None
    if minutes <= 0:
        raise ValueError(f"--trace-memory / EVALWATCH_TRACE_MEMORY must be > 0 minutes, got {minutes}")
    warm = os.environ.get("EVALWATCH_TRACE_MEMORY_WARMUP", "120")
    try:
        warmup = float(warm)
    except ValueError:
        raise ValueError(f"EVALWATCH_TRACE_MEMORY_WARMUP must be seconds, got {warm!r}") from None
    tracer = MemoryTracer(minutes * 60, warmup=warmup)
    tracer.start()
    return tracer
