"""Dashboard side of evaluation sessions: random seat assignment (``POST /api/seats/assign``) and
the camera-range evidence export (``GET /api/export/...``) verified by ``evalwatch verify``.

The export tests use the real SegmentStore on the shared SeaweedFS server (``object_store``).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_sessions_support import T0, archive, cfg_dict

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from sessions.signing import HubKey
from storage.models import AuditLog
from testkit.dashboard import ROLE_USERS, make_database, password_of

BASE = "http://testserver"
ROOT = Path(__file__).resolve().parent.parent


async def _login(app: Any, role: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def _cfg(site: str, tmp_path: Path, s3: Any = None) -> EvalwatchConfig:
    raw = cfg_dict(site, tmp_path, s3)
    raw["hub"] = {
        "secret_key": "test-secret-key-0123456789",
        "timezone": "Asia/Shanghai",
        "force_password_change": False,
    }
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    # a third room whose seats have no layout (row/col): random assignment must refuse it
    raw["sites"][0]["rooms"].append(
        {
            "id": "r3",
            "cameras": [{"id": "cam1", "source": "x.mp4"}],
            "seats": [{"id": "X1", "camera": "cam1", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]]}],
        }
    )
    return EvalwatchConfig.model_validate(raw)


@pytest.fixture
async def seat_app(tmp_path: Path) -> AsyncIterator[tuple[Any, Services]]:
    cfg = _cfg("s1", tmp_path)
    services = Services(
        cfg=cfg, db=make_database(tmp_path / "d.db"), objects=None
    )
    app = create_app(services)
    async with app.router.lifespan_context(app):
        yield app, services


def _audit(services: Services, action: str) -> list[AuditLog]:
    with services.db.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def _details(row: AuditLog) -> dict[str, Any]:
    assert row.details is not None
    return row.details


async def test_seat_assignment_feeds_session_creation(seat_app: tuple[Any, Services]) -> None:
    app, services = seat_app
    sup, obs, aud = [await _login(app, r) for r in ("supervisor", "observer", "auditor")]
    body = {
        "rooms": [{"site": "s1", "room": "r1"}, {"site": "s1", "room": "r2"}],
        "bids": [{"id": "B1", "experts": ["B1-1", "B1-2"]}, {"id": "B2", "experts": ["B2-1"]}],
    }
    for c in (obs, aud):
        assert (await c.post("/api/seats/assign", json=body)).status_code == 403
    r = await sup.post("/api/seats/assign", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out["seed"], int) and 0 <= out["seed"] < 2**53
    seats = {(a["room"], a["seat"]) for a in out["assignments"]}
    assert len(seats) == 3 and {a["expert"] for a in out["assignments"]} == {"B1-1", "B1-2", "B2-1"}
    b1_rooms = [a["room"] for a in out["assignments"] if a["bid"] == "B1"]
    assert sorted(b1_rooms) == ["s1/r1", "s1/r2"]  # experts of one bid in different rooms
    # the same seed reproduces the draw; the seed and the result are in the audit log
    again = (await sup.post("/api/seats/assign", json={**body, "seed": out["seed"]})).json()
    assert again["assignments"] == out["assignments"]
    rows = _audit(services, "seats_assign")
    assert [r.actor for r in rows] == ["sup", "sup"]
    assert _details(rows[0])["seed"] == out["seed"] and _details(rows[0])["assignments"] == out["assignments"]

    # the drawn seating becomes the session's seat list
    spec = {
        "code": "ZB-UI-1",
        "project": "测试项目",
        "bids": ["B1", "B2"],
        "planned_start": T0.isoformat(),
        "planned_end": (T0 + timedelta(hours=2)).isoformat(),
        "rooms": body["rooms"],
        "seating": {"seed": out["seed"], "assignments": out["assignments"]},
    }
    r = await sup.post("/api/sessions", json=spec)
    assert r.status_code == 201, r.text
    sess = r.json()
    assert sess["seating_seed"] == str(out["seed"])
    assert {(f"{x['site']}/{x['room']}", x["seat"], x["expert"]) for x in sess["seats"]} == {
        (a["room"], a["seat"], a["expert"]) for a in out["assignments"]
    }
    for c in (sup, obs, aud):
        await c.aclose()


async def test_seat_assignment_refusals_are_readable(seat_app: tuple[Any, Services]) -> None:
    app, services = seat_app
    sup = await _login(app, "supervisor")
    one_room = [{"site": "s1", "room": "r2"}]  # two seats at (0,0) and (0,2): capacity 2
    r = await sup.post(
        "/api/seats/assign", json={"rooms": one_room, "bids": [{"id": "B1", "experts": ["a", "b", "c"]}]}
    )
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "err.seating_infeasible" and body["specific"] is True
    assert "3 experts but only 2 non-adjacent seats" in body["detail"], body
    assert _details(_audit(services, "seats_assign_failed")[0])["reason"].startswith("3 experts")
    cases = [
        ({"rooms": [{"site": "s1", "room": "r3"}], "bids": [{"id": "B1", "experts": ["a"]}]}, "no row/col"),
        ({"rooms": [{"site": "s1", "room": "nope"}], "bids": [{"id": "B1", "experts": ["a"]}]}, "no room"),
        ({"rooms": one_room, "bids": [{"id": "B1", "experts": ["a", "a"]}]}, "listed twice"),
        ({"rooms": one_room + one_room, "bids": [{"id": "B1", "experts": ["a"]}]}, "listed twice"),
    ]
    for req, words in cases:
        r = await sup.post("/api/seats/assign", json=req)
        assert r.status_code == 422 and words in r.json()["detail"], (req, r.text)
    bad: object
    for bad in ({"rooms": [], "bids": []}, {"rooms": one_room, "bids": [{"id": "B1", "experts": []}]}, "x"):
        r = await sup.post("/api/seats/assign", json=bad)
        assert r.status_code == 422 and r.json()["code"] == "err.invalid_input", r.text
    r = await sup.post(
        "/api/seats/assign", json={"rooms": one_room, "bids": [{"id": "B1", "experts": ["a"]}], "seed": -1}
    )
    assert r.status_code == 422
    await sup.aclose()


async def test_me_tells_the_hub_timezone(seat_app: tuple[Any, Services]) -> None:
    app, _ = seat_app
    c = await _login(app, "observer")
    assert (await c.get("/api/auth/me")).json()["timezone"] == "Asia/Shanghai"
    await c.aclose()


# ------------------------------------------------------------------------------- export


def _verify_cli(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalwatch", "verify", str(path), "--no-progress", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _tampered(src: Path, dst: Path, name_part: str) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if name_part in item.filename and item.filename.startswith("segments/"):
                data = data[:-1] + bytes([data[-1] ^ 1])
                name_part = "\0"  # only the first one
            zout.writestr(item, data)
    return dst


async def test_camera_range_export_verifies_offline(
    object_store, s3_server, unique_site: str, tmp_path: Path
) -> None:
    from storage.segments import SegmentStore

    site = unique_site
    cfg = _cfg(site, tmp_path, s3_server.cfg)
    db = make_database(tmp_path / "e.db")
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    app = create_app(Services(cfg=cfg, db=db, objects=object_store))
    t0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    await archive(store, site, "r1", "cam1", t0, [(10, b"a" * 300), (10, b"b" * 300), (10, b"c" * 300)])
    q = {"start": (t0 + timedelta(seconds=12)).isoformat(), "end": (t0 + timedelta(seconds=40)).isoformat()}
    try:
        async with app.router.lifespan_context(app):
            aud, sup = await _login(app, "auditor"), await _login(app, "supervisor")
            assert (await sup.get(f"/api/export/{site}/r1/cam1", params=q)).status_code == 403
            r = await aud.get(f"/api/export/{site}/r1/cam1", params=q)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/zip"
            zpath = tmp_path / "range.zip"
            zpath.write_bytes(r.content)
            z = zipfile.ZipFile(io.BytesIO(r.content))
            manifest = json.loads(z.read("manifest.json"))
            assert manifest["format"] == "evalwatch-evidence" and manifest["anchor"] == "export"
            assert manifest["cameras"][0]["segments"] == [2, 3] and manifest["exported_by"] == "aud"
            hub_pem = tmp_path / "hub.pem"
            hub_pem.write_text(HubKey.load_or_create(cfg.storage.data_dir).public_pem())
            done = _verify_cli(zpath, "--key", str(hub_pem))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "OK evidence intact: 1 cameras, 2 chain links, 2 segments" in done.stdout
            bad = _verify_cli(_tampered(zpath, tmp_path / "bad.zip", "/"))
            assert bad.returncode == 1 and "PROBLEM altered" in bad.stdout, bad.stdout + bad.stderr

            # empty range: a reason, not an empty zip
            empty = {"start": (t0 - timedelta(minutes=9)).isoformat(), "end": t0.isoformat()}
            r = await aud.get(f"/api/export/{site}/r1/cam1", params=empty)
            assert r.status_code == 422 and r.json()["code"] == "err.no_footage"

            # once a closed session has sealed the camera, the export carries that seal
            spec = {
                "code": "ZB-EXP-1",
                "project": "导出测试",
                "bids": ["B1"],
                "planned_start": t0.isoformat(),
                "planned_end": (t0 + timedelta(hours=1)).isoformat(),
                "rooms": [{"site": site, "room": "r1", "cameras": ["cam1"]}],
            }
            sid = (await sup.post("/api/sessions", json=spec)).json()["id"]
            started = (await sup.post(f"/api/sessions/{sid}/start")).json()["started_at"]
            t1 = datetime.fromisoformat(started)
            await archive(store, site, "r1", "cam1", t1, [(0.2, b"d" * 300), (0.2, b"e" * 300)])
            assert (await sup.post(f"/api/sessions/{sid}/close")).status_code == 200
            q2 = {
                "start": (t1 - timedelta(seconds=1)).isoformat(),
                "end": (t1 + timedelta(seconds=1)).isoformat(),
            }
            r = await aud.get(f"/api/export/{site}/r1/cam1", params=q2)
            assert r.status_code == 200, r.text
            zpath2 = tmp_path / "sealed.zip"
            zpath2.write_bytes(r.content)
            manifest = json.loads(zipfile.ZipFile(zpath2).read("manifest.json"))
            assert manifest["anchor"] == "session" and manifest["session"]["id"] == sid
            done = _verify_cli(zpath2, "--key", str(hub_pem))
            assert done.returncode == 0, done.stdout + done.stderr
            r = await aud.get(f"/api/sessions/{sid}/report", params={"format": "html", "lang": "zh"})
            assert r.status_code == 200 and "ZB-EXP-1" in r.text, r.text[:300]
            for c in (aud, sup):
                await c.aclose()
        rows = await db.run(
            lambda s: list(
                s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id))
            )
        )
        assert [(a.actor, a.details["anchor"]) for a in rows] == [("aud", "export"), ("aud", "session")]
    finally:
        await store.stop()
        db.dispose()
