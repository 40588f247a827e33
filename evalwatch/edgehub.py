"""The hub's side of edge analysis: sessions for the agents, their incidents, and the checks.

For the sites with ``analysis: agent`` the hub does not analyse the live streams at full rate;
the site agents do (``evalwatch.edge``) and post their incident updates to
``/api/ingest/incidents``.  :class:`EdgeHub` (the ingest router's ``edge``):

* **sessions** — polls the running sessions of the edge rooms (every ``SESSION_POLL_S``) and
  numbers each change; agents long-poll ``/api/ingest/sessions`` and read it in every heartbeat
  answer, so the seats they arm follow a session start or close within about a second;
* **incidents** — turns each agent update into an :class:`analysis.events.Event` with
  ``origin="agent"`` and stores it through the same :class:`analysis.store.EventStore` as the
  hub's own (row, snapshot in S3, bus → WebSocket), upserting by the agent's ``uid``/``seq``;
* **trust, then verify** — it is the sink of a second :class:`analysis.live.AnalysisPipeline`
  over the edge cameras, at the site's ``analysis_check_fps`` (round robin, newest frame, lowered
  further when the CPU is short).  An ``extra_person`` or ``phone`` incident this check opens that
  the agent has not reported within ``analysis_mismatch_seconds`` raises ``analysis_mismatch``
  on the camera (judged only while the agent's link is up and its incident spool is empty, so a
  cut link is not a mismatch); it closes when the hub's incident closes or the agent reports it.
  A camera whose video reaches the hub while the agent's heartbeats show no analysis progress for
  ``analysis_offline_seconds`` raises ``analysis_offline``.  ``camera_offline`` of edge cameras
  comes from this check pipeline too (the frames stop at the hub).

:class:`FrameRouter` is the recorder's frame sink: frames of hub-analysed sites go to the hub's
pipeline, those of edge sites to the check pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analysis.events import Event, EventUpdate
from analysis.live import SessionSource, session_view
from analysis.store import EventStore
from capture.incidents import IncidentStored, IncidentUpdateIn
from config.models import EvalwatchConfig
from storage.common import CameraId

log = logging.getLogger("evalwatch.edgehub")

#: Rules the hub's check compares with the agent's reports (detector-driven; the tamper checks
#: and seat_empty depend on the frame rate and are left to the agent).
CHECKED_RULES = ("extra_person", "phone")
#: An agent incident matches a hub one if it was still open this long before the hub's opened.
MATCH_SLACK_S = 10.0
#: How often the sessions of the edge rooms are read, and the checks run (seconds).
SESSION_POLL_S = 1.0
CHECK_EVERY_S = 1.0
#: How long the agents' incidents are remembered for the checks (seconds; a restarted hub
#: reloads them from the database).
AGENT_MEMORY_S = 600
#: Longest wait of one ``/api/ingest/sessions`` long poll.
LONG_POLL_S = 25.0


@dataclass
class Check:
    """An incident the hub's own check opened on an edge camera."""

    event: Event
    opened_at: float
    closed_at: float | None = None
    mismatch: Event | None = None


@dataclass
class SiteLink:
    """What the hub knows of an edge site's agent from its heartbeats."""

    beat_at: float | None = None
    pending: int = 0
    frames: dict[str, int] = field(default_factory=dict)


