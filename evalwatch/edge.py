"""Edge analysis on the room PC: ``evalwatch agent`` with the site's ``analysis: agent``.

:class:`EdgeAnalyser` runs the same :class:`analysis.core.AnalysisCore` as the hub on the frames
the agent has already decoded (``capture.agent.CameraPipe._on_frame`` offers each one; no second
decode), in worker threads (``detection.workers``; default one per camera up to the CPU count, the
cameras dealt round robin, each worker with its own core over the shared detector): only the
newest frame per camera waits, and it is analysed when it is due at ``detection.analysis_fps``.
One worker on a room PC with 4 cameras re-checked each seat only every 1.4 s (p95; the four
cameras needed ~1.1 cores); two workers spread them over two cores. The rules are armed by the
running session as the hub reports it (:meth:`EdgeAnalyser.set_sessions`; every seat while no
session runs, as on the hub). Every incident update becomes one
``capture.incidents.IncidentUpdateIn`` document, with the incident's stable ``uid`` and its
``seq`` within the incident, handed to the agent's emit callback (the agent spools it on disk and
uploads it in order).

This module wires two peers of layer 2 (capture, analysis), hence its place in ``evalwatch``.
"""

from __future__ import annotations

import base64
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from analysis.core import AnalysisCore, DetectorLike
from analysis.events import EventUpdate
from analysis.rules import SessionView
from config.models import EvalwatchConfig, RoomConfig
from storage.common import CameraId

log = logging.getLogger("evalwatch.edge")

#: The worker looks for due frames at least this often (seconds) even without a new frame.
IDLE_S = 0.5


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


