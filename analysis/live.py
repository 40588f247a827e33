"""The hub's live analysis: :class:`AnalysisPipeline` implements the recorder's ``FrameSink``
(``submit`` is non-blocking and thread-safe, keeps only the newest due frame per camera), runs
the :class:`analysis.core.AnalysisCore` in a worker thread (``asyncio.to_thread``) so the hub loop
never blocks, schedules cameras round robin within a time budget, re-arms the rules from the
running sessions, raises ``camera_offline`` when a camera's frames stop, and hands every
:class:`~analysis.events.EventUpdate` to an :class:`EventSink` (the hub's
``analysis.store.EventStore``: database, snapshot, then the bus).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from analysis.core import MAX_BATCH, AnalysisCore, DetectorLike
from analysis.events import Event, EventUpdate
from analysis.rules import SessionView
from config.models import DetectionConfig, RoomConfig, RulesConfig
from storage.common import CameraId

log = logging.getLogger("evalwatch.analysis")
# --- live -------------------------------------------------------------------------------------


class EventSink(Protocol):
    """Where live event updates go (the hub's: database + snapshot upload, then the bus)."""

    async def handle(self, update: EventUpdate) -> None: ...


def camera_key(camera: CameraId | tuple[str, str, str]) -> str:
    """``"site/room/camera"`` of the recorder's camera reference (:class:`storage.common.CameraId`)
    or a ``(site, room, camera)`` tuple; ``TypeError`` for anything else."""
    if isinstance(camera, tuple):
        return str(CameraId(*camera))
    if not all(hasattr(camera, a) for a in ("site", "room", "camera")):
        raise TypeError(f"not a camera reference: {camera!r}")
    return str(CameraId(camera.site, camera.room, camera.camera))


class ActiveSessionLike(Protocol):
    """``sessions.lifecycle.ActiveSession`` as the pipeline reads it."""

    @property
    def session_id(self) -> int: ...
    @property
    def seats(self) -> frozenset[str]: ...


#: ``await source(site, room)`` → the running sessions of that room (empty: none).
SessionSource = Callable[[str, str], Awaitable[Sequence[ActiveSessionLike]]]
#: How often the live pipeline asks which sessions run (seconds).
SESSION_POLL_S = 3.0


def session_view(active: Sequence[ActiveSessionLike]) -> SessionView | None:
    """The rules' view of a room's running sessions (a room runs at most one; if the database
    ever says otherwise, the union of their seats is armed and the lowest id is reported)."""
    if not active:
        return None
    seats: frozenset[str] = frozenset().union(*(a.seats for a in active))
    return SessionView(min(a.session_id for a in active), seats)


#: Target wall time of one live analysis round: a frame waits at most about this long behind
#: other cameras' frames before its analysis starts, and its events publish when it ends.
ROUND_BUDGET_S = 0.25
#: Cost model before the first measurement (seconds per frame, default detector, 2 cores).
INITIAL_FRAME_COST_S = 0.15
#: Weight of the newest measurement in the cost EMA.
COST_EMA = 0.2
#: When nothing is due, the loop looks again after this long.
IDLE_S = 0.02


class AnalysisPipeline:
    """Live analysis for the hub; implements the recorder's ``FrameSink``.

    Scheduling (latency-bounded; the work adapts to the CPU instead of queueing): ``submit``
    keeps only the newest frame per camera. The loop runs rounds back to back; a round takes the
    pending frames that are due (``analysis_fps`` grid), least recently analysed camera first,
    and only as many as fit in ``ROUND_BUDGET_S`` at the measured cost per frame; ``workers``
    threads (``detection.workers``, default one per CPU) pull the round's frames one at a time,
    so a hub analyses on every core and no thread idles while another has a queue.  Its events
    are published as soon as the round ends.  When the cameras together send more than the CPU
    can analyse, each camera's effective rate drops (round robin) but every analysed frame is the
    newest one, so the alert delay stays about one round, not a queue.

    ``sessions`` (optional; the hub injects ``evalwatch.hub.db_sessions``) is polled every
    ``session_poll_s`` by its own task, off the analysis loop; each room's rules are re-armed on
    the next analysis round after a change (see :meth:`analysis.rules.CameraRules.set_session`).
    A failed poll keeps the last known state.  Without a source (or before the first answer)
    every seat is armed.

    Construct with the detector, config and (site id, room) pairs, then ``await start()``
    (or run :meth:`run` as a task) on the hub loop; the recorder calls :meth:`submit` from any
    thread.  Updates are passed to ``sink.handle`` in order by a separate task, so a slow
    database never stalls analysis.
    """

    def __init__(
        self,
        detector: DetectorLike,
        rooms: Iterable[tuple[str, RoomConfig]],
        *,
        detection_cfg: DetectionConfig | None = None,
        rules_cfg: RulesConfig | None = None,
        sink: EventSink | None = None,
        clock: Callable[[], float] = time.time,
        sessions: SessionSource | None = None,
        session_poll_s: float = SESSION_POLL_S,
    ):
        self.core = AnalysisCore(detector, rules_cfg, detection_cfg)
        self.sink = sink
        self.clock = clock
        self.rooms: dict[str, tuple[str, RoomConfig, str]] = {}
        for site, room in rooms:
            for cam in room.cameras:
                key = CameraId(site, room.id, cam.id).path
                self.core.add_camera(key, room, cam.id, site=site)
                self.rooms[key] = (site, room, cam.id)
        #: Worker threads of a round (``detection.workers``; default one per CPU, at most one per
        #: camera): a round's frames are dealt among them, each analyses its cameras' frames.
        want = self.core.detection_cfg.workers or (os.cpu_count() or 1)
        self.workers = max(1, min(want, len(self.rooms) or 1))
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, Any]] = {}
        self._analysed_at: dict[str, float] = {}
        self._round_lock = asyncio.Lock()
        self._last_round = 0
        #: Measured wall time per analysed frame (EMA), the scheduler's cost model.
        self.frame_cost_s = INITIAL_FRAME_COST_S
        #: Measured wall time a worker spends on one frame (EMA): sizes the rounds.
        self.worker_frame_s = INITIAL_FRAME_COST_S * self.workers
        #: Hub clock minus the frame time of the last analysed frame, when it was analysed.
        self.frame_lag_s = 0.0
        self.rounds = 0
        self.analysed_frames = 0
        self._seen: dict[str, float] = {}
        self._offline: dict[str, Event] = {}
        self._unknown: set[str] = set()
        self._sink_q: asyncio.Queue[EventUpdate] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        #: Frames replaced by a newer one before being analysed.
        self.dropped_frames = 0
        self.sessions = sessions
        self.session_poll_s = session_poll_s
        self._room_ids = sorted({(site, room.id) for site, room, _ in self.rooms.values()})
        self._session_now: dict[tuple[str, str], SessionView | None] = {}
        self._session_applied: dict[tuple[str, str], SessionView | None] = {}

    # -- sessions --

    async def poll_sessions(self) -> None:
        """Ask the session source once for every room (errors: keep the last known state)."""
        if self.sessions is None:
            return
        for site, room in self._room_ids:
            try:
                view = session_view(await self.sessions(site, room))
            except Exception as e:  # the DB being away must not stop analysis
                log.warning("session poll failed for %s/%s: %s", site, room, e)
                continue
            if self._session_now.get((site, room)) != view:
                log.info("room %s/%s: %s", site, room,
                         f"session {view.session_id} seats {sorted(view.seats)}" if view else "no session")
            self._session_now[(site, room)] = view

    async def _session_loop(self) -> None:
        while not self._stop.is_set():
            await self.poll_sessions()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.session_poll_s)

    def _apply_sessions(self) -> list[EventUpdate]:
        """Re-arm rooms whose session changed (on the loop, between analysis rounds)."""
        out: list[EventUpdate] = []
        for key, view in list(self._session_now.items()):
            if self._session_applied.get(key) != view:
                self._session_applied[key] = view
                out += self.core.set_session(key[0], key[1], view)
        return out

    # -- FrameSink --

    def submit(self, camera: CameraId | tuple[str, str, str], ts: datetime | float, frame: Any) -> None:
        """Offer a frame (non-blocking, any thread): a BGR ndarray, or a decoded ``av.VideoFrame``
        that is converted only if it gets analysed.  Only the newest frame of a camera waits for
        analysis: a frame not yet analysed is replaced by a newer one (never queued)."""
        key = camera_key(camera)
        t = ts.timestamp() if isinstance(ts, datetime) else float(ts)
        with self._lock:
            if key not in self.rooms:
                if key not in self._unknown:
                    self._unknown.add(key)
                    log.warning("frames from unconfigured camera %s ignored", key)
                return
            self._seen[key] = self.clock()
            if key in self._pending:
                self.dropped_frames += 1
            self._pending[key] = (t, frame)

    # -- lifecycle --

    async def start(self) -> None:
        """Start the analysis and sink tasks on the running loop."""
        self._sink_q = asyncio.Queue()
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.run(), name="analysis"),
                       asyncio.create_task(self._sink_loop(), name="analysis-sink")]
        if self.sessions is not None:
            self._tasks.append(asyncio.create_task(self._session_loop(), name="analysis-sessions"))

    async def stop(self) -> None:
        """Stop analysing; open incidents stay open (the hub may restart); flush the sink."""
        self._stop.set()
        if self._tasks:
            await self._tasks[0]
            if self._sink_q is not None:
                await self._sink_q.join()
            for task in self._tasks[1:]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []

    async def run(self) -> None:
        """The analysis loop: analyse due frames as soon as the previous round ends; when
        nothing is due, look again after ``IDLE_S``."""
        while not self._stop.is_set():
            await self.step()
            if self._last_round == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), IDLE_S)

    def _take_round(self) -> list[tuple[str, float, np.ndarray]]:
        """Pick this round's frames (see the class docstring): the newest pending frame of
        each camera that is due, least recently analysed camera first, as many as fit in
        ``ROUND_BUDGET_S`` at the measured cost per frame, a multiple of the workers (at least
        one per worker)."""
        # The frames one worker analyses in the budget (at the measured time a worker spends on a
        # frame), the same number for every worker: a round of 3 frames on 2 workers would keep
        # one idle a third of the time.
        per_worker = max(1, min(MAX_BATCH, math.ceil(ROUND_BUDGET_S / max(self.worker_frame_s, 1e-3))))
        n = self.workers * per_worker
        with self._lock:
            due = [(self._analysed_at.get(k, 0.0), k) for k, (t, _f) in self._pending.items()
                   if self.core.due(k, t)]
            due.sort()
            out = []
            for _, k in due[:n]:
                t, f = self._pending.pop(k)
                out.append((k, t, f))
        return out

    async def step(self) -> list[EventUpdate]:
        """One round: analyse a budgeted set of due frames in a worker thread, publish what
        they raised at once, check offline cameras."""
        async with self._round_lock:
            updates: list[EventUpdate] = self._apply_sessions()
            batch = self._take_round()
            self._last_round = len(batch)
            if batch:
                t0 = time.perf_counter()
                # The workers pull the round's frames one at a time (a round holds one frame per
                # camera, so a camera is never analysed by two threads at once): a worker that
                # drew cheap frames takes more instead of waiting for the slowest chunk.
                todo = collections.deque(batch)
                results = await asyncio.gather(
                    *(asyncio.to_thread(self._drain, todo) for _ in range(min(self.workers, len(batch)))))
                for res, spent in results:
                    updates += res
                    for d in spent:
                        self.worker_frame_s += COST_EMA * (d - self.worker_frame_s)
                # wall time per frame: with several workers a frame costs the round less
                cost = (time.perf_counter() - t0) / len(batch)
                self.frame_cost_s += COST_EMA * (cost - self.frame_cost_s)
                now = time.monotonic()
                for k, t, _f in batch:
                    self._analysed_at[k] = now
                    self.frame_lag_s = max(0.0, self.clock() - t)
                self.rounds += 1
                self.analysed_frames += len(batch)
            updates = updates + self._check_offline()
            for u in updates:
                self._emit(u)
            return updates

    def _drain(
        self, todo: collections.deque[tuple[str, float, Any]]
    ) -> tuple[list[EventUpdate], list[float]]:
        """A worker's share of a round: analyse frames from ``todo`` until it is empty (worker
        thread); returns the updates and the wall time spent on each frame.  A frame whose
        analysis fails is logged and skipped: a detector failure must not kill live analysis."""
        out: list[EventUpdate] = []
        spent: list[float] = []
        while True:
            try:
                item = todo.popleft()  # atomic: the workers share the deque
            except IndexError:
                return out, spent
            t0 = time.perf_counter()
            try:
                out += self._process([item])
            except Exception:
                log.exception("analysis of a frame of %s failed", item[0])
            spent.append(time.perf_counter() - t0)

    def _process(self, batch: list[tuple[str, float, Any]]) -> list[EventUpdate]:
        """Convert the round's frames (the recorder hands over decoded ``av.VideoFrame``s) and
        analyse them; runs in a worker thread."""
        frames = [(k, t, _as_bgr(f)) for k, t, f in batch]
        return self.core.process(frames)

    @property
    def effective_fps(self) -> float:
        """Analysed frames per second per camera that the measured cost allows (at most
        ``analysis_fps``), with every configured camera sending (the cost is wall time per
        frame of a round, so it already counts the workers)."""
        if not self.rooms:
            return 0.0
        return min(1.0 / self.core.interval, 1.0 / (max(self.frame_cost_s, 1e-3) * len(self.rooms)))

    def _check_offline(self) -> list[EventUpdate]:
        now = self.clock()
        limit = self.core.rules_cfg.offline_seconds
        out: list[EventUpdate] = []
        with self._lock:
            seen = dict(self._seen)
        for key, (site, room, cam) in self.rooms.items():
            last = seen.get(key)
            if last is None:
                continue  # never connected: the agent's status, not an incident
            ev = self._offline.get(key)
            if ev is None and now - last > limit:
                ev = Event(rule="camera_offline", camera=cam, seat=None, start_s=last, confidence=1.0,
                           room=room.id, site=site, footage_start_s=last - 5.0)
                self._offline[key] = ev
                out.append(EventUpdate("opened", ev))
            elif ev is not None and now - last <= limit:
                ev.end_s = last
                ev.footage_end_s = last
                del self._offline[key]
                out.append(EventUpdate("closed", ev))
        return out

    def _emit(self, u: EventUpdate) -> None:
        if self.sink is not None and self._sink_q is not None:
            self._sink_q.put_nowait(u)

    async def _sink_loop(self) -> None:
        assert self._sink_q is not None
        while True:
            u = await self._sink_q.get()
            try:
                if self.sink is not None:
                    await self.sink.handle(u)
            except Exception:
                log.exception("event sink failed for %s %s", u.action, u.event.rule)
            finally:
                self._sink_q.task_done()


def _as_bgr(frame: Any) -> np.ndarray:
    """A BGR ``ndarray`` from an ndarray (as is) or an ``av.VideoFrame`` (converted)."""
    return frame if isinstance(frame, np.ndarray) else frame.to_ndarray(format="bgr24")
