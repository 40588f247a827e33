"""Every route x every role (and anonymous): the allowed/denied matrix, generated from app.routes.

A route that declares no policy (no gate from ``dashboard.policy`` and not an agent-only ingest
route or a public mount) fails ``test_every_route_declares_a_policy``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount

from dashboard.app import PUBLIC_MOUNTS, create_app
from dashboard.policy import AGENT_PREFIXES, ROLES, Gate, WsGate, gates_of, iter_routes
from testkit.dashboard import ROLE_USERS, add_event, make_services, password_of

ANON = "anonymous"
CALLERS = (ANON, *ROLES)

# The intended matrix, written out by hand: a route whose gate drifts from it fails.
EXPECTED: dict[str, set[str]] = {
    "POST /api/auth/login": {ANON, *ROLES},
    "POST /api/auth/logout": set(ROLES),
    "GET /api/auth/me": set(ROLES),
    "POST /api/auth/password": set(ROLES),
    "GET /api/events": set(ROLES),
    "GET /api/events/{event_id}": set(ROLES),
    "GET /api/events/{event_id}/snapshot": set(ROLES),
    "POST /api/events/{event_id}/ack": {"admin", "supervisor"},
    "POST /api/events/{event_id}/resolve": {"admin", "supervisor"},
    "WS /ws/events": set(ROLES),
    "GET /api/sites": set(ROLES),
    "GET /api/cameras/status": set(ROLES),
    "POST /api/live/{site}/{room}/{camera}/offer": {"admin", "supervisor", "observer"},
    "GET /api/live/{site}/{room}/{camera}/thumb.jpg": {"admin", "supervisor", "observer"},
    "GET /api/live/thumbs": {"admin", "supervisor", "observer"},
    "GET /api/replay/{site}/{room}/{camera}": {"admin", "supervisor", "auditor"},
    "GET /api/segments/{segment_id}/video": {"admin", "supervisor", "auditor"},
    "GET /api/replay/{site}/{room}/{camera}/verify": {"admin", "supervisor", "auditor"},
    "GET /api/export/{site}/{room}/{camera}": {"admin", "auditor"},
    "GET /api/users": {"admin"},
    "POST /api/users": {"admin"},
    "PATCH /api/users/{username}": {"admin"},
    "GET /api/audit": {"admin", "auditor"},
    "GET /api/audit/export": {"admin", "auditor"},
    "GET /api/config": {"admin"},
    "GET /healthz": {ANON, *ROLES},
    "GET /metrics": {"admin"},
    "GET /api/i18n/{lang}": {ANON, *ROLES},
    "GET /api/openapi.json": set(ROLES),
    "GET /api/docs": set(ROLES),
    "GET /login": {ANON, *ROLES},
    "GET /": set(ROLES),
    # evaluation sessions (dashboard.routes.sessions)
    "GET /api/sessions": set(ROLES),
    "GET /api/sessions/public-key": set(ROLES),
    "GET /api/sessions/{session_id}": set(ROLES),
    "POST /api/sessions": {"admin", "supervisor"},
    "POST /api/sessions/{session_id}/start": {"admin", "supervisor"},
    "POST /api/sessions/{session_id}/close": {"admin", "supervisor"},
    "GET /api/sessions/{session_id}/seal": {"admin", "supervisor", "auditor"},
    "GET /api/sessions/{session_id}/report": {"admin", "supervisor", "auditor"},
    "GET /api/sessions/{session_id}/export": {"admin", "auditor"},
    "POST /api/sessions/{session_id}/hold": {"admin", "auditor"},
    "POST /api/sessions/{session_id}/release": {"admin", "auditor"},
    "GET /api/sessions/{session_id}/holds": {"admin", "supervisor", "auditor"},
    # random seat assignment for the session form (dashboard.routes.seating)
    "POST /api/seats/assign": {"admin", "supervisor"},
    # expert register and credit records (dashboard.routes.experts, docs/credit.md)
    "GET /api/experts": set(ROLES),
    "POST /api/experts": {"admin"},
    "POST /api/experts/import": {"admin"},
    "GET /api/experts/{code}": set(ROLES),
    "PATCH /api/experts/{code}": {"admin"},
    "PUT /api/experts/{code}/photo": {"admin"},
    "GET /api/experts/{code}/photo": {"admin", "supervisor", "auditor"},
    "POST /api/events/{event_id}/credit": {"admin", "supervisor"},
    "GET /api/credit": set(ROLES),
    "GET /api/credit/categories": set(ROLES),
    "GET /api/credit/export": set(ROLES),
    "GET /api/credit/feed": {"admin", "supervisor", "auditor"},
    "GET /api/credit/{record_id}": set(ROLES),
    "POST /api/credit/{record_id}/revise": {"admin", "supervisor"},
    # statistics, early warnings, monthly report (dashboard.routes.stats, docs/statistics.md)
    "GET /api/stats/incidents": set(ROLES),
    "GET /api/stats/judgements": set(ROLES),
    "GET /api/stats/ack": set(ROLES),
    "GET /api/stats/cameras": set(ROLES),
    "GET /api/stats/experts": set(ROLES),
    "GET /api/warnings": set(ROLES),
    "POST /api/warnings/run": {"admin", "supervisor"},
    "POST /api/warnings/{warning_id}/ack": {"admin", "supervisor"},
    "GET /api/reports/monthly": {"admin", "supervisor", "auditor"},
    # site agents (dashboard.routes.agents): enrolment is anonymous (the code is the credential)
    "POST /api/sites/{site}/enroll-codes": {"admin"},
    "POST /api/agent/enroll": {ANON, *ROLES},
    "GET /api/agents": {"admin"},
    "POST /api/sites/{site}/revoke-agent": {"admin"},
    # the signed chain-heads feed (dashboard.routes.anchors, docs/security.md)
    "GET /api/anchors/feed": set(ROLES),
    # notifications to people on site, notices in the room (dashboard.routes.notifications)
    "GET /api/notifications/log": {"admin", "supervisor", "auditor"},
    "POST /api/rooms/{site}/{room}/notices": {"admin", "supervisor"},
    "GET /api/rooms/{site}/{room}/notices": {"admin", "supervisor", "auditor"},
}

PARAMS = {
    "event_id": "1",
    "site": "site1",
    "room": "room1",
    "camera": "cam1",
    "segment_id": "1",
    "username": "obs",
    "lang": "en",
    "session_id": "1",
    "code": "E0001",
    "record_id": "1",
    "warning_id": "1",
    "notice_id": "1",
}
QUERY = {"start": "2025-01-01T00:00:00Z", "end": "2025-01-01T00:01:00Z"}
BODIES: dict[str, Any] = {
    "POST /api/auth/login": {"username": "nobody", "password": "wrong-password"},
    "POST /api/auth/password": {"old_password": "wrong-password", "new_password": "another-password-1"},
    "POST /api/events/{event_id}/resolve": {"note": "ok", "false_alarm": True},
    "POST /api/live/{site}/{room}/{camera}/offer": {"sdp": "not-an-sdp-at-all", "type": "offer"},
    "POST /api/users": {"username": "x", "role": "observer", "password": "short"},
    "PATCH /api/users/{username}": {"display_name": "Observer"},
    "POST /api/sessions": {"code": "", "rooms": []},
    "POST /api/agent/enroll": {"code": "AAAAA-BBBBB-CCCCC-DDDDD"},
    "POST /api/sites/{site}/revoke-agent": {"id": "nope"},
    "POST /api/rooms/{site}/{room}/notices": {"preset": "no_phone"},
    "POST /api/sessions/{session_id}/hold": {"reason": "dispute 1"},
    "POST /api/sessions/{session_id}/release": {"reason": ""},
    "POST /api/seats/assign": {
        "rooms": [{"site": "site1", "room": "room1"}],
        "bids": [{"id": "B1", "experts": ["e1"]}],
    },
}


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS[m.group(1)], path)


def make_app(tmp_path: Path) -> FastAPI:
    from fastapi import APIRouter, Header, HTTPException

    services = make_services(tmp_path)
    # an agent-only ingest router, as the capture engineer's (capture.ingest) is wired by the hub
    ingest = APIRouter(prefix="/api/ingest")

    @ingest.post("/heartbeat")
    async def heartbeat(authorization: str = Header(default="")) -> dict[str, bool]:
        if authorization != "Bearer agent-token-site1":
            raise HTTPException(401, "bad agent token")
        return {"ok": True}


    services.extra_routers = [ingest, *_real_ingest(services)]
    return create_app(services)


def _real_ingest(services: Any) -> list[Any]:
    """The real capture ingest router, when the capture package is importable."""
    try:
        from capture.ingest import make_router
        from capture.recorder import Recorder
        from testkit.capture import DirSegmentStore
    except ImportError:
        return []
    router = make_router(Recorder(services.cfg), DirSegmentStore(Path("/nonexistent-unused")), services.cfg)
    # the real router uses the same /api/ingest prefix; keep only routes not already declared
    router.routes[:] = [r for r in router.routes if not str(getattr(r, "path", "")).endswith("/heartbeat")]
    return [router]


def policy_of(route: Any) -> tuple[str, set[str]]:
    """(kind, allowed callers) from the route's declaration."""
    if isinstance(route, Mount):
        assert route.path in PUBLIC_MOUNTS, f"mount {route.path} has no declared policy"
        return "public", set(CALLERS)
    gates = gates_of(route)
    path = route.path
    if not gates:
        assert path.startswith(AGENT_PREFIXES), f"route {path} declares no policy (add a gate)"
        return "agent", set()
    assert len(gates) == 1, f"route {path} declares several gates: {gates}"
    g = gates[0]
    if isinstance(g, WsGate):
        return "ws", set(g.roles)
    assert isinstance(g, Gate)
    return ("public", set(CALLERS)) if g.public else ("roles", set(g.roles))


