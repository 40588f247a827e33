"""Full disks on the hub and the agents: ``disk_full`` alerts and the ``/metrics`` gauges.

:class:`DiskWatch` checks, every ``storage.disk_check_seconds``, the disk of the hub's WAL
directory (``storage.wal_dir``: segments and snapshots wait there) and of the SQLite database
(a PostgreSQL server's disk is the server's to watch), and takes each agent's spool disk from
its heartbeat (``agent.spool_disk``: the agent measures its own disk, see ``capture.spool``).
A disk is *full* when less than the minimum is free or it is filled to the alert ratio
(``storage.disk_min_free_mb`` / ``disk_alert_ratio`` on the hub; ``capture.spool_min_free_mb``
on an agent, which evicts oldest first as well).  While full, an incident with rule
``disk_full`` is open, through the incident store like every alert (row, bus, WebSocket,
dashboard alert list): site ``_hub``, room ``wal`` or ``database``, camera ``disk`` for the hub;
the agent's site, room ``_agent``, camera ``spool`` for an agent.  It closes when space is back.

:meth:`DiskWatch.readings` feeds ``evalwatch_disk_free_bytes``, ``evalwatch_disk_fill_ratio``
and ``evalwatch_disk_full`` (label ``disk``: ``hub_wal``, ``hub_database``, ``agent_spool:<site>``).
Checking never raises: an unreadable disk is logged and reported as full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.events import Event, EventUpdate
from config.models import EvalwatchConfig
from storage.disk import DiskUsage, disk_usage

log = logging.getLogger("evalwatch.diskwatch")

HUB_SITE = "_hub"
AGENT_ROOM = "_agent"


@dataclass
class DiskReading:
    """The last check of one disk (what the metrics show)."""

    disk: str  # hub_wal | hub_database | agent_spool:<site>
    path: str
    free: int
    total: int
    fill_ratio: float
    full: bool
    checked_at: float


def sqlite_dir(url: str) -> Path | None:
    """The folder of a SQLite database URL, None for other databases and in-memory SQLite."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser().parent


class DiskWatch:
    """See the module docstring.  ``store``: the incident sink (``analysis.store.EventStore``)."""

    def __init__(self, cfg: EvalwatchConfig, store: Any, *, clock: Any = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        st = cfg.storage
        self.min_free = st.disk_min_free_mb * 1024 * 1024
        self.ratio = st.disk_alert_ratio
        self.paths: dict[str, Path] = {"hub_wal": Path(st.wal_dir)}
        db_dir = sqlite_dir(st.database_url)
        if db_dir is not None:
            self.paths["hub_database"] = db_dir
        self._readings: dict[str, DiskReading] = {}
        self._open: dict[str, Event] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="disk-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.storage.disk_check_seconds)
            try:
                await self.check()
            except Exception:  # never stop watching
                log.exception("disk check failed")

    # -- checks --

    async def check(self) -> None:
        """Measure the hub's disks now; open/close their alerts."""
        for name, path in self.paths.items():
            try:
                usage = await asyncio.to_thread(disk_usage, path)
            except OSError as e:
                log.error("disk %s (%s) unreadable: %s", name, path, e)
                usage = DiskUsage(str(path), 0, 0)
            await self._update(name, usage, usage.full(self.min_free, self.ratio))

    async def agent_report(self, site: str, agent: dict[str, Any]) -> None:
        """An agent's heartbeat: its ``spool_disk`` report (ignored when absent or malformed)."""
        d = agent.get("spool_disk")
        if not isinstance(d, dict):
            return
        try:
            usage = DiskUsage(str(d.get("path", "")), int(d["total_bytes"]), int(d["free_bytes"]))
            full = bool(d["low"])
        except (KeyError, TypeError, ValueError):
            log.warning("agent %s sent an unreadable spool_disk report: %r", site, d)
            return
        await self._update(f"agent_spool:{site}", usage, full)

    async def _update(self, disk: str, usage: DiskUsage, full: bool) -> None:
        now = self.clock()
        async with self._lock:
            self._readings[disk] = DiskReading(disk, usage.path, usage.free, usage.total, usage.fill_ratio,
                                               full, now)
            ev = self._open.get(disk)
            if full and ev is None:
                site, room, camera = self._where(disk)
                ev = Event(
                    rule="disk_full", camera=camera, seat=None, start_s=now, confidence=1.0, room=room,
                    site=site, footage_start_s=now,
                    details={"disk": disk, **usage.to_dict(), "min_free_bytes": self._min_free(disk)},
                )
                self._open[disk] = ev
                log.error("disk_full: %s (%s) has %.1f MB free of %.1f MB (%.0f%% full)", disk, usage.path,
                          usage.free / 1e6, usage.total / 1e6, usage.fill_ratio * 100)
                await self._emit(EventUpdate("opened", ev))
            elif not full and ev is not None:
                del self._open[disk]
                ev.end_s = now
                ev.footage_end_s = now
                ev.details = {**ev.details, "closed_free_bytes": usage.free}
                log.warning("disk_full cleared: %s (%s) has %.1f MB free", disk, usage.path, usage.free / 1e6)
                await self._emit(EventUpdate("closed", ev))

    def _where(self, disk: str) -> tuple[str, str, str]:
        if disk.startswith("agent_spool:"):
            return disk.split(":", 1)[1], AGENT_ROOM, "spool"
        return HUB_SITE, disk.removeprefix("hub_"), "disk"

    def _min_free(self, disk: str) -> int:
        if disk.startswith("agent_spool:"):
            return self.cfg.capture.spool_min_free_mb * 1024 * 1024
        return self.min_free

    async def _emit(self, update: EventUpdate) -> None:
        if self.store is None:
            return
        try:
            await self.store.handle(update)
        except Exception:  # the alert is also in the log; the watch goes on
            log.exception("disk_full alert not stored")

    # -- reading --

    def readings(self) -> list[DiskReading]:
        return list(self._readings.values())

    def full(self) -> list[str]:
        return sorted(self._open)
