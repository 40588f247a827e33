"""Per-app state: the services plus the dashboard's own helpers, at ``app.state.dash``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from dashboard.alerts import AlertHub
from dashboard.live import LiveManager
from dashboard.metrics import DashMetrics, status_dict
from dashboard.notifications import Notifier
from dashboard.security import LoginThrottle, SessionCodec
from dashboard.users import LoginSessions, UserCache


@dataclass
class DashState:
    services: Any
    secret_key: str
    codec: SessionCodec
    users: UserCache
    alerts: AlertHub
    metrics: DashMetrics
    live: LiveManager
    logins: LoginSessions
    #: Notifications to people on site (``dashboard.notifications``), fed by ``alerts``.
    notifier: Notifier | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    #: Failed agent enrolments per address (``POST /api/agent/enroll``), counted like logins (the
    #: "account" is the enrolment itself).
    enroll_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure_cookies: bool = False
    #: ``hub.trusted_proxies`` parsed (``dashboard.policy.client_ip``).
    trusted_proxies: list[Any] = field(default_factory=list)
    #: The scheduled early-warning run (``dashboard.earlywarn.WarningJob``), set by ``create_app``.
    warnings: Any = None
    #: Open alert WebSockets per username (``hub.max_ws_per_user``, finding 13 of #12).
    ws_per_user: dict[str, int] = field(default_factory=dict)
    #: Last audit of a segment fetch per (username, segment id), monotonic seconds.
    segment_audit: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def cfg(self) -> Any:
        return self.services.cfg

    @property
    def db(self) -> Any:
        return self.services.db

    def camera_status(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Status of every configured camera (offline when the recorder does not know it)."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for site, room, cam in self.cfg.cameras():
            out[(site.id, room.id, cam.id)] = {
                "site": site.id,
                "room": room.id,
                "camera": cam.id,
                "online": False,
                "fps": 0.0,
                "last_frame_age": None,
                "last_error": None,
                "backlog_dropped": 0,
            }
        rec = self.services.recorder
        if rec is not None:
            try:
                statuses = rec.status()
            except Exception:
                statuses = []
            for st in statuses:
                d = status_dict(st)
                key = (d["site"], d["room"], d["camera"])
                if key in out:
                    out[key] = d
        return out


def get_state(conn: HTTPConnection) -> DashState:
    return conn.app.state.dash


def now() -> float:
    return time.time()
