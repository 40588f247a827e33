"""Finding 13 of issue #12: caps per user and on exports, segment fetches audited, observers
never see expert names.

* ``hub.max_ws_per_user`` / ``hub.max_live_per_user``: one alert WebSocket or live stream more
  than the cap is a 429 ``err.too_many_connections`` naming the cap (a real uvicorn socket for
  the WebSocket, real aiortc offers for the streams);
* ``storage.export_max_bytes``: an export whose footage (real segments in real SeaweedFS) exceeds
  it is a 413 ``err.export_too_large`` before anything is written, camera-range and session;
* ``GET /api/segments/{id}/video`` (a fetch by id, outside the replay view's audited index) is
  audited ``segment_view``, once per user and segment and viewing;
* observers: every surface they can reach (sessions, alerts REST and WebSocket, expert register,
  credit records and their export) carries expert codes, never names; reports, evidence exports
  and the signed credit feed are refused to them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select
from test_sessions_support import archive, cfg_dict

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.models import AuditLog, Segment
from storage.segments import SegmentStore
from testkit.dashboard import (
    ROLE_USERS,
    add_event,
    make_config,
    make_database,
    make_services,
    password_of,
    raw_request,
    serving,
    ws_upgrade,
)

pytestmark = pytest.mark.security
BASE = "http://testserver"


async def _login(c: httpx.AsyncClient, role: str) -> None:
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[tuple[str, Services]]:
    services = make_services(tmp_path, cfg=make_config(max_ws_per_user=2, max_live_per_user=1))
    async with serving(create_app(services)) as addr:
        yield addr, services


async def test_websockets_and_live_streams_per_user_are_capped(capped: tuple[str, Services]) -> None:
    from aiortc import RTCPeerConnection

    addr, _ = capped
    cookies = {}
    for role in ("observer", "supervisor"):
        async with httpx.AsyncClient(base_url=f"http://{addr}") as c:
            await _login(c, role)
            cookies[role] = f"evalwatch_session={c.cookies['evalwatch_session']}"
    hdr = {"Cookie": cookies["observer"]}
    async with websockets.connect(f"ws://{addr}/ws/events", additional_headers=hdr) as w1:
        assert json.loads(await w1.recv())["type"] == "hello"
        async with websockets.connect(f"ws://{addr}/ws/events", additional_headers=hdr) as w2:
            assert json.loads(await w2.recv())["type"] == "hello"
            status, body = await raw_request(addr, ws_upgrade(addr, addr, cookies["observer"]))
            assert status == 429 and body is not None, (status, body)
            assert body["code"] == "err.too_many_connections" and "hub.max_ws_per_user = 2" in body["detail"]
            # another user is not affected
            async with websockets.connect(f"ws://{addr}/ws/events",
                                          additional_headers={"Cookie": cookies["supervisor"]}) as w3:
                assert json.loads(await w3.recv())["type"] == "hello"
        # one closed: a new one is accepted again
        for _ in range(50):
            if (await raw_request(addr, ws_upgrade(addr, addr, cookies["observer"])))[0] == 101:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("a closed socket was never given back to its user")

    pcs = [RTCPeerConnection() for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=f"http://{addr}") as c:
            await _login(c, "observer")
            answers = []
            for pc in pcs:
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                answers.append(await c.post("/api/live/site1/room1/cam1/offer", json={
                    "sdp": pc.localDescription.sdp, "type": "offer", "quality": "full"}))
            assert answers[0].status_code == 200, answers[0].text
            assert answers[1].status_code == 429, answers[1].text
            assert answers[1].json()["code"] == "err.too_many_connections"
            assert "hub.max_live_per_user = 1" in answers[1].json()["detail"]
    finally:
        for pc in pcs:
            await pc.close()


def _cfg(site: str, tmp_path: Path, s3: Any, **storage: Any) -> EvalwatchConfig:
    raw = cfg_dict(site, tmp_path, s3)
    raw["hub"] = {"secret_key": "test-secret-key-0123456789", "force_password_change": False}
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    raw["storage"].update(storage)
    return EvalwatchConfig.model_validate(raw)


async def test_exports_past_the_size_cap_are_413_and_segment_fetches_are_audited(
    object_store: Any, s3_server: Any, unique_site: str, tmp_path: Path
) -> None:
    site = unique_site
    t0 = datetime(2026, 3, 7, 1, 0, tzinfo=UTC)
    cfg = _cfg(site, tmp_path, s3_server.cfg, export_max_bytes=1_000_000)
    db = make_database(tmp_path / "x.db")
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    spec = {"code": "ZB-CAP-1", "project": "上限", "bids": ["B1"], "planned_start": t0.isoformat(),
            "planned_end": (t0 + timedelta(hours=1)).isoformat(),
            "rooms": [{"site": site, "room": "r1", "cameras": ["cam1"]}]}
    try:
        info = await create_session(db, cfg, parse_spec(spec), "sup")
        await start_session(db, info.id, "sup", now=t0)
        await archive(store, site, "r1", "cam1", t0, [(10, os.urandom(400_000)) for _ in range(3)])
        await close_session(db, cfg, HubKey.load_or_create(cfg.storage.data_dir), info.id, "sup",
                            objects=object_store, now=t0 + timedelta(seconds=31))
        q = {"start": t0.isoformat(), "end": (t0 + timedelta(seconds=30)).isoformat()}
        for limit, expect in ((1_000_000, 413), (2_000_000, 200)):
            cfg.storage.export_max_bytes = limit
            app = create_app(Services(cfg=cfg, db=db, objects=object_store))
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
                    await _login(c, "auditor")
                    exports: tuple[tuple[str, dict[str, str]], ...] = (
                        (f"/api/export/{site}/r1/cam1", q), (f"/api/sessions/{info.id}/export", {})
                    )
                    for url, params in exports:
                        r = await c.get(url, params=params)
                        assert r.status_code == expect, (url, r.status_code, r.text[:300])
                        if expect == 413:
                            assert r.json()["code"] == "err.export_too_large"
                            assert "storage.export_max_bytes (1000000)" in r.json()["detail"]
                            assert "1200000 bytes" in r.json()["detail"]
                        else:
                            assert r.content[:2] == b"PK"
                    if expect == 200:
                        # a segment fetched by id is audited, once per viewing (range requests)
                        with db.session() as s:
                            sid = s.scalars(select(Segment.id).where(Segment.site == site,
                                                                     Segment.seq == 2)).one()
                        for rng in ("bytes=0-", "bytes=1000-1999", None):
                            hdr = {"Range": rng} if rng else {}
                            r = await c.get(f"/api/segments/{sid}/video", headers=hdr)
                            assert r.status_code in (200, 206)
                        with db.session() as s:
                            rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "segment_view")))
                        assert len(rows) == 1 and rows[0].actor == ROLE_USERS["auditor"], rows
                        assert rows[0].target == f"{site}/r1/cam1" and rows[0].details["segment_id"] == sid
                        app.state.dash.segment_audit.clear()  # as after SEGMENT_AUDIT_GAP
                        assert (await c.get(f"/api/segments/{sid}/video")).status_code == 200
                        with db.session() as s:
                            rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "segment_view")))
                            n = len(rows)
                        assert n == 2
    finally:
        await store.stop()
        db.dispose()


async def test_observers_never_receive_expert_names_on_any_surface(tmp_path: Path) -> None:
    """Every GET route an observer may call (walked from the app's own routes), the alert
    WebSocket on a real socket, and the XLSX credit export (compressed: parsed) carry no expert
    name; reports, evidence exports, photos and the signed credit feed are refused (403)."""
    services = make_services(tmp_path, cfg=make_config(sites=1, rooms=2))
    app = create_app(services)
    async with serving(app) as addr:
        await _no_names_for_observers(app, services, addr)


async def _no_names_for_observers(app: Any, services: Services, addr: str) -> None:
    import io

    import openpyxl
    from fastapi.routing import APIRoute

    from dashboard.policy import iter_routes

    names = ("张三丰", "王五郎")
    clients = {}
    for role in ("admin", "supervisor", "observer"):
        clients[role] = httpx.AsyncClient(base_url=f"http://{addr}", timeout=30)
        await _login(clients[role], role)
    admin, sup, obs = clients["admin"], clients["supervisor"], clients["observer"]
    r = await admin.post("/api/experts", json={"code": "E0001", "name": names[0], "phone": "13800000001"})
    assert r.status_code == 201, r.text
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    r = await sup.post("/api/sessions", json={
        "code": "ZB-OBS-1", "project": "观察", "bids": ["B1"], "planned_start": t0.isoformat(),
        "planned_end": (t0 + timedelta(hours=2)).isoformat(),
        "rooms": [{"site": "site1", "room": "room1"}, {"site": "site1", "room": "room2"}],
        "seats": [{"expert_code": "E0001", "bid": "B1", "room": "site1/room1", "seat": "s1"},
                  {"expert": names[1], "bid": "B1", "room": "site1/room2", "seat": "s1"}]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert (await sup.post(f"/api/sessions/{sid}/start")).status_code == 200
    eid = add_event(services.db)
    eid2 = add_event(services.db, room="room2")
    judge = {"decision": "violation", "category": "使用手机"}
    r = await sup.post(f"/api/events/{eid}/credit", json=judge)
    assert r.status_code == 200 and r.json()["expert_name"] == names[0], r.text
    rid = r.json()["id"]
    # the names are there for a supervisor (so the observer checks below can fail)
    assert names[0] in (await sup.get(f"/api/events/{eid}")).text
    assert names[1] in (await sup.get(f"/api/events/{eid2}")).text
    assert names[1] in (await sup.get(f"/api/sessions/{sid}")).text

    params = {"session_id": sid, "event_id": eid, "code": "E0001", "record_id": rid, "site": "site1",
              "room": "room1", "camera": "cam1", "lang": "en", "segment_id": 1, "username": "obs"}
    query = {"/api/credit/export": {"format": "csv"}, "/api/replay/{site}/{room}/{camera}": {
        "start": t0.isoformat(), "end": (t0 + timedelta(hours=1)).isoformat()},
        "/api/export/{site}/{room}/{camera}": {"start": t0.isoformat(),
                                              "end": (t0 + timedelta(minutes=10)).isoformat()},
        "/api/replay/{site}/{room}/{camera}/verify": {"start": t0.isoformat(),
                                                     "end": (t0 + timedelta(hours=1)).isoformat()}}
    seen, refused = [], []
    for route, orig in iter_routes(app.routes):
        if not isinstance(orig, APIRoute) or "GET" not in (getattr(route, "methods", None) or ()):
            continue
        url = route.path.format(**{k: v for k, v in params.items() if "{" + k + "}" in route.path})
        if route.path in ("/api/live/{site}/{room}/{camera}/thumb.jpg", "/api/live/thumbs"):
            continue  # live camera pictures (they wait for frames); no text in them
        r = await obs.get(url, params=query.get(route.path, {}))
        assert r.status_code < 500, (route.path, r.status_code, r.text[:200])
        if r.status_code == 403:
            refused.append(route.path)
            continue
        seen.append(route.path)
        text = r.content.decode("utf-8", "replace")
        for n in names:
            assert n not in text, (route.path, n)
    assert {"/api/sessions", "/api/sessions/{session_id}", "/api/events", "/api/events/{event_id}",
            "/api/experts", "/api/experts/{code}", "/api/credit", "/api/credit/{record_id}",
            "/api/credit/export"} <= set(seen), seen
    assert {"/api/sessions/{session_id}/report", "/api/sessions/{session_id}/export",
            "/api/export/{site}/{room}/{camera}", "/api/credit/feed",
            "/api/experts/{code}/photo", "/api/audit"} <= set(refused), refused
    r = await obs.get("/api/credit/export", params={"format": "xlsx"})
    assert r.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    cells = [str(c.value) for row in sheet.iter_rows() for c in row]
    assert "E0001" in cells and not any(n in c for c in cells for n in names)

    # the alert WebSocket: the live update names the expert for a supervisor, not an observer
    got = {}
    for role in ("observer", "supervisor"):
        cookie = f"evalwatch_session={clients[role].cookies['evalwatch_session']}"
        got[role] = await websockets.connect(f"ws://{addr}/ws/events",
                                             additional_headers={"Cookie": cookie})
        assert json.loads(await got[role].recv())["type"] == "hello"
    r = await sup.post(f"/api/events/{eid}/ack")
    assert r.status_code == 200, r.text
    msgs = {}
    for role, ws in got.items():
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if m.get("type") == "event":
                msgs[role] = m
                break
        await ws.close()
    assert msgs["supervisor"]["event"].get("expert_name") == names[0], msgs
    assert msgs["observer"]["event"]["expert_code"] == "E0001"
    assert not any(n in json.dumps(msgs["observer"], ensure_ascii=False) for n in names)
    for c in clients.values():
        await c.aclose()