def route_keys(app: FastAPI) -> list[tuple[str, str, Any]]:
    out = []
    for r, orig in iter_routes(app.routes):
        if isinstance(orig, APIRoute):
            for m in sorted(set(r.methods) - {"HEAD"}):
                out.append((m, r.path, r))
        elif isinstance(orig, APIWebSocketRoute):
            out.append(("WS", r.path, r))
        elif isinstance(r, Mount):
            out.append(("MOUNT", r.path, r))
        else:
            pytest.fail(f"unexpected route type {type(r).__name__} at {getattr(r, 'path', '?')}")
    return out


def test_every_route_declares_a_policy(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    seen = set()
    for method, path, route in route_keys(app):
        kind, allowed = policy_of(route)
        key = f"{method} {path}"
        if kind == "agent" or method == "MOUNT":
            continue
        seen.add(key)
        assert key in EXPECTED, f"{key} is not in the expected matrix (declare its roles there)"
        assert allowed == EXPECTED[key], (
            f"{key}: gate allows {sorted(allowed)}, expected {sorted(EXPECTED[key])}"
        )
    assert seen == set(EXPECTED), f"expected routes missing from the app: {set(EXPECTED) - seen}"


def test_a_route_without_policy_is_caught(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/api/oops")
    async def oops() -> dict[str, str]:
        return {}

    with pytest.raises(AssertionError, match="declares no policy"):
        for _m, _p, route in route_keys(app):
            policy_of(route)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, FastAPI]]:
    app = make_app(tmp_path)
    add_event(app.state.dash.db)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    yield f"127.0.0.1:{port}", app
    srv.should_exit = True
    await task


