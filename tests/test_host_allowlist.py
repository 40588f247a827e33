"""Finding 12 of issue #12 (rest): a Host allow-list against DNS rebinding.

A page on ``evil.example`` re-points its name at the hub: the browser then sends ``Host:
evil.example`` with ``Origin: http://evil.example`` — same-origin by the Origin check.  The hub
now refuses every Host it does not own with a 400 JSON, for HTTP requests and WebSocket upgrades,
on a real uvicorn socket.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from config.models import EvalwatchConfig, HubConfig
from dashboard.app import create_app
from dashboard.hosts import HostAllowList, default_hosts
from dashboard.services import Services
from testkit.dashboard import ROLE_USERS, make_services, password_of, raw_request, serving, ws_upgrade

pytestmark = pytest.mark.security


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[str, Services]]:
    services = make_services(tmp_path)
    async with serving(create_app(services)) as addr:
        yield addr, services


async def test_forged_host_is_refused_on_http_and_websocket(hub: tuple[str, Services]) -> None:
    addr, _ = hub
    port = addr.split(":")[1]
    login = json.dumps({"username": ROLE_USERS["supervisor"], "password": password_of("supervisor")})
    # DNS rebinding: Host and Origin agree (the Origin check alone let this log in)
    async with httpx.AsyncClient(base_url=f"http://{addr}") as c:
        r = await c.post("/api/auth/login", content=login, headers={
            "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
            "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "err.bad_host" and "evil.example" in r.json()["detail"]
        assert "evalwatch_session" not in r.cookies
        r = await c.get("/healthz", headers={"Host": "evil.example"})
        assert r.status_code == 400 and r.json()["code"] == "err.bad_host"
        r = await c.get("/api/auth/me", headers={"Host": "127.0.0.1.evil.example"})
        assert r.status_code == 400
        # the agents' token API is exempt (no cookie to ride on): not a bad_host answer
        r = await c.post("/api/ingest/heartbeat", json={}, headers={"Host": "agent-alias.example"})
        assert r.status_code != 400 or r.json()["code"] != "err.bad_host", r.text
        # the hub's own names and any address still work
        for host in (addr, f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "10.9.8.7",
                     socket.gethostname()):
            r = await c.get("/healthz", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        r = await c.post("/api/auth/login", content=login,
                         headers={"Content-Type": "application/json", "Origin": f"http://{addr}"})
        assert r.status_code == 200, r.text
        cookie = f"evalwatch_session={r.cookies['evalwatch_session']}"
    status, body = await raw_request(addr, ws_upgrade(addr, "evil.example", cookie))
    assert status == 400 and body is not None and body["code"] == "err.bad_host", (status, body)
    status, _ = await raw_request(addr, ws_upgrade(addr, addr, cookie))
    assert status == 101  # the same upgrade by the hub's address is accepted


def test_allowed_hosts_config_and_matching(tmp_path: Path) -> None:
    d = default_hosts("127.0.0.1", "https://hub.example.org:8443/")
    assert {"localhost", "hub.example.org", socket.gethostname().lower()} <= set(d)
    explicit = HostAllowList(["hub.example.org", ".corp.example"])
    assert explicit.allows("hub.example.org") and explicit.allows("a.b.corp.example")
    assert explicit.allows("corp.example") and explicit.allows("192.0.2.1") and explicit.allows("::1")
    assert not explicit.allows("localhost") and not explicit.allows("evilcorp.example")
    assert not explicit.allows("hub.example.org.evil.example")
    assert HostAllowList(["*"]).allows("anything.example")
    assert HubConfig(allowed_hosts=["hub.example.org", ".corp.example", "*"]).allowed_hosts
    for bad in (["http://hub.example.org"], ["hub.example.org:8800"], ["a/b"], []):
        with pytest.raises(ValidationError, match="allowed_hosts"):
            EvalwatchConfig.model_validate({"hub": {"allowed_hosts": bad}})


async def test_configured_allowed_hosts_replace_the_derived_names(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    services.cfg.hub.allowed_hosts = ["hub.example.org"]
    app = create_app(services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.example.org") as c:
            assert (await c.get("/healthz")).status_code == 200
            r = await c.get("/healthz", headers={"Host": "localhost"})
            assert r.status_code == 400 and r.json()["code"] == "err.bad_host"
            assert (await c.get("/healthz", headers={"Host": "127.0.0.1:8800"})).status_code == 200
