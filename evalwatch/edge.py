"""Edge analysis on the room PC: ``evalwatch agent`` with the site's ``analysis: agent``.

:class:`EdgeAnalyser` runs the same :class:`analysis.core.AnalysisCore` as the hub on the
frames the agent has already decoded (``capture.agent.CameraPipe._on_frame`` offers each one; no
second decode), in one worker thread: only the newest frame per camera waits, and it is analysed
when it is due at ``detection.analysis_fps``.  The rules are armed by the running session as the
hub reports it (:meth:`EdgeAnalyser.set_sessions`; every seat while no session runs, as on the
hub).  Every incident update becomes one ``capture.incidents.IncidentUpdateIn`` document, with the
incident's stable ``uid`` and its ``seq`` within the incident, handed to the agent's emit callback
(the agent spools it on disk and uploads it in order).

This module wires two peers of layer 2 (capture, analysis), hence its place in ``evalwatch``.
"""

from __future__ import annotations

import base64
import logging
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
    ):
        self.site = site
        self.core = AnalysisCore(detector, cfg.rules, cfg.detection)
        self.keys: dict[tuple[str, str], str] = {}
        for room in rooms:
            for cam in room.cameras:
                key = CameraId(site, room.id, cam.id).path
                self.core.add_camera(key, room, cam.id, site=site)
                self.keys[(room.id, cam.id)] = key
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: dict[str, tuple[float, Any]] = {}
        self._sessions: dict[str, SessionView | None] | None = None
        self._seq: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._emit: Callable[[dict[str, Any]], None] | None = None
        #: Per camera key: analysed frames and the time of the last one (the analysis heartbeat).
        self.frames: dict[str, int] = dict.fromkeys(self.keys.values(), 0)
        self.last_t: dict[str, float] = {}
        self.errors = 0

    # -- EdgeAnalyserLike --

    def offer(self, room: str, camera: str, ts: float, frame: Any) -> None:
        key = self.keys.get((room, camera))
        if key is None:
            return
        with self._lock:
            self._pending[key] = (ts, frame)
        self._wake.set()

    def set_sessions(self, rooms: dict[str, Any]) -> None:
        views: dict[str, SessionView | None] = {}
        for room, s in rooms.items():
            views[room] = None if not s else SessionView(int(s["session_id"]), frozenset(s["seats"]))
        with self._lock:
            self._sessions = views
        self._wake.set()

    def status(self) -> dict[str, Any]:
        running = self._thread is not None and self._thread.is_alive()
        cams = {f"{r}/{c}": {"frames": self.frames[k], "last_frame_at": self.last_t.get(k)}
                for (r, c), k in self.keys.items()}
        return {"running": running, "analysis_fps": 1.0 / self.core.interval, "errors": self.errors,
                "cameras": cams}

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self._emit = emit
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"edge-analysis-{self.site}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- worker --

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(IDLE_S)
            self._wake.clear()
            try:
                self.step()
            except Exception:  # a detector failure must not end the analysis
                self.errors += 1
                log.exception("edge analysis failed site=%s", self.site)
                time.sleep(1.0)

    def step(self) -> list[EventUpdate]:
        """Apply a session change, analyse the due newest frames, emit their updates."""
        updates: list[EventUpdate] = []
        with self._lock:
            sessions, self._sessions = self._sessions, None
            due = [(k, t, f) for k, (t, f) in self._pending.items() if self.core.due(k, t)]
            for k, _t, _f in due:
                del self._pending[k]
        if sessions is not None:
            for room, view in sessions.items():
                updates += self.core.set_session(self.site, room, view)
                log.info("edge rules armed site=%s room=%s %s", self.site, room,
                         f"session {view.session_id} seats {sorted(view.seats)}" if view else "no session")
        if due:
            frames = [(k, t, f if hasattr(f, "shape") else f.to_ndarray(format="bgr24")) for k, t, f in due]
            updates += self.core.process(frames)
            for k, t, _f in due:
                self.frames[k] += 1
                self.last_t[k] = t
        for u in updates:
            self._publish(u)
        return updates

    def _publish(self, u: EventUpdate) -> None:
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
        st = self.core.cameras.get(cam.path) if cam else None
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
