"""Both evidence exports of the dashboard after the hub's key changed (real SeaweedFS, real DB,
real ``SegmentStore``, the real key file replaced on disk).

A session sealed with key A and exported after the hub moved to key B must still verify offline:
the heads against A (``public_key.pem``), the manifest against B (``export_public_key.pem``).
The camera-range export (``GET /api/export/...``) keeps the session's seal as its anchor.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from test_sessions_support import archive, cfg_dict

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from evalwatch.verify import verify_zip
from sessions import evidence_verify as ev
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import KEY_FILE, HubKey
from testkit.dashboard import ROLE_USERS, make_database, password_of

BASE = "http://testserver"


async def _login(app: Any, role: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def _cfg(site: str, tmp_path: Path, s3: Any) -> EvalwatchConfig:
    raw = cfg_dict(site, tmp_path, s3)
    raw["hub"] = {
        "secret_key": "test-secret-key-0123456789",
        "timezone": "Asia/Shanghai",
        "force_password_change": False,
    }
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    return EvalwatchConfig.model_validate(raw)


def _zip(tmp_path: Path, name: str, content: bytes) -> tuple[Path, dict[str, Any], set[str]]:
    path = tmp_path / name
    path.write_bytes(content)
    with zipfile.ZipFile(path) as z:
        return path, json.loads(z.read("manifest.json")), set(z.namelist())


async def test_exports_verify_after_hub_key_change(
    object_store: Any, s3_server: Any, unique_site: str, tmp_path: Path
) -> None:
    from storage.segments import SegmentStore

    site = unique_site
    cfg = _cfg(site, tmp_path, s3_server.cfg)
    db = make_database(tmp_path / "k.db")
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    app = create_app(Services(cfg=cfg, db=db, objects=object_store))
    t0 = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    spec = {
        "code": "ZB-ROT-1",
        "project": "密钥轮换",
        "bids": ["B1"],
        "planned_start": t0.isoformat(),
        "planned_end": (t0 + timedelta(hours=1)).isoformat(),
        "rooms": [{"site": site, "room": "r1", "cameras": ["cam1"]}],
    }
    try:
        # sealed with key A (the hub's key file at the time)
        key_a = HubKey.load_or_create(cfg.storage.data_dir)
        info = await create_session(db, cfg, parse_spec(spec), "sup")
        await start_session(db, info.id, "sup", now=t0)
        await archive(store, site, "r1", "cam1", t0, [(10, b"a" * 300), (10, b"b" * 300), (10, b"c" * 300)])
        await close_session(
            db, cfg, key_a, info.id, "sup", objects=object_store, now=t0 + timedelta(minutes=1)
        )

        # the key file is lost and replaced: the hub now signs with key B
        (Path(cfg.storage.data_dir) / "keys" / KEY_FILE).unlink()
        key_b = HubKey.load_or_create(cfg.storage.data_dir)
        assert key_b.key_id != key_a.key_id
        # the retired key stays trusted through the hub's key directory (never through the DB)
        (Path(cfg.storage.data_dir) / "keys" / "trusted").mkdir()
        (Path(cfg.storage.data_dir) / "keys" / "trusted" / "a.pem").write_text(key_a.public_pem())
        pins = []
        for k, name in ((key_a, "a.pem"), (key_b, "b.pem")):
            (tmp_path / name).write_text(k.public_pem())
            pins += ["--key", str(tmp_path / name)]

        async with app.router.lifespan_context(app):
            aud = await _login(app, "auditor")
            r = await aud.get(f"/api/sessions/{info.id}/export")
            assert r.status_code == 200, r.text
            spath, manifest, names = _zip(tmp_path, "session.zip", r.content)
            q = {
                "start": (t0 + timedelta(seconds=5)).isoformat(),
                "end": (t0 + timedelta(seconds=15)).isoformat(),
            }
            r = await aud.get(f"/api/export/{site}/r1/cam1", params=q)
            assert r.status_code == 200, r.text
            cpath, cmanifest, cnames = _zip(tmp_path, "range.zip", r.content)
            await aud.aclose()

        for path, m, n in ((spath, manifest, names), (cpath, cmanifest, cnames)):
            assert {"public_key.pem", "export_public_key.pem"} <= n
            assert (m["seal_key_id"], m["key_id"]) == (key_a.key_id, key_b.key_id)
            res = ev.verify_evidence(path, progress=False)
            assert res.ok, (path.name, res.message)
            assert (res.seal_key_id, res.key_id) == (key_a.key_id, key_b.key_id)
            assert verify_zip(str(path), [*pins, "--no-progress"]) == 0
            assert verify_zip(str(path), [*pins[2:], "--no-progress"]) == 1  # only B pinned
        # the camera range is still anchored by the session's seal (signed at close with A)
        assert cmanifest["anchor"] == "session" and cmanifest["session"]["id"] == info.id
        assert cmanifest["cameras"][0]["segments"] == [1, 2]
        assert cmanifest["cameras"][0]["head_seq"] == 3
    finally:
        await store.stop()
        db.dispose()
