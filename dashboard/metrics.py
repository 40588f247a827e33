"""Prometheus metrics of the dashboard (one registry per app, so tests can build many apps).

Exposed on ``/metrics`` (admin session or ``Authorization: Bearer <metrics token>``):

* ``evalwatch_http_requests_total{method,route,status}``
* ``evalwatch_live_viewers`` — WebRTC streams currently sent to browsers
* ``evalwatch_ws_clients`` — browsers connected on ``/ws/events``
* ``evalwatch_alert_messages_total`` — messages fanned out to browsers
* ``evalwatch_events_total{rule,phase}`` — events received from the analysis bus
* ``evalwatch_queue_depth{queue}`` — ``bus`` (dashboard subscription backlog), ``ws`` (sum of client
  queues); ``evalwatch_bus_dropped_total`` — messages the bus dropped for the dashboard
* ``evalwatch_camera_online{site,room,camera}``, ``evalwatch_camera_fps{...}``,
  ``evalwatch_camera_frame_age_seconds{...}``,
  ``evalwatch_camera_backlog_dropped_total{...}`` — live frames the hub's receive path dropped
  because it fell behind (``capture.recorder``: the bounded decoder backlog and decoded-frame
  queue; the camera status's ``backlog_dropped``) — from ``recorder.status()`` at scrape time
* ``evalwatch_s3_errors_total{op}`` — object-store failures seen by the dashboard
* ``evalwatch_analysis_frames_total`` — frames analysed; ``evalwatch_analysis_superseded_frames_total``
  — frames replaced by a newer one before analysis (normal: analysis takes the newest);
  ``evalwatch_analysis_rate_per_camera`` — analysed frames/s per camera the measured cost allows
  (at most ``detection.analysis_fps``); ``evalwatch_analysis_frame_cost_seconds``;
  ``evalwatch_analysis_frame_lag_seconds`` — hub clock minus the last analysed frame's time
* ``evalwatch_disk_free_bytes{disk}``, ``evalwatch_disk_total_bytes{disk}``,
  ``evalwatch_disk_fill_ratio{disk}``, ``evalwatch_disk_full{disk}`` — the hub's WAL and SQLite
  disks and each agent's spool disk (``disk``: ``hub_wal``, ``hub_database``,
  ``agent_spool:<site>``), from ``services.disks`` (``evalwatch.diskwatch``)
* several hub nodes (PostgreSQL, ``dashboard.notify``): ``evalwatch_node_notifications_total{direction}``
  (sent / received from other nodes), ``evalwatch_node_notification_errors_total{reason}``
  (send_failed, queue_full, bad_message), ``evalwatch_node_listener_reconnects_total``,
  ``evalwatch_node_listening`` (1 while the listener is subscribed)
* ``process_resident_memory_bytes`` (and the other ``process_*`` of prometheus_client) — the
  hub's RSS; ``evalwatch_sqlite_memory_bytes`` —
  SQLite's own heap in it (``storage.db.sqlite_memory``: each open connection's page
  cache, up to 2 MiB): the bounded part of the hub's growth while its database grows (issue #17)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class AlertsLike(Protocol):
    """``dashboard.alerts.AlertHub`` as the metrics read it."""

    pushed: int

    @property
    def bus_dropped(self) -> int: ...
    @property
    def bus_queue_depth(self) -> int: ...
    def queue_depth(self) -> int: ...


class StateLike(Protocol):
    """``dashboard.state.DashState`` as the metrics read it (the state owns the metrics, so the
    metrics name what they read instead of importing it)."""

    services: Any

    @property
    def alerts(self) -> AlertsLike: ...
    def camera_status(self) -> dict[tuple[str, str, str], dict[str, Any]]: ...


class DashMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "evalwatch_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.live_viewers = Gauge(
            "evalwatch_live_viewers", "WebRTC streams to browsers", registry=self.registry
        )
        self.ws_clients = Gauge("evalwatch_ws_clients", "Browsers on /ws/events", registry=self.registry)
        self.events = Counter(
            "evalwatch_events", "Events from the bus", ["rule", "phase"], registry=self.registry
        )
        self.s3_errors = Counter("evalwatch_s3_errors", "Object store errors", ["op"], registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, open fds, CPU

    def attach(self, state: StateLike) -> None:
        self.registry.register(_StateCollector(state))


class _StateCollector(Collector):
    def __init__(self, state: StateLike) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        st = self.state
        pushed = CounterMetricFamily("evalwatch_alert_messages", "Messages fanned out to browsers")
        pushed.add_metric([], st.alerts.pushed)
        yield pushed
        dropped = CounterMetricFamily("evalwatch_bus_dropped", "Bus messages dropped for the dashboard")
        dropped.add_metric([], st.alerts.bus_dropped)
        yield dropped
        depth = GaugeMetricFamily("evalwatch_queue_depth", "Queue depths", labels=["queue"])
        depth.add_metric(["bus"], st.alerts.bus_queue_depth)
        depth.add_metric(["ws"], st.alerts.queue_depth())
        yield depth
        online = GaugeMetricFamily(
            "evalwatch_camera_online", "Camera online", labels=["site", "room", "camera"]
        )
        fps = GaugeMetricFamily("evalwatch_camera_fps", "Camera frames/s", labels=["site", "room", "camera"])
        age = GaugeMetricFamily(
            "evalwatch_camera_frame_age_seconds",
            "Seconds since last frame",
            labels=["site", "room", "camera"],
        )
        backlog = CounterMetricFamily(
            "evalwatch_camera_backlog_dropped",
            "Live frames dropped because the hub's receive path fell behind",
            labels=["site", "room", "camera"],
        )
        for s in st.camera_status().values():
            labels = [s["site"], s["room"], s["camera"]]
            online.add_metric(labels, 1.0 if s["online"] else 0.0)
            fps.add_metric(labels, float(s["fps"] or 0.0))
            if s["last_frame_age"] is not None:
                age.add_metric(labels, float(s["last_frame_age"]))
            backlog.add_metric(labels, float(s.get("backlog_dropped") or 0))
        yield online
        yield fps
        yield age
        yield backlog
        pipeline = getattr(st.services, "pipeline", None)
        if pipeline is not None:
            yield from _analysis_metrics(pipeline)
        disks = getattr(st.services, "disks", None)
        if disks is not None:
            yield from _disk_metrics(disks.readings())
        relay = getattr(st.alerts, "relay", None)
        if relay is not None:
            yield from _relay_metrics(relay)
        yield from _memory_metrics()


def _memory_metrics() -> Iterator[Metric]:
    from storage.db import sqlite_memory

    used = sqlite_memory()
    if used is not None:
        g = GaugeMetricFamily("evalwatch_sqlite_memory_bytes",
                              "SQLite's own heap (page caches of the open connections, schemas)")
        g.add_metric([], float(used[0]))
        yield g


def _disk_metrics(readings: list[Any]) -> Iterator[Metric]:
    free = GaugeMetricFamily("evalwatch_disk_free_bytes", "Free bytes on the disk", labels=["disk"])
    total = GaugeMetricFamily("evalwatch_disk_total_bytes", "Size of the disk", labels=["disk"])
    fill = GaugeMetricFamily("evalwatch_disk_fill_ratio", "Used / size of the disk", labels=["disk"])
    full = GaugeMetricFamily("evalwatch_disk_full", "1 while the disk_full alert is open", labels=["disk"])
    for r in readings:
        free.add_metric([r.disk], float(r.free))
        total.add_metric([r.disk], float(r.total))
        fill.add_metric([r.disk], float(r.fill_ratio))
        full.add_metric([r.disk], 1.0 if r.full else 0.0)
    yield free
    yield total
    yield fill
    yield full


def _relay_metrics(relay: Any) -> Iterator[Metric]:
    """Cross-node alerts (``dashboard.notify.EventRelay`` over PostgreSQL NOTIFY)."""
    ch = relay.channel
    notes = CounterMetricFamily("evalwatch_node_notifications", "Cross-node alert notifications",
                                labels=["direction"])
    notes.add_metric(["sent"], ch.sent)
    notes.add_metric(["received"], ch.received)
    yield notes
    errors = CounterMetricFamily("evalwatch_node_notification_errors",
                                 "Cross-node notifications not sent, dropped or not understood",
                                 labels=["reason"])
    errors.add_metric(["send_failed"], ch.send_errors)
    errors.add_metric(["queue_full"], ch.dropped)
    errors.add_metric(["bad_message"], ch.bad_messages)
    yield errors
    reconnects = CounterMetricFamily("evalwatch_node_listener_reconnects",
                                     "Times the cross-node listener reconnected to the database")
    reconnects.add_metric([], ch.reconnects)
    yield reconnects
    listening = GaugeMetricFamily("evalwatch_node_listening", "1 while the cross-node listener listens")
    listening.add_metric([], 1.0 if ch.listening.is_set() else 0.0)
    yield listening


def _analysis_metrics(p: Any) -> Iterator[Metric]:
    frames = CounterMetricFamily("evalwatch_analysis_frames", "Frames analysed")
    frames.add_metric([], float(p.analysed_frames))
    yield frames
    superseded = CounterMetricFamily(
        "evalwatch_analysis_superseded_frames", "Frames replaced by a newer one before analysis"
    )
    superseded.add_metric([], float(p.dropped_frames))
    yield superseded
    for name, doc, value in (
        ("evalwatch_analysis_rate_per_camera", "Analysed frames/s per camera allowed", p.effective_fps),
        ("evalwatch_analysis_frame_cost_seconds", "Measured analysis time per frame", p.frame_cost_s),
        ("evalwatch_analysis_frame_lag_seconds", "Hub clock minus last analysed frame time", p.frame_lag_s),
    ):
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], float(value))
        yield g


def status_dict(st: Any) -> dict[str, Any]:
    """A recorder ``CameraStatus`` (attribute or dict access) as the API's plain dict."""

    def g(name: str, default: Any = None) -> Any:
        if isinstance(st, dict):
            return st.get(name, default)
        return getattr(st, name, default)

    age = g("last_frame_age", None)
    last_at = g("last_frame_at", None)
    if age is None and last_at is not None:
        from datetime import UTC, datetime

        age = max(0.0, (datetime.now(UTC) - last_at).total_seconds())
    return {
        "site": str(g("site", "")),
        "room": str(g("room", "")),
        "camera": str(g("camera", "")),
        "online": bool(g("online", False)),
        "fps": float(g("fps", 0.0) or 0.0),
        "last_frame_age": round(float(age), 2) if age is not None else None,
        "last_error": g("last_error", None),
        "backlog_dropped": int(g("backlog_dropped", 0) or 0),
    }
