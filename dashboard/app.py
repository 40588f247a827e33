"""The dashboard application factory: ``create_app(services) -> FastAPI``.

See ``dashboard/services.py`` for what ``services`` must provide and ``docs/dashboard.md`` for the
routes and the role matrix.  Startup seeds the config's users into the ``users`` table (existing
accounts are never changed) and subscribes to the event bus; shutdown closes live streams.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard import apidoc
from dashboard.alerts import AlertHub
from dashboard.dbutil import run_db
from dashboard.defs import Health, media
from dashboard.earlywarn import WarningJob
from dashboard.errors import ApiError, error_body, install_error_handlers
from dashboard.experts import ExpertTagger
from dashboard.hosts import HostAllowList, HostGuard, default_hosts
from dashboard.live import LiveManager
from dashboard.metrics import DashMetrics
from dashboard.notifications import Notifier
from dashboard.policy import AGENT_PREFIXES, ANY_USER, CSP, METRICS, PUBLIC, Principal, allow, page
from dashboard.routes import (
    admin,
    agents,
    anchors,
    auth,
    events,
    experts,
    live,
    notifications,
    replay,
    seating,
    sessions,
    stats,
)
from dashboard.security import SessionCodec
from dashboard.state import DashState
from dashboard.strings import LANGS, load_dictionary
from dashboard.users import LoginSessions, UserCache, seed_users

log = logging.getLogger("evalwatch.dashboard")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PUBLIC_MOUNTS = ("/static",)

#: Sent on every answer when browsers reach the hub over HTTPS (``hub.tls_cert`` or an https
#: ``hub.public_url`` behind a proxy): a year; no ``includeSubDomains`` (the hub's name may share
#: a domain with sites that are not HTTPS).
HSTS = "max-age=31536000"

class BodyLimit:
    """Counts the request body as it arrives and raises ``HTTPException(413)`` past ``limit``
    bytes — also for bodies sent without Content-Length (chunked), which the Content-Length
    check in ``_guard`` cannot see (security finding 7 of issue #12).  The route reading the body
    gets the exception, so the answer is the usual ``err.body_too_large`` JSON.  FastAPI's own
    ``max_body_size`` answers a declared oversize length with plain text instead, hence this.
    ``exempt`` paths (the agents' ingest API) enforce their own, larger limits while streaming.
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"body exceeds the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


#: Methods the request metrics name; any other (clients choose it) counts as "other", so an
#: anonymous client cannot create new time series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def create_app(services: Any) -> FastAPI:
    """Build the dashboard for ``services`` (a :class:`dashboard.services.Services`).

    Raises ``ValueError`` when ``services.cfg.hub.secret_key`` is unset.
    """
    cfg = services.cfg
    secret = cfg.hub.secret_key.get_secret_value() if cfg.hub.secret_key else ""
    metrics = DashMetrics()

    state_holder: dict[str, DashState] = {}

    async def _on_live_end(sess: Any) -> None:
        await live.on_live_end(state_holder["st"], sess)

    st = DashState(
        services=services,
        secret_key=secret,
        codec=SessionCodec(secret),
        users=UserCache(services.db),
        logins=LoginSessions(services.db),
        alerts=AlertHub(services.bus, getattr(services, "relay", None)),
        metrics=metrics,
        live=LiveManager(cfg, _on_live_end),
        secure_cookies=cfg.hub.https,
        trusted_proxies=[ipaddress.ip_network(n, strict=False) for n in cfg.hub.trusted_proxies],
    )
    state_holder["st"] = st
    relay = getattr(services, "relay", None)
    if relay is not None:  # several hub nodes: a logout on one closes the streams another serves
        st.logins.relay = relay
        relay.on_revoked = st.logins.remote_revoked
        relay.on_resync = st.logins.recheck
    st.alerts.enrich = ExpertTagger(services.db)
    st.warnings = WarningJob(cfg, services.db, st.alerts, getattr(services, "jobs", None))
    st.notifier = Notifier(cfg, services.db)
    st.alerts.listeners.append(st.notifier.offer)
    if getattr(services, "notices", None) is not None:  # a room notice's status, to every dashboard
        services.notices.on_change = st.alerts.publish
    metrics.attach(st)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            created = await run_db(services.db, lambda s: seed_users(s, cfg))
        except IntegrityError:  # another hub node on this database seeded them at the same moment
            created = await run_db(services.db, lambda s: seed_users(s, cfg))
        if created:
            log.info("dashboard: created users %s", ", ".join(created))
        assert st.notifier is not None
        await st.notifier.start()  # sends what is pending from before a restart
        await st.alerts.start()
        st.warnings.start()  # early warnings on warnings.cron (dashboard.earlywarn)
        try:
            yield
        finally:
            await st.warnings.stop()
            await st.alerts.stop()
            await st.notifier.stop()
            await st.live.close_all()

    app = FastAPI(
        title="evalwatch dashboard",
        version="0.1.0",
        description="Live wall, alerts, replay and administration of evalwatch.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.dash = st
    app.add_middleware(BodyLimit, limit=cfg.hub.max_body_bytes, exempt=AGENT_PREFIXES)
    install_error_handlers(app)
    max_body = cfg.hub.max_body_bytes

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        agent = path.startswith(AGENT_PREFIXES)
        cl = request.headers.get("content-length")
        if not agent and cl is not None:
            try:
                too_big = int(cl) > max_body
            except ValueError:
                return JSONResponse(error_body("err.invalid_input"), status_code=400)
            if too_big:
                return JSONResponse(error_body("err.body_too_large"), status_code=413)
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        method = request.method if request.method in HTTP_METHODS else "other"  # finding 9 of #12
        metrics.http_requests.labels(method, label, str(response.status_code)).inc()
        if not agent:
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if st.secure_cookies:
                response.headers.setdefault("Strict-Transport-Security", HSTS)
            if path.startswith("/api/") and "cache-control" not in response.headers:
                response.headers["Cache-Control"] = "no-store"
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
        return response

    for r in (auth.router, events.router, live.router, replay.router, admin.router, seating.router,
              sessions.router, agents.router, experts.router, stats.router, anchors.router,
              notifications.router):
        app.include_router(r)
    app.include_router(_misc_router(st))
    for extra in getattr(services, "extra_routers", None) or []:
        app.include_router(extra)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    apidoc.install(app)  # 422 answers documented as they are (dashboard.errors), not FastAPI's
    # outermost: a foreign Host never reaches a route, a cookie check or the body (finding 12)
    hosts = HostAllowList(cfg.hub.allowed_hosts or default_hosts(cfg.hub.listen_host, cfg.hub.public_url))
    app.add_middleware(HostGuard, allowed=hosts, exempt=AGENT_PREFIXES)
    return app


def _misc_router(st: DashState) -> APIRouter:
    r = APIRouter()

    @r.get("/healthz", dependencies=[Depends(PUBLIC)], tags=["ops"], response_model=Health)
    async def healthz() -> Response:
        """200 ``{"ok": true, ...}`` when the database answers; 503 otherwise (no auth: no data)."""
        checks: dict[str, Any] = {}
        try:
            await run_db(st.db, lambda s: s.execute(_select_one()).scalar())
            checks["db"] = True
        except Exception:
            checks["db"] = False
        checks["bus"] = st.services.bus is not None
        checks["recorder"] = st.services.recorder is not None
        ok = bool(checks["db"])
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    @r.get("/metrics", dependencies=[Depends(METRICS)], tags=["ops"], **media("text/plain"))
    async def metrics_route() -> Response:
        """Prometheus text format (admin session, or ``Bearer`` metrics token)."""
        return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @r.get("/api/i18n/{lang}", dependencies=[Depends(PUBLIC)], tags=["ui"])
    async def dictionary(lang: str) -> dict[str, str]:
        """The UI dictionary of ``lang`` (``zh-CN`` default, ``en``)."""
        if lang not in LANGS:
            raise ApiError(404, "err.not_found")
        return load_dictionary(lang)

    @r.get("/api/openapi.json", include_in_schema=False)
    async def openapi(request: Request, me: Annotated[Principal, Depends(allow(*ANY_USER))]) -> Response:
        return JSONResponse(request.app.openapi())

    @r.get("/api/docs", include_in_schema=False, dependencies=[Depends(page(*ANY_USER))])
    async def docs() -> Response:
        return FileResponse(STATIC / "apidocs.html", headers={"Cache-Control": "no-store"})

    @r.get("/login", include_in_schema=False, dependencies=[Depends(PUBLIC)])
    async def login_page() -> Response:
        return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})

    @r.get("/", include_in_schema=False, dependencies=[Depends(page(*ANY_USER))])
    async def index() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    return r


def _select_one() -> Any:
    from sqlalchemy import text

    return text("SELECT 1")


def new_secret_key() -> str:
    """A random secret suitable for ``hub.secret_key`` (tests and first start)."""
    return secrets.token_urlsafe(32)