async def test_role_matrix_against_running_app(live: tuple[str, FastAPI]) -> None:
    host, app = live
    sessions: dict[str, tuple[dict[str, str], str]] = {ANON: ({}, "")}

    async def log_in(role: str) -> None:
        async with httpx.AsyncClient(base_url=f"http://{host}") as c:
            r = await c.post(
                "/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)}
            )
            assert r.status_code == 200
            sessions[role] = ({"evalwatch_session": c.cookies["evalwatch_session"]}, r.json()["csrf"])

    for role in ROLES:
        await log_in(role)
    failures = []
    checked = 0
    for method, path, route in route_keys(app):
        kind, allowed = policy_of(route)
        url = fill(path)
        for caller in CALLERS:
            cookies, csrf = sessions[caller]
            if method == "MOUNT":
                async with httpx.AsyncClient(base_url=f"http://{host}", cookies=cookies) as c:
                    r = await c.get(url + "/app.js")
                ok = r.status_code == 200
                checked += 1
                if not ok:
                    failures.append(f"{caller} GET {url}/app.js -> {r.status_code}")
                continue
            if method == "WS":
                code = await _ws_status(host, url, cookies)
                want_ok = caller in allowed
                got_ok = code == "open"
                checked += 1
                if want_ok != got_ok or (not got_ok and code != (4401 if caller == ANON else 4403)):
                    failures.append(f"{caller} WS {url} -> {code}")
                continue
            key = f"{method} {path}"
            headers = {"X-CSRF-Token": csrf} if csrf else {}
            async with httpx.AsyncClient(base_url=f"http://{host}", cookies=cookies, headers=headers) as c:
                r = await c.request(
                    method, url, params=QUERY if "{camera}" in path else None, json=BODIES.get(key)
                )
            checked += 1
            st = r.status_code
            if key == "POST /api/auth/logout" and st == 200:
                await log_in(caller)  # logout revoked that session on the server
            if st >= 500:
                failures.append(f"{caller} {key} -> {st} (server error)")
            elif kind == "agent":
                if st not in (401, 403):
                    failures.append(f"{caller} {key} (agent-only) -> {st}")
            elif caller in allowed:
                gate_refused = st in (401, 403) and _code(r) in GATE_CODES
                if gate_refused or (st == 303 and "/login" in r.headers.get("location", "")):
                    failures.append(f"{caller} {key} should be allowed -> {st} {r.text[:80]}")
            else:
                page = route.path in ("/", "/api/docs")
                expect = (303 if page else 401) if caller == ANON else 403
                if st != expect:
                    failures.append(f"{caller} {key} should be denied with {expect} -> {st}")
                elif st in (401, 403):
                    assert r.json()["code"] in ("err.not_logged_in", "err.forbidden"), r.text
    assert not failures, "\n".join(failures)
    assert checked >= len(EXPECTED) * len(CALLERS)
    # the agent route works with an agent credential and with nothing else
    async with httpx.AsyncClient(base_url=f"http://{host}") as c:
        r = await c.post("/api/ingest/heartbeat", headers={"Authorization": "Bearer agent-token-site1"})
        assert r.status_code == 200


GATE_CODES = ("err.not_logged_in", "err.forbidden", "err.csrf", "err.bad_origin")


def _code(r: httpx.Response) -> str | None:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return None


async def _ws_status(host: str, url: str, cookies: dict[str, str]) -> str | int:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    try:
        async with websockets.connect(f"ws://{host}{url}", additional_headers=headers) as ws:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 3))
            return "open" if msg.get("type") == "hello" else f"unexpected {msg}"
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else -1
