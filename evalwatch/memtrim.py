"""Give the hub's freed native memory back to the system: glibc's malloc thresholds and a
periodic ``malloc_trim(0)`` (issue #17).

The hub's native allocations (FFmpeg frames and decoder pools, onnxruntime/OpenVINO tensors,
aiortc's packets) come and go in many threads; glibc keeps what they free in its arenas and only
returns the top of each heap when it is large enough, so a long-running hub's RSS creeps up with
the fragmentation of its arenas although the memory in use stays flat.  ``malloc_trim(0)`` walks
every arena and returns all whole free pages (``MADV_DONTNEED``), wherever they are.

:class:`MallocTrim` runs it every ``hub.malloc_trim_seconds`` in a worker thread (it holds each
arena's lock while it walks it: the event loop keeps running) and logs what it returned and how
long it took.  :func:`tune_malloc` (``hub.malloc_mmap_threshold_kb``, at start) keeps large
blocks out of the arenas altogether.  Not glibc (musl, macOS, Windows): nothing to do, both
stay off.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from typing import Any

log = logging.getLogger("evalwatch.memtrim")


def _glibc(symbol: str, argtypes: list[Any]) -> Any | None:
    """A glibc function returning int (``malloc_trim``, ``mallopt``), or None where there is none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


def _libc_trim() -> Any | None:
    """glibc's ``malloc_trim``, or None where there is none."""
    return _glibc("malloc_trim", [ctypes.c_size_t])


#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold_kb: int) -> bool:
    """Allocations of ``mmap_threshold_kb`` KiB or more get their own mapping, returned to the
    system when freed, and an arena's free top above that size is given back too
    (``mallopt(M_MMAP_THRESHOLD)`` and ``M_TRIM_THRESHOLD``: what ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` do).  glibc's default raises the mmap threshold up to 32 MiB as
    soon as a large block is freed, so decoded frames (~460 KB at 640x480) and detector tensors
    end up in the thread arenas, which grow with every backlog and keep the memory.  0: glibc's
    default.  False where there is no glibc or it refused."""
    if mmap_threshold_kb <= 0:
        return False
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    size = mmap_threshold_kb * 1024
    ok = bool(mallopt(M_MMAP_THRESHOLD, size)) and bool(mallopt(M_TRIM_THRESHOLD, size))
    log.info("malloc thresholds mmap_threshold_kb=%d trim_threshold_kb=%d applied=%s",
             mmap_threshold_kb, mmap_threshold_kb, ok)
    return ok


def rss_bytes() -> int:
    """This process's resident set (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MallocTrim:
    """``malloc_trim(0)`` every ``period_s`` seconds (module docstring); ``period_s`` 0: off.

    ``runs``, ``seconds`` (total time spent trimming) and ``released_bytes`` (RSS before minus
    after, summed) tell what it costs and what it gives back."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._trim = _libc_trim() if period_s > 0 else None
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.seconds = 0.0
        self.released_bytes = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def trim(self) -> tuple[int, float]:
        """One ``malloc_trim(0)`` now: (bytes of RSS released, seconds it took)."""
        if self._trim is None:
            return 0, 0.0
        before = rss_bytes()
        t0 = time.perf_counter()
        self._trim(0)
        took = time.perf_counter() - t0
        released = max(0, before - rss_bytes())
        self.runs += 1
        self.seconds += took
        self.released_bytes += released
        return released, took

    def start(self) -> None:
        if self._trim is None:
            if self.period_s > 0:
                log.info("malloc_trim not available (not glibc): hub.malloc_trim_seconds ignored")
            return
        self._task = asyncio.create_task(self._run(), name="malloc-trim")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                released, took = await asyncio.to_thread(self.trim)
            except Exception:  # never let a diagnostic-grade helper take the hub down
                log.exception("malloc_trim failed")
                continue
            log.debug("malloc_trim released_mb=%.1f took_ms=%.1f runs=%d", released / 2**20,
                      took * 1000, self.runs)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.runs:
            log.info("malloc_trim runs=%d released_mb=%.1f total_ms=%.0f", self.runs,
                     self.released_bytes / 2**20, self.seconds * 1000)
