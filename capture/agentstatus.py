"""What the hub knows of each site agent, from its heartbeats (``/api/ingest/heartbeat``).

Each heartbeat's ``agent`` block carries the agent's version, OS, host name, CPU load, spool
fill and quota and its clock (``time``, when it sent the heartbeat); the ``cameras`` list their
states.  :class:`AgentMonitor` keeps the latest of each agent — one agent is one
``(site, credential, host)``: an enrolled credential id, or ``token`` for the secrets-file
token — and the clock offset ``agent time − hub receive time`` (it includes the one-way network
delay, milliseconds on a working uplink).  In memory: a restarted hub knows an agent again at
its next heartbeat.  The dashboard lists them (``GET /api/agents``) and flags the clock beyond
:data:`CLOCK_FLAG_S` and the spool beyond :data:`SPOOL_FLAG_PERCENT`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: An agent whose clock is off by more than this (seconds) is flagged ``clock``.
CLOCK_FLAG_S = 2.0
#: An agent whose spool is fuller than this (percent of its quota) is flagged ``spool``.
SPOOL_FLAG_PERCENT = 80.0
#: An agent not heard from for this long (seconds) is flagged ``silent``.
SILENT_AFTER_S = 30.0


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _str(v: Any, limit: int = 200) -> str | None:
    return str(v)[:limit] if isinstance(v, str) and v else None


@dataclass
class AgentSeen:
    """The latest heartbeat of one agent."""

    site: str
    credential_id: str | None
    host: str | None
    ip: str | None
    last_seen: datetime
    version: str | None = None
    os: str | None = None
    cpu_load: float | None = None
    cpu_count: int | None = None
    spool_bytes: int | None = None
    spool_quota_bytes: int | None = None
    clock_offset_s: float | None = None
    cameras: list[dict[str, Any]] = field(default_factory=list)
    #: This heartbeat found the clock off and the previous one did not (log it once, not each beat).
    clock_newly_off: bool = False

    @property
    def clock_off(self) -> bool:
        return self.clock_offset_s is not None and abs(self.clock_offset_s) > CLOCK_FLAG_S

    @property
    def spool_percent(self) -> float | None:
        if self.spool_bytes is None or not self.spool_quota_bytes:
            return None
        return round(100.0 * self.spool_bytes / self.spool_quota_bytes, 2)

    def flags(self, now: datetime) -> list[str]:
        out = []
        if self.clock_off:
            out.append("clock")
        pct = self.spool_percent
        if pct is not None and pct > SPOOL_FLAG_PERCENT:
            out.append("spool")
        if (now - self.last_seen).total_seconds() > SILENT_AFTER_S:
            out.append("silent")
        return out


class AgentMonitor:
    """The latest heartbeat per agent (thread-safe; the ingest routes write, the dashboard reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[tuple[str, str, str], AgentSeen] = {}

    def beat(
        self,
        site: str,
        credential_id: str | None,
        agent: dict[str, Any],
        cameras: list[dict[str, Any]],
        received_at: datetime,
        ip: str | None,
    ) -> AgentSeen:
        host = _str(agent.get("host"), 128)
        offset: float | None = None
        sent = _str(agent.get("time"), 64)
        if sent:
            try:
                t = datetime.fromisoformat(sent.replace("Z", "+00:00"))
                if t.tzinfo is not None:
                    offset = round((t - received_at).total_seconds(), 3)
            except ValueError:
                offset = None
        quota = _num(agent.get("spool_quota_bytes"))
        spool = _num(agent.get("spool_bytes"))
        cpus = _num(agent.get("cpu_count"))
        seen = AgentSeen(
            site=site,
            credential_id=credential_id,
            host=host,
            ip=ip,
            last_seen=received_at,
            version=_str(agent.get("version"), 64),
            os=_str(agent.get("os")),
            cpu_load=_num(agent.get("cpu_load")),
            cpu_count=int(cpus) if cpus is not None else None,
            spool_bytes=int(spool) if spool is not None else None,
            spool_quota_bytes=int(quota) if quota is not None else None,
            clock_offset_s=offset,
            cameras=[
                {
                    "room": str(c.get("room")),
                    "camera": str(c.get("camera")),
                    "connection": _str(c.get("connection"), 32),
                    "frames": _num(c.get("frames")),
                    "pending_segments": _num(c.get("pending_segments")),
                    "last_error": _str(c.get("last_error"), 300),
                }
                for c in cameras[:200]
            ],
        )
        key = (site, credential_id or "token", host or "")
        with self._lock:
            prev = self._agents.get(key)
            seen.clock_newly_off = seen.clock_off and not (prev is not None and prev.clock_off)
            self._agents[key] = seen
        return seen

    def agents(self) -> list[AgentSeen]:
        with self._lock:
            return sorted(self._agents.values(), key=lambda a: (a.site, a.credential_id or "", a.host or ""))


# -- the agent's side ------------------------------------------------------------------------------


def agent_facts() -> dict[str, Any]:
    """What an agent says about itself in each heartbeat's ``agent`` block and does not change
    while it runs: version, OS, host name and core count (see :func:`cpu_load` for the load; the
    spool fill and the clock, ``time``, are added by the agent)."""
    import os
    import platform
    import socket
    from importlib import metadata

    try:
        version: str | None = metadata.version("evalwatch")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "version": version,
        "os": platform.platform(terse=True),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count() or 1,
    }


def cpu_load() -> float | None:
    """The PC's 1-minute load average per core (1.0: every core busy); None where the OS has no
    load average (Windows)."""
    import os

    if not hasattr(os, "getloadavg"):
        return None
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)
    except OSError:
        return None
