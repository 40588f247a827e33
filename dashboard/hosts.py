"""Host allow-list (finding 12 of issue #12): refuse requests whose ``Host`` the hub does not own.

DNS rebinding: a page on ``evil.example`` re-points its own name at the hub's address; the
browser then sends the page's requests to the hub with ``Host: evil.example`` and an ``Origin``
of ``http://evil.example`` — which *is* same-origin by the Origin check (it compares Origin with
Host).  The allow-list closes that: every HTTP request and WebSocket upgrade whose ``Host`` names
a host not in the list is answered **400** ``err.bad_host`` (JSON, the app's error shape) before
any route, cookie or body is looked at.

Allowed (``allowed_hosts`` = ``hub.allowed_hosts`` or, unset, the derived default):

* always: IP literals (``10.0.0.5``, ``[::1]``) — a browser sends an address as Host only when
  the page's own origin is that address, which cannot be rebound; agents and scripts reach the
  hub by IP without configuring anything;
* the derived default: ``localhost`` and ``*.localhost``, the host of ``hub.public_url``,
  ``hub.listen_host`` when it is a name, and this machine's host name and FQDN;
* ``hub.allowed_hosts`` replaces the derived names: exact names, ``.example.org`` for a domain
  and its subdomains, or ``*`` for any (turns the check off; only behind a proxy that checks
  Host itself).

A request without a ``Host`` header (HTTP/1.0 probes) passes: no browser sends one.  So does
the agents' ingest API (``exempt``: ``dashboard.policy.AGENT_PREFIXES``): it takes a bearer token,
never a cookie, so a rebound page gains nothing there, and agents keep working whatever name
their ``hub_url`` uses.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from dashboard.errors import error_body

log = logging.getLogger("evalwatch.dashboard")

#: Names added to every derived default; the test suite adds ``testserver`` (the host httpx's
#: and Starlette's in-process clients send) in ``tests/conftest.py``.  Empty in production.
EXTRA_DEFAULT_HOSTS: list[str] = []

LOCAL_NAMES = ("localhost", ".localhost")


def split_host(value: str) -> str:
    """The host part of a ``Host`` header value, lower-case, without port or trailing dot."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        return v[1:end] if end > 0 else v
    if v.count(":") == 1:
        v = v.rsplit(":", 1)[0]
    return v.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_hosts(listen_host: str, public_url: str | None) -> list[str]:
    """The derived allow-list (see module docstring)."""
    out: list[str] = [*LOCAL_NAMES, *EXTRA_DEFAULT_HOSTS]
    if public_url:
        h = urlsplit(public_url).hostname
        if h:
            out.append(h.lower())
    if listen_host and not _is_ip(listen_host):
        out.append(listen_host.lower())
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and not _is_ip(name):
            out.append(name.lower().rstrip("."))
    return list(dict.fromkeys(out))


class HostAllowList:
    """Whether a host name is allowed (exact names, ``.domain`` patterns, ``*``, IP literals)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = [n.lower().rstrip(".") if n != "." else n for n in names]
        self.any = "*" in self.names

    def allows(self, host: str) -> bool:
        if self.any or _is_ip(host):
            return True
        for n in self.names:
            if n.startswith("."):
                if host == n[1:] or host.endswith(n):
                    return True
            elif host == n:
                return True
        return False


class HostGuard:
    """ASGI middleware: 400 ``err.bad_host`` for HTTP requests and WebSocket upgrades whose
    ``Host`` is not allowed (a WebSocket gets the 400 as its denial response where the server
    supports it — uvicorn does — else a close before accept)."""

    def __init__(self, app: ASGIApp, allowed: HostAllowList, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.allowed, self.exempt = app, allowed, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or str(scope.get("path", "")).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k == b"host"), None)
        if raw is None:
            await self.app(scope, receive, send)
            return
        host = split_host(raw.decode("latin-1"))
        if self.allowed.allows(host):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning("refused Host %r (not in hub.allowed_hosts) path=%s client=%s",
                    host[:100], scope.get("path"), client[0])
        body = json.dumps(error_body(
            "err.bad_host", f"Host {host[:100]!r} is not one of this hub's names (hub.allowed_hosts)"
        )).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 4400, "reason": "bad host"})