class EdgeAnalyser:
    """``capture.agent.EdgeAnalyserLike``: AnalysisCore on the agent's frames (module docstring)."""

    def __init__(
        self,
        detector: DetectorLike,
        site: str,
        rooms: Sequence[RoomConfig],
        cfg: EvalwatchConfig,
        *,
        workers: int | None = None,
    ):
        self.site = site
        cams = [(room, cam.id) for room in rooms for cam in room.cameras]
        n = workers or cfg.detection.workers or min(len(cams), os.cpu_count() or 1)
        n = max(1, min(n, len(cams) or 1))
        #: One analysis core per worker thread; camera ``key`` is analysed by ``cores[owner[key]]``.
        self.cores = [AnalysisCore(detector, cfg.rules, cfg.detection) for _ in range(n)]
        self.owner: dict[str, int] = {}
        self.keys: dict[tuple[str, str], str] = {}
        for i, (room, cam) in enumerate(cams):
            key = CameraId(site, room.id, cam).path
            self.owner[key] = i % n
            self.cores[i % n].add_camera(key, room, cam, site=site)
            self.keys[(room.id, cam)] = key
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._wakes = [threading.Event() for _ in range(n)]
        self._stop = threading.Event()
        self._pending: dict[str, tuple[float, Any]] = {}
        self._sessions: list[dict[str, SessionView | None] | None] = [None] * n
        self._seq: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._emit: Callable[[dict[str, Any]], None] | None = None
        #: Per camera key: analysed frames and the time of the last one (the analysis heartbeat).
        self.frames: dict[str, int] = dict.fromkeys(self.keys.values(), 0)
        self.last_t: dict[str, float] = {}
        self.errors = 0

    @property
    def workers(self) -> int:
        return len(self.cores)

    # -- EdgeAnalyserLike --

    def offer(self, room: str, camera: str, ts: float, frame: Any) -> None:
        key = self.keys.get((room, camera))
        if key is None:
            return
        with self._lock:
            self._pending[key] = (ts, frame)
        self._wakes[self.owner[key]].set()

    def set_sessions(self, rooms: dict[str, Any]) -> None:
        views: dict[str, SessionView | None] = {}
        for room, s in rooms.items():
            views[room] = None if not s else SessionView(int(s["session_id"]), frozenset(s["seats"]))
        with self._lock:
            self._sessions = [views] * len(self.cores)
        for w in self._wakes:
            w.set()

    def status(self) -> dict[str, Any]:
        running = bool(self._threads) and all(t.is_alive() for t in self._threads)
        cams = {f"{r}/{c}": {"frames": self.frames[k], "last_frame_at": self.last_t.get(k)}
                for (r, c), k in self.keys.items()}
        return {"running": running, "analysis_fps": 1.0 / self.cores[0].interval, "errors": self.errors,
                "workers": len(self.cores), "cameras": cams}

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self._emit = emit
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True,
                                          name=f"edge-analysis-{self.site}-{w}")
                         for w in range(len(self.cores))]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for w in self._wakes:
            w.set()
        for t in self._threads:
            t.join(timeout=10)

    # -- workers --

    def _run(self, worker: int) -> None:
        wake = self._wakes[worker]
        while not self._stop.is_set():
            wake.wait(IDLE_S)
            wake.clear()
            try:
                self.step(worker)
            except Exception:  # a detector failure must not end the analysis
                self.errors += 1
                log.exception("edge analysis failed site=%s worker=%d", self.site, worker)
                time.sleep(1.0)

    def step(self, worker: int | None = None) -> list[EventUpdate]:
        """Apply a session change, analyse the due newest frames, emit their updates: of the
        cameras of ``worker``, or (None) of every worker in turn on the calling thread."""
        if worker is None:
            return [u for w in range(len(self.cores)) for u in self.step(w)]
        core = self.cores[worker]
        updates: list[EventUpdate] = []
        with self._lock:
            sessions, self._sessions[worker] = self._sessions[worker], None
            due = [(k, t, f) for k, (t, f) in self._pending.items()
                   if self.owner[k] == worker and core.due(k, t)]
            for k, _t, _f in due:
                del self._pending[k]
        if sessions is not None:
            for room, view in sessions.items():
                got = core.set_session(self.site, room, view)
                updates += got
                if worker == 0:
                    what = f"session {view.session_id} seats {sorted(view.seats)}" if view else "no session"
                    log.info("edge rules armed site=%s room=%s %s", self.site, room, what)
        if due:
            frames = [(k, t, f if hasattr(f, "shape") else f.to_ndarray(format="bgr24")) for k, t, f in due]
            updates += core.process(frames)
            for k, t, _f in due:
                self.frames[k] += 1
                self.last_t[k] = t
        for u in updates:
            self._publish(u)
        return updates

    def finish(self) -> list[EventUpdate]:
        """End of input (benchmarks, offline use): close every open incident and emit it."""
        updates = [u for core in self.cores for u in core.finish()]
        for u in updates:
            self._publish(u)
        return updates

    def _publish(self, u: EventUpdate) -> None:
        with self._emit_lock:  # workers emit in turn; seq numbers per incident stay in order
            doc = self.document(u)
            if self._emit is not None:
                self._emit(doc)

    def document(self, u: EventUpdate) -> dict[str, Any]:
        """The ``capture.incidents.IncidentUpdateIn`` document of ``u`` (assigns its ``seq``)."""
        ev = u.event
        seq = self._seq.get(ev.id, 0) + 1
        if u.action == "closed":
            self._seq.pop(ev.id, None)
        else:
            self._seq[ev.id] = seq
        cam = CameraId(self.site, ev.room, ev.camera) if ev.room and ev.camera else None
        owner = self.owner.get(cam.path) if cam else None
        st = self.cores[owner].cameras.get(cam.path) if cam and owner is not None else None
        boxes = [] if st is None or u.action == "closed" else [
            {"label": b.label, "score": round(float(b.score), 3), "x1": float(b.x1), "y1": float(b.y1),
             "x2": float(b.x2), "y2": float(b.y2)} for b in st.boxes[:200]]
        snap = ev.snapshot if u.action == "opened" else None
        return {
            "site": self.site, "room": ev.room, "camera": ev.camera, "uid": ev.id, "seq": seq,
            "action": u.action, "rule": ev.rule, "kind": ev.kind, "seat": ev.seat,
            "confidence": round(min(1.0, max(0.0, float(ev.confidence))), 4),
            "started_at": _iso(ev.start_s), "ended_at": _iso(ev.end_s),
            "footage_start": _iso(ev.footage_start_s) if ev.footage_start_s else None,
            "footage_end": _iso(ev.footage_end_s), "session_id": ev.session_id, "details": ev.details,
            "boxes": boxes, "snapshot_jpeg": base64.b64encode(snap).decode() if snap else None,
        }


def make_analyser(cfg: EvalwatchConfig, site: str, rooms: list[RoomConfig]) -> EdgeAnalyser:
    """The agent's analyser with the configured detector (``capture.agent.AnalyserFactory``)."""
    from analysis.detectors import detector_from_config

    detector = detector_from_config(cfg.detection)
    return EdgeAnalyser(detector, site, rooms, cfg)


#: ``evalwatch agent SUBCOMMAND ...`` → module and function (``argv`` → exit code).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "enroll": ("capture.enroll", "enroll_cli"),
    "install-service": ("capture.service", "install_cli"),
    "uninstall-service": ("capture.service", "uninstall_cli"),
    "discover": ("capture.discovery", "cli"),
}


def cli(argv: list[str]) -> int:
    """``evalwatch agent``: the site agent, with edge analysis where the site asks for it; or one
    of its :data:`SUBCOMMANDS`; ``service-run`` is what the Windows service manager starts."""
    import importlib

    if argv and argv[0] in SUBCOMMANDS:
        module, func = SUBCOMMANDS[argv[0]]
        return int(getattr(importlib.import_module(module), func)(argv[1:]))
    from capture.agent import cli as agent_cli

    if argv and argv[0] == "service-run":
        from capture.service import service_run_cli

        return service_run_cli(argv[1:], lambda a: agent_cli(a, analyser_factory=make_analyser))
    return agent_cli(argv, analyser_factory=make_analyser)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