class EdgeHub:
    """Sessions, incidents and checks of the edge-analysed sites (module docstring)."""

    def __init__(
        self,
        cfg: EvalwatchConfig,
        store: EventStore,
        sessions: SessionSource | None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.store = store
        self.source = sessions
        self.clock = clock
        self.sites = {s.id: s for s in cfg.sites if s.analysis == "agent"}
        self.cameras: dict[str, tuple[str, str, str]] = {
            str(CameraId(s.id, r.id, c.id)): (s.id, r.id, c.id)
            for s in self.sites.values() for r in s.rooms for c in r.cameras
        }
        self._rooms: dict[str, dict[str, dict[str, Any] | None]] = {
            s.id: {r.id: None for r in s.rooms} for s in self.sites.values()
        }
        self._version: dict[str, int] = dict.fromkeys(self.sites, 0)
        self._changed: dict[str, asyncio.Event] = {}
        self._links: dict[str, SiteLink] = {s: SiteLink() for s in self.sites}
        self._frames_at: dict[str, float] = {}
        self._video_since: dict[str, float] = {}
        self._progress_at: dict[str, float] = {}
        self._agent_events: dict[str, Event] = {}
        #: Per camera key: (uid, rule, start, end) of the agent's recent incidents.
        self._agent_seen: dict[str, list[tuple[str, str, float, float | None]]] = {}
        self._checks: dict[str, Check] = {}
        self._offline: dict[str, Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.mismatches = 0
        self._stopping = False

    def edge_site(self, site: str) -> bool:
        return site in self.sites

    # -- lifecycle --

    async def start(self) -> None:
        self._changed = {s: asyncio.Event() for s in self.sites}
        await self.remember_agent_incidents()
        await self.poll_sessions()
        self._tasks = [asyncio.create_task(self._session_loop(), name="edge-sessions"),
                       asyncio.create_task(self._check_loop(), name="edge-checks")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def remember_agent_incidents(self) -> None:
        """Load the agents' incidents of the last ``AGENT_MEMORY_S`` from the database, so a
        restarted hub does not take an incident an agent reported before the restart for a miss
        (``analysis_mismatch``)."""
        since = datetime.fromtimestamp(self.clock() - AGENT_MEMORY_S, UTC)
        try:
            rows = await self.store.agent_incidents_since(since)
        except Exception:  # the checks still work, only without the memory of before
            log.exception("cannot load the agents' recent incidents")
            return
        for site, room, camera, uid, rule, start, end in rows:
            key = str(CameraId(site, room, camera))
            if key in self.cameras:
                seen = self._agent_seen.setdefault(key, [])
                seen[:] = [x for x in seen if x[0] != uid]
                seen.append((uid, rule, start, end))
        log.info("edge hub remembers %d agent incidents of the last %d s", len(rows), AGENT_MEMORY_S)

    # -- sessions --

    async def poll_sessions(self) -> None:
        if self.source is None:
            return
        for site, rooms in self._rooms.items():
            changed = False
            for room in list(rooms):
                try:
                    view = session_view(await self.source(site, room))
                except Exception as e:  # the DB being away: keep the last known state
                    log.warning("session poll failed site=%s room=%s: %s", site, room, e)
                    continue
                now = None if view is None else {"session_id": view.session_id, "seats": sorted(view.seats)}
                if rooms[room] != now:
                    rooms[room] = now
                    changed = True
            if changed:
                self._version[site] += 1
                log.info("edge sessions site=%s version=%d rooms=%s", site, self._version[site], rooms)
                ev = self._changed.get(site)
                if ev is not None:
                    ev.set()
                    self._changed[site] = asyncio.Event()

    async def _session_loop(self) -> None:
        while True:
            await asyncio.sleep(SESSION_POLL_S)
            await self.poll_sessions()

    def sessions(self, site: str) -> tuple[int, dict[str, Any]]:
        """``(version, room → {"session_id", "seats"} | None)`` for an edge site."""
        return self._version.get(site, 0), dict(self._rooms.get(site, {}))

    def wake_pollers(self) -> None:
        """The hub is stopping: answer every waiting session long poll now (with the version the
        agent has: nothing changed, it polls again later) and every new one at once, so that no
        poll holds the web server's graceful stop (issue #17)."""
        self._stopping = True
        for site, ev in list(self._changed.items()):
            ev.set()
            self._changed[site] = asyncio.Event()

    async def wait_sessions(self, site: str, after: int) -> tuple[int, dict[str, Any]]:
        """Answer at once when the version differs from ``after``, else on the next change or
        after ``LONG_POLL_S`` (at once too while the hub stops: :meth:`wake_pollers`)."""
        if self._version.get(site, 0) == after and site in self._changed and not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed[site].wait(), LONG_POLL_S)
        return self.sessions(site)

    # -- from the agents --

    def analysis_beat(self, site: str, beat: dict[str, Any] | None) -> None:
        """A heartbeat of an edge site's agent (``beat``: its analysis status, or None)."""
        link = self._links.get(site)
        if link is None:
            return
        now = self.clock()
        link.beat_at = now
        if beat is None:
            link.pending = 0
            return
        try:
            link.pending = int(beat.get("pending_incidents") or 0)
            cams = beat.get("cameras") or {}
            for name, st in cams.items():
                key = f"{site}/{name}"
                if key not in self.cameras or not isinstance(st, dict):
                    continue
                n = int(st.get("frames") or 0)
                prev = link.frames.get(key)
                link.frames[key] = n
                if prev is not None and n > prev and beat.get("running", True):
                    self._progress_at[key] = now
        except (TypeError, ValueError, AttributeError) as e:
            log.warning("malformed analysis heartbeat site=%s: %s", site, e)

    async def incident(self, site: str, upd: IncidentUpdateIn) -> IncidentStored:
        """Store one agent update like the hub's own events (origin ``agent``; idempotent)."""
        key = str(CameraId(site, upd.room, upd.camera))
        ev = self._agent_events.get(upd.uid)
        end = None if upd.ended_at is None else upd.ended_at.timestamp()
        if ev is None:
            details = dict(upd.details)
            if upd.boxes:
                details["boxes"] = [b.model_dump() for b in upd.boxes]
            ev = Event(
                rule=upd.rule, camera=upd.camera, seat=upd.seat, start_s=upd.started_at.timestamp(),
                confidence=upd.confidence, kind=upd.kind, room=upd.room, site=site,
                footage_start_s=_s(upd.footage_start) or upd.started_at.timestamp(),
                snapshot=upd.snapshot(), details=details, session_id=upd.session_id, id=upd.uid,
                origin="agent",
            )
        ev.end_s = end
        ev.confidence = max(ev.confidence, upd.confidence)
        ev.footage_end_s = _s(upd.footage_end)
        db_id, applied = await self.store.upsert(EventUpdate(upd.action, ev), seq=upd.seq)
        if upd.action == "closed":
            self._agent_events.pop(upd.uid, None)
        else:
            self._agent_events[upd.uid] = ev
        seen = self._agent_seen.setdefault(key, [])
        seen[:] = [x for x in seen if x[0] != upd.uid]
        seen.append((upd.uid, upd.rule, ev.start_s, end))
        # Keep what the checks may still need (the last few minutes).
        horizon = self.clock() - AGENT_MEMORY_S
        seen[:] = [x for x in seen if x[3] is None or x[3] > horizon]
        if applied:
            await self._run_checks()
        return IncidentStored(id=db_id, applied=applied)

    # -- from the check pipeline (EventSink) and the recorder (frames) --

    def frame_seen(self, key: str) -> None:
        now = self.clock()
        last = self._frames_at.get(key)
        if last is None or now - last > self.cfg.rules.offline_seconds:
            self._video_since[key] = now
        self._frames_at[key] = now

    async def handle(self, update: EventUpdate) -> None:
        ev = update.event
        if ev.rule == "camera_offline":
            await self.store.handle(update)
            return
        if ev.rule not in CHECKED_RULES:
            return
        now = self.clock()
        if update.action == "opened":
            self._checks[ev.id] = Check(ev, now)
            log.info("hub check opened rule=%s seat=%s site=%s room=%s camera=%s",
                     ev.rule, ev.seat, ev.site, ev.room, ev.camera)
        elif update.action == "closed" and ev.id in self._checks:
            self._checks[ev.id].closed_at = now
        await self._run_checks()

    # -- checks --

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                await self._run_checks()
            except Exception:
                log.exception("edge checks failed")

    def _link_ok(self, site: str) -> bool:
        """The agent's reports can be judged: a recent heartbeat and nothing left to send."""
        link = self._links.get(site)
        if link is None or link.beat_at is None:
            return False
        fresh = self.clock() - link.beat_at <= 2 * self.cfg.capture.heartbeat_seconds + 2
        return fresh and link.pending == 0

    def _agent_reported(self, c: Check) -> bool:
        ev = c.event
        key = str(CameraId(ev.site or "", ev.room or "", ev.camera))
        for _uid, rule, _start, end in self._agent_seen.get(key, []):
            if rule == ev.rule and (end is None or end >= ev.start_s - MATCH_SLACK_S):
                return True
        return False

    async def _run_checks(self) -> None:
        now = self.clock()
        for uid, c in list(self._checks.items()):
            ev = c.event
            site = self.sites.get(ev.site or "")
            if site is None:
                del self._checks[uid]
                continue
            if self._agent_reported(c):
                if c.mismatch is not None and c.mismatch.open:
                    await self._close(c.mismatch, now)
                del self._checks[uid]
                continue
            if c.mismatch is None and now - c.opened_at >= site.analysis_mismatch_seconds \
                    and self._link_ok(site.id):
                c.mismatch = Event(
                    rule="analysis_mismatch", camera=ev.camera, seat=ev.seat, start_s=now,
                    confidence=ev.confidence, room=ev.room, site=ev.site,
                    footage_start_s=ev.start_s - 5.0, snapshot=ev.snapshot,
                    details={"missed_rule": ev.rule, "hub_incident": ev.id,
                             "hub_started_at": datetime.fromtimestamp(ev.start_s).astimezone().isoformat()},
                )
                self.mismatches += 1
                log.warning("analysis_mismatch: the agent did not report %s seat=%s site=%s room=%s"
                            " camera=%s", ev.rule, ev.seat, ev.site, ev.room, ev.camera)
                await self.store.handle(EventUpdate("opened", c.mismatch))
            if c.closed_at is not None:
                if c.mismatch is not None:
                    if c.mismatch.open:
                        await self._close(c.mismatch, now)
                    del self._checks[uid]
                elif now - c.closed_at > 120:  # never judged (link down all along)
                    del self._checks[uid]
        await self._check_offline(now)

    async def _close(self, ev: Event, now: float) -> None:
        ev.end_s = now
        ev.footage_end_s = now
        await self.store.handle(EventUpdate("closed", ev))

    async def _check_offline(self, now: float) -> None:
        flow_limit = self.cfg.rules.offline_seconds
        for key, (site, room, cam) in self.cameras.items():
            limit = self.sites[site].analysis_offline_seconds
            seen = self._frames_at.get(key)
            flowing = seen is not None and now - seen <= flow_limit
            since = max(self._progress_at.get(key, 0.0), self._video_since.get(key, now))
            ev = self._offline.get(key)
            if ev is None and flowing and now - since > limit:
                ev = Event(rule="analysis_offline", camera=cam, seat=None, start_s=since, confidence=1.0,
                           room=room, site=site, footage_start_s=since,
                           details={"last_progress_at": self._progress_at.get(key)})
                self._offline[key] = ev
                log.warning("analysis_offline: no analysis progress for %.0f s site=%s room=%s camera=%s",
                            now - since, site, room, cam)
                await self.store.handle(EventUpdate("opened", ev))
            elif ev is not None and now - self._progress_at.get(key, 0.0) <= limit:
                del self._offline[key]
                await self._close(ev, now)


def _s(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


class FrameRouter:
    """The recorder's frame sink: hub-analysed sites → ``hub``; edge sites → ``check`` (and
    the edge hub notes that the camera's video flows)."""

    def __init__(self, hub: Any, check: Any | None, edge: EdgeHub):
        self.hub = hub
        self.check = check
        self.edge = edge

    def submit(self, camera: CameraId, ts: datetime, frame: Any) -> None:
        if self.check is not None and self.edge.edge_site(camera.site):
            self.edge.frame_seen(str(camera))
            self.check.submit(camera, ts, frame)
        else:
            self.hub.submit(camera, ts, frame)
