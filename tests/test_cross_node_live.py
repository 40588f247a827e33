"""The live view across hub nodes (issue #14): two dashboards on one PostgreSQL database, node B
ingesting every site (it holds the leases, its recorder has the cameras), node A none.

* A browser of node A asks for a wall tile's ``thumb.jpg``: A asks B (the holder) and passes
  B's JPEG on; B audits the viewing (once).
* A live stream a browser of A opened (the offer forwarded to B, the video from B) is closed by
  B as soon as the user logs out on A — told over the nodes' PostgreSQL channel — and so is one
  of a user who changed their password on A (every session of the user revoked).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from analysis.bus import EventBus
from dashboard.app import create_app
from dashboard.notify import EventRelay
from dashboard.services import Services
from storage.db import Database
from storage.leases import LeaseManager
from storage.models import AuditLog
from testkit.dashboard import FakeRecorder, MemoryObjects, make_config, open_live_view, password_of, serving

pytestmark = [pytest.mark.postgres]

CAM = ("site1", "room1", "cam1")


@dataclass
class Node:
    url: str
    app: Any
    services: Services


@pytest.fixture
async def nodes(db_url: str) -> AsyncIterator[dict[str, Node]]:
    Database(db_url).upgrade()
    out: dict[str, Node] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in ("b", "a"):
            cfg = make_config(node_id=f"node-{name}")
            db = Database(db_url)
            stack.callback(db.dispose)
            rec = FakeRecorder(cfg)
            if name == "a":
                rec.statuses.clear()  # A ingests nothing: no track, no picture of its own
            relay = EventRelay.for_config(cfg, db, backoff_min_s=0.1, backoff_max_s=1.0, ping_s=2.0)
            services = Services(cfg=cfg, db=db, objects=MemoryObjects(cfg.storage.s3), bus=EventBus(),
                                recorder=rec, relay=relay)
            app = create_app(services)
            addr = await stack.enter_async_context(serving(app))
            url = f"http://{addr}"
            leases = LeaseManager(db, f"node-{name}", url, [s.id for s in cfg.sites] if name == "b" else [],
                                  ttl_s=120, renew_s=30)
            if name == "b":
                assert set(await leases.renew()) == {s.id for s in cfg.sites}  # B holds every site
            services.leases = leases
            out[name] = Node(url, app, services)
        yield out


async def _login(c: httpx.AsyncClient, user: str = "sup", password: str | None = None) -> str:
    pw = password or password_of("supervisor")
    r = await c.post("/api/auth/login", json={"username": user, "password": pw})
    assert r.status_code == 200, r.text
    csrf = str(r.json()["csrf"])
    c.headers["X-CSRF-Token"] = csrf
    return csrf


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_thumbnail_of_a_camera_another_node_holds(nodes: dict[str, Node], db_url: str) -> None:
    site, room, cam = CAM
    async with httpx.AsyncClient(base_url=nodes["a"].url, timeout=20) as c:
        await _login(c)
        deadline = time.monotonic() + 20
        while True:  # the holder starts its thumbnail track on the first request
            r = await c.get(f"/api/live/{site}/{room}/{cam}/thumb.jpg")
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            assert r.status_code == 409, r.text
            await asyncio.sleep(0.2)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        etag = r.headers["etag"]
        assert float(r.headers["x-frame-age"]) < 3
        r2 = await c.get(f"/api/live/{site}/{room}/{cam}/thumb.jpg", headers={"If-None-Match": etag})
        assert r2.status_code in (200, 304), r2.text
        if r2.status_code == 304:
            assert r2.headers["etag"] == etag and not r2.content
        else:
            assert r2.headers["etag"] != etag
        # An unknown camera is still A's own 404.
        r = await c.get(f"/api/live/{site}/{room}/nope/thumb.jpg")
        assert r.status_code == 404 and r.json()["code"] == "err.unknown_camera"
    # The viewing is audited once, by the node that served the picture.
    with nodes["a"].services.db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "live_view",
                                                     AuditLog.target == "/".join(CAM))))
    assert len(rows) == 1 and rows[0].actor == "sup" and (rows[0].details or {}).get("quality") == "thumb"


async def _watch_via_a(c: httpx.AsyncClient) -> Any:
    """Open a live stream of ``CAM`` on node A (served by B); the peer connection once a frame
    arrived."""
    site, room, cam = CAM
    pc, _took = await open_live_view(c, f"/api/live/{site}/{room}/{cam}/offer")
    return pc


async def _until(pred: Any, what: str, within: float = 20) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < within, what
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_logout_on_one_node_closes_the_stream_another_serves(nodes: dict[str, Node]) -> None:
    live_b = nodes["b"].app.state.dash.live
    live_a = nodes["a"].app.state.dash.live

    def streams_of_sup() -> int:
        return sum(1 for v in live_b.sessions if v.username == "sup")

    async with httpx.AsyncClient(base_url=nodes["a"].url, timeout=30) as c:
        await _login(c)
        pc = await _watch_via_a(c)
        try:
            assert streams_of_sup() == 1 and not live_a.sessions  # served by B, not A
            r = await c.post("/api/auth/logout")
            assert r.status_code == 200, r.text
            await _until(lambda: streams_of_sup() == 0, "B closes the stream of the session logged out on A")
            await _until(lambda: pc.connectionState in ("closed", "failed", "disconnected"),
                         "the browser's connection ends", 30)
        finally:
            await pc.close()

    # Every session of a user revoked on A (password change) closes what B serves them.
    new_pw = "sup-new-password-42"
    async with httpx.AsyncClient(base_url=nodes["a"].url, timeout=30) as watcher, \
            httpx.AsyncClient(base_url=nodes["a"].url, timeout=30) as other:
        await _login(watcher)
        await _login(other)
        pc = await _watch_via_a(watcher)
        try:
            assert streams_of_sup() == 1
            r = await other.post("/api/auth/password",
                                 json={"old_password": password_of("supervisor"), "new_password": new_pw})
            assert r.status_code == 200, r.text
            await _until(lambda: streams_of_sup() == 0, "B closes the stream (password changed)")
        finally:
            await pc.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_revocation_missed_while_the_channel_was_down_is_caught_up(
    nodes: dict[str, Node], db_url: str
) -> None:
    """B's listener was down when the session was revoked (the notification is lost): once it
    listens again, B asks the database about the sessions it serves streams for and closes the
    revoked one's."""
    import psycopg

    from storage.models import LoginSession
    from storage.pgnotify import pg_conninfo

    live_b = nodes["b"].app.state.dash.live
    relay_b = nodes["b"].services.relay
    assert relay_b is not None
    async with httpx.AsyncClient(base_url=nodes["a"].url, timeout=30) as c:
        await _login(c)
        pc = await _watch_via_a(c)
        try:
            assert sum(1 for v in live_b.sessions if v.username == "sup") == 1
            # Revoked behind the nodes' back (no notification at all), then B's listener drops.
            with nodes["a"].services.db.session() as s:
                for row in s.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None))):
                    row.revoked_at = row.created_at
                s.commit()
            await asyncio.sleep(1.0)
            assert sum(1 for v in live_b.sessions if v.username == "sup") == 1  # nothing told B yet
            pid = relay_b.channel.listener_pid
            conninfo = pg_conninfo(db_url) or ""
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await _until(lambda: relay_b.channel.reconnects >= 1, "B's listener reconnects")
            await _until(lambda: not any(v.username == "sup" for v in live_b.sessions),
                         "B closes the stream of the session revoked meanwhile")
        finally:
            await pc.close()
