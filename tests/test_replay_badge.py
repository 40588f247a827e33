"""Finding 8 of issue #12: the replay verify badge.

It walked object storage alone from the first link: history rewritten consistently in object
storage (a segment, its link and every later link) still said OK, and each view fetched every
link since the camera's first (~1.5 M GETs at 180 days).  Now the window is checked against the
database's link hashes and those against the nearest closed session's seal; object storage is
read for the window only.  Real SeaweedFS, real DB and ``SegmentStore``, the real dashboard.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_sessions_support import archive, one_camera_session, users_cfg

from dashboard.app import create_app
from dashboard.services import Services
from sessions.lifecycle import close_session
from sessions.models import SessionHead
from sessions.signing import HubKey
from storage.chain import chain_key, compute_link_hash, link_bytes
from storage.models import Segment
from storage.objects import ObjectStore
from storage.segments import SegmentRecord, SegmentStore
from testkit.dashboard import ROLE_USERS, make_database, password_of

BASE = "http://testserver"
T0 = datetime(2026, 3, 5, 1, 0, tzinfo=UTC)
N = 60  # links in the chain; the window holds 3


class Counting(ObjectStore):
    """The real store, counting the S3 calls the badge makes."""

    gets = 0
    lists = 0

    async def get_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self.gets += 1
        return await super().get_bytes(bucket, key, offset, length)

    async def list(self, bucket: str, prefix: str = "") -> list[Any]:
        self.lists += 1
        return await super().list(bucket, prefix)


def _raw_put(objects: ObjectStore, bucket: str, key: str, data: bytes) -> None:
    """An attacker with the hub's S3 keys, bypassing evalwatch."""
    objects.client.put_object(bucket, key, io.BytesIO(data), len(data))


@pytest.mark.security
async def test_replay_badge_checks_the_db_links_and_the_seal_within_the_window(
    object_store: Any, s3_server: Any, unique_site: str, tmp_path: Path
) -> None:
    site = unique_site
    cfg = users_cfg(site, tmp_path, s3_server.cfg)
    bucket = cfg.storage.s3.bucket_segments
    db = make_database(tmp_path / "b.db")
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, bucket)
    await store.start()
    counting = Counting(s3_server.cfg)
    app = create_app(Services(cfg=cfg, db=db, objects=counting))
    try:
        key = HubKey.load_or_create(cfg.storage.data_dir)
        info = await one_camera_session(db, cfg, site, "ZB-BADGE-1", "徽章", T0)
        await archive(store, site, "r1", "cam1", T0, [(10, f"seg {i} ".encode() * 30) for i in range(N)])
        await store.wait_uploaded(60)
        await close_session(db, cfg, key, info.id, "sup", objects=object_store,
                            now=T0 + timedelta(seconds=10 * N + 1))
        # the window: segments seq 30..32 of 60
        w0 = T0 + timedelta(seconds=290)
        q = {"start": w0.isoformat(), "end": (w0 + timedelta(seconds=30)).isoformat()}
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
                r = await c.post("/api/auth/login", json={"username": ROLE_USERS["auditor"],
                                                          "password": password_of("auditor")})
                assert r.status_code == 200

                async def badge() -> dict[str, Any]:
                    counting.gets = counting.lists = 0
                    r = await c.get(f"/api/replay/{site}/r1/cam1/verify", params=q)
                    assert r.status_code == 200, r.text
                    return dict(r.json())

                b = await badge()
                assert b["ok"] is True and b["segments"] == 3, b
                assert any("ZB-BADGE-1" in n for n in b["notes"]), b
                # cost bounded by the window: one GET per link and per segment of the window
                # (the old walk fetched all 60 links up to the window and beyond)
                assert counting.gets == 2 * 3, counting.gets
                assert counting.lists <= 2, counting.lists

                # 1. an S3-write attacker rewrites history consistently from seq 31 on
                with db.session() as s:
                    rows = [SegmentRecord.model_validate(g) for g in s.scalars(
                        select(Segment).where(Segment.site == site).order_by(Segment.seq))]
                forged = b"forged footage " * 20
                import hashlib

                prev = rows[29].link_hash
                new_rows = []
                for rec in rows[30:]:
                    f = rec.link_fields()
                    f["prev_hash"] = prev
                    if rec.seq == 31:
                        f["sha256"], f["size"] = hashlib.sha256(forged).hexdigest(), len(forged)
                        _raw_put(object_store, bucket, rec.key, forged)
                    _raw_put(object_store, bucket, chain_key(site, "r1", "cam1", rec.seq), link_bytes(f))
                    prev = compute_link_hash(f)
                    new_rows.append((rec.seq, f, prev))
                b = await badge()
                assert b["ok"] is False and b["problem"] == "altered", b
                assert "differs from the hub's database" in b["message"] and "seq 31" in b["message"], b

                # 2. ... and with database write access rewrites the rows to match
                with db.session() as s, s.begin():
                    for seq, f, lh in new_rows:
                        g = s.scalars(select(Segment).where(Segment.site == site, Segment.seq == seq)).one()
                        g.sha256, g.size, g.prev_hash = f["sha256"], f["size"], f["prev_hash"]
                        g.link_hash = lh
                b = await badge()
                assert b["ok"] is False and b["problem"] == "altered", b
                assert "signed head seq 60" in b["message"] and "ZB-BADGE-1" in b["message"], b

                # 3. ... and re-signs the seal in the database with their own key
                mine = HubKey.generate()
                with db.session() as s, s.begin():
                    h = s.scalars(select(SessionHead).where(SessionHead.site == site)).one()
                    doc = json.loads(h.payload)
                    doc["head_hash"] = new_rows[-1][2]
                    from storage.chain import canonical_json

                    h.payload = canonical_json(doc)
                    h.signature = mine.sign(h.payload.encode("utf-8"))
                    h.head_hash = new_rows[-1][2]
                b = await badge()
                assert b["ok"] is False, b
                assert "does not verify against the hub's trusted keys" in b["message"], b
    finally:
        await store.stop()
        db.dispose()
