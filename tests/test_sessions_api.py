"""The sessions HTTP API inside the real dashboard app (real SQLite DB, real S3 server)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from test_sessions_support import T0, archive, cfg_dict, spec_dict

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from sessions.evidence_verify import verify_evidence
from testkit.dashboard import ROLE_USERS, password_of

BASE = "http://testserver"


async def _login(app: Any, role: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


async def test_sessions_api(object_store, s3_server, unique_site: str, tmp_path: Path) -> None:
    from storage.db import Database
    from storage.segments import SegmentStore

    site = unique_site
    raw = cfg_dict(site, tmp_path, s3_server.cfg)
    raw["hub"] = {"secret_key": "test-secret-key-0123456789", "force_password_change": False}
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    cfg = EvalwatchConfig.model_validate(raw)
    db = Database(cfg.storage.database_url)
    db.upgrade()
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    app = create_app(Services(cfg=cfg, db=db, objects=object_store))
    async with app.router.lifespan_context(app):
        sup, obs, aud = [await _login(app, r) for r in ("supervisor", "observer", "auditor")]
        anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        assert (await anon.get("/api/sessions")).status_code == 401
        assert (await obs.post("/api/sessions", json=spec_dict(site))).status_code == 403
        r = await sup.post("/api/sessions", json=spec_dict(site, planned_end=T0.isoformat()))
        assert r.status_code == 422 and "planned_end must be after" in r.json()["detail"]
        r = await sup.post("/api/sessions", json=spec_dict(site))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert (await sup.get("/api/sessions/999")).status_code == 404
        assert (await obs.get(f"/api/sessions/{sid}")).json()["status"] == "scheduled"
        assert [s["id"] for s in (await obs.get("/api/sessions")).json()["sessions"]] == [sid]
        r = await sup.post(f"/api/sessions/{sid}/start")
        assert r.status_code == 200 and r.json()["status"] == "running"
        assert (await sup.post(f"/api/sessions/{sid}/start")).status_code == 409
        started = r.json()["started_at"]
        from datetime import datetime

        # one segment before the session, one overlapping its start
        t0 = datetime.fromisoformat(started) - timedelta(seconds=0.5)
        await archive(store, site, "r1", "cam1", t0, [(0.3, b"p" * 100), (0.21, b"q" * 100)])
        assert (await aud.post(f"/api/sessions/{sid}/close")).status_code == 403
        r = await sup.post(f"/api/sessions/{sid}/close")
        assert r.status_code == 200, r.text
        heads = {f"{h['site']}/{h['room']}/{h['camera']}": h for h in r.json()["heads"]}
        assert heads[f"{site}/r1/cam1"]["head_seq"] == 2

        r = await obs.get("/api/sessions/public-key")
        assert r.status_code == 200 and "BEGIN PUBLIC KEY" in r.text and len(r.headers["x-key-id"]) == 64
        assert (await obs.get(f"/api/sessions/{sid}/seal")).status_code == 403
        assert (await aud.get(f"/api/sessions/{sid}/seal")).json() == {
            "ok": True,
            "problems": [],
            "key_id": r.headers["x-key-id"],
        }
        r = await aud.get(f"/api/sessions/{sid}/report", params={"format": "pdf"})
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        r = await aud.get(f"/api/sessions/{sid}/report")
        assert r.status_code == 200 and "评标现场视频监督报告" in r.text
        assert (await sup.get(f"/api/sessions/{sid}/export")).status_code == 403
        r = await aud.get(f"/api/sessions/{sid}/export")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        z = tmp_path / "api.zip"
        z.write_bytes(r.content)
        res = verify_evidence(z, progress=False)
        assert res.ok and (res.segments, res.links) == (1, 1), res.message
        r = await aud.get(f"/api/sessions/{sid}/export", params={"camera": "x/y/z"})
        assert r.status_code == 422 and "not in session" in r.json()["detail"]
        for c in (sup, obs, aud, anon):
            await c.aclose()
    await store.stop()

    def actions(s):
        from storage.models import AuditLog

        return [(a.actor, a.action) for a in s.query(AuditLog).order_by(AuditLog.id)]

    log = await db.run(actions)
    for entry in [
        ("sup", "session_create"),
        ("sup", "session_start"),
        ("sup", "session_close"),
        ("aud", "session_report"),
        ("aud", "export"),
        ("obs", "session_view"),
        ("obs", "session_list"),
    ]:
        assert entry in log, entry
    db.dispose()
