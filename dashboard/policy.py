"""Who may call what: every dashboard route declares a gate, and the gate is the only way in.

Declare a route's policy with a dependency: ``Depends(allow("supervisor", "admin"))`` for HTTP
(401 for anonymous callers, 403 for other roles, CSRF + Origin checks on state-changing methods),
``Depends(ws_allow(...))`` for WebSockets (the endpoint closes with 4401/4403 when the gate returns
a refusal), ``Depends(PUBLIC)`` for the few routes anyone may reach (login, health, static files),
``Depends(page(...))`` for HTML pages (anonymous visitors are redirected to ``/login``).

Routes added by ``services.extra_routers`` under ``AGENT_PREFIXES`` are agent-only: they
authenticate machine credentials themselves.  ``tests/test_roles_matrix.py`` walks ``app.routes``
and fails for any route without one of these declarations.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, WebSocket
from starlette.requests import HTTPConnection

from dashboard.errors import ApiError, LoginRedirect
from dashboard.security import CSRF_HEADER, SESSION_COOKIE, csrf_ok, metrics_token, password_fingerprint

ROLES: tuple[str, ...] = ("admin", "supervisor", "auditor", "observer")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AGENT_PREFIXES: tuple[str, ...] = ("/api/ingest",)

#: The Content-Security-Policy of every dashboard answer (``dashboard.app``); the session report
#: adds the hashes of its own inline style (``dashboard.routes.sessions.report_csp``).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class Principal:
    """An authenticated dashboard user."""

    user_id: int
    username: str
    role: str
    display_name: str | None
    csrf: str
    #: The server-side session (``login_sessions`` row id) this request runs under.
    session: str = ""
    #: A seeded account that has not chosen its own password yet (finding 11 of #12).
    must_change: bool = False


def _in(addr: str, nets: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_ip(conn: HTTPConnection) -> str | None:
    """The client's address for throttling and audit.  ``X-Forwarded-For`` counts only when the
    peer is one of ``hub.trusted_proxies`` (finding 6 of #12): then the right-most address that
    is not a trusted proxy.  Without trusted proxies (default) the header is ignored, also when
    the peer is 127.0.0.1."""
    peer = conn.client.host if conn.client else None
    from dashboard.state import get_state  # local import: state imports this module

    try:
        nets = get_state(conn).trusted_proxies
    except AttributeError:
        nets = []
    if peer is None or not nets or not _in(peer, nets):
        return peer
    hops = [h.strip() for h in ",".join(conn.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, nets):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from the proxy's client: keep the proxy's own address
    return peer


async def authenticate(conn: HTTPConnection) -> Principal | None:
    """The user behind the session cookie, or None (no/forged/expired cookie, inactive user,
    password changed since login, session logged out or revoked)."""
    from dashboard.state import get_state  # local import: state imports this module

    st = get_state(conn)
    sess = st.codec.load(conn.cookies.get(SESSION_COOKIE))
    if sess is None:
        return None
    row = await st.users.get(sess.user_id)
    if row is None or not row.active or password_fingerprint(row.password_hash) != sess.fingerprint:
        return None
    if not sess.sid or not await st.logins.active(sess.key, row.id):  # logged out / revoked
        return None
    return Principal(
        row.id, row.username, row.role, row.display_name, sess.csrf, sess.key, row.must_change_password
    )


def same_origin(conn: HTTPConnection) -> bool:
    """True when the ``Origin`` header is absent or names the host the request was sent to."""
    origin = conn.headers.get("origin")
    if not origin:
        return True
    host = conn.headers.get("host", "")
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


class Gate:
    """HTTP dependency enforcing a role set (``roles`` empty + ``public`` = anyone)."""

    def __init__(
        self, *roles: str, public: bool = False, page: bool = False, metrics: bool = False,
        pending: bool = False,
    ) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {unknown}")
        self.roles = frozenset(roles)
        self.public = public
        self.page = page
        self.metrics = metrics
        #: Also open to an account that must still change its password (me, logout, password).
        self.pending = pending

    def __repr__(self) -> str:
        return "PUBLIC" if self.public else f"Gate({','.join(sorted(self.roles))})"

    async def __call__(self, request: Request) -> Principal | None:
        if self.public:
            return None
        if self.metrics:
            from dashboard.state import get_state

            auth = request.headers.get("authorization", "")
            token = metrics_token(get_state(request).secret_key)
            if auth.startswith("Bearer ") and csrf_ok(token, auth[7:]):
                return None
        principal = await authenticate(request)
        if principal is None:
            if self.page:
                raise LoginRedirect()
            raise ApiError(401, "err.not_logged_in")
        if principal.role not in self.roles:
            raise ApiError(403, "err.forbidden")
        if principal.must_change and not self.pending:
            if self.page:
                raise LoginRedirect()
            raise ApiError(403, "err.password_change_required")
        if request.method not in SAFE_METHODS:
            if not same_origin(request):
                raise ApiError(403, "err.bad_origin")
            if not csrf_ok(principal.csrf, request.headers.get(CSRF_HEADER)):
                raise ApiError(403, "err.csrf")
        request.state.principal = principal  # the actor of this request's audit rows (deps.Audit)
        return principal


@dataclass(frozen=True)
class WsRefusal:
    """Why a WebSocket was refused: close ``code`` (4401 anonymous, 4403 role/origin)."""

    code: int
    reason: str


class WsGate:
    """WebSocket dependency: returns the Principal, or a :class:`WsRefusal` the endpoint closes with."""

    def __init__(self, *roles: str) -> None:
        self.roles = frozenset(roles)

    def __repr__(self) -> str:
        return f"WsGate({','.join(sorted(self.roles))})"

    async def __call__(self, websocket: WebSocket) -> Principal | WsRefusal:
        if not same_origin(websocket):
            return WsRefusal(4403, "bad origin")
        principal = await authenticate(websocket)
        if principal is None:
            return WsRefusal(4401, "not logged in")
        if principal.role not in self.roles:
            return WsRefusal(4403, "forbidden")
        if principal.must_change:
            return WsRefusal(4403, "password change required")
        return principal


def allow(*roles: str) -> Gate:
    """Gate for API routes: only ``roles`` (401 anonymous, 403 others; CSRF on unsafe methods)."""
    return Gate(*roles)


def allow_pending(*roles: str) -> Gate:
    """Like :func:`allow`, and also open to an account that must still change its password
    (``/api/auth/me``, ``logout``, ``password``); every other gate answers it 403
    ``err.password_change_required`` (pages: a redirect to ``/login``)."""
    return Gate(*roles, pending=True)


def page(*roles: str) -> Gate:
    """Gate for HTML pages: like :func:`allow` but anonymous visitors are sent to ``/login``."""
    return Gate(*roles, page=True)


def ws_allow(*roles: str) -> WsGate:
    return WsGate(*roles)


PUBLIC = Gate(public=True)
ANY_USER = ROLES
METRICS = Gate("admin", metrics=True)


def gates_of(route: Any) -> list[Gate | WsGate]:
    """The gates declared on ``route`` (via its dependant tree), for the role-matrix test."""
    dependant = getattr(route, "dependant", None)
    found: list[Gate | WsGate] = []

    def walk(d: Any) -> None:
        for sub in getattr(d, "dependencies", []):
            if isinstance(sub.call, Gate | WsGate):
                found.append(sub.call)
            walk(sub)

    if dependant is not None:
        walk(dependant)
    return found


def iter_routes(routes: list[Any]) -> list[tuple[Any, Any]]:
    """``(route, original_route)`` for every route, flattening FastAPI's included routers.

    Newer FastAPI keeps ``include_router`` results as lazy ``_IncludedRouter`` entries in
    ``app.routes``; their effective routes carry the full path, methods and dependant, and
    ``original_route`` tells HTTP from WebSocket routes.
    """
    out: list[tuple[Any, Any]] = []
    for r in routes:
        if hasattr(r, "effective_candidates"):
            out.extend(iter_routes(r.effective_candidates()))
        else:
            eff = r
            if getattr(r, "dependant", 1) is None and getattr(r, "starlette_route", None) is not None:
                eff = r.starlette_route  # WebSocket routes: the built route holds path + dependant
            out.append((eff, getattr(r, "original_route", r)))
    return out
