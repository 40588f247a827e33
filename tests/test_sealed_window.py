"""Finding 4 of issue #12: footage cannot be added to a sealed session window after its seal.

Real SeaweedFS, real DB, real ``SegmentStore`` (with the hub's guard), the real dashboard: a
segment overlapping a closed session's window by 1 ms is refused and audited; one added around
the guard (a hub without it, a database write) makes the replay badge NOT OK and the camera-range
export refuse; the ingest API answers 409 naming the session and checks the declared duration
against the media.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_sessions_support import archive, one_camera_session, users_cfg

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from sessions.lifecycle import close_session
from sessions.sealed import sealed_conflict
from sessions.signing import HubKey
from storage.models import AuditLog
from storage.segments import SegmentMeta, SegmentRefused, SegmentStore
from testkit.dashboard import ROLE_USERS, make_database, password_of

BASE = "http://testserver"
T0 = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)


@pytest.mark.security
async def test_footage_cannot_be_added_to_a_sealed_window(
    object_store: Any, s3_server: Any, unique_site: str, tmp_path: Path
) -> None:
    """Finding 4 of #12: a segment overlapping a sealed window by 1 ms was archived, the replay
    badge said OK and a camera-range export signed it.  Now the store refuses it (audited
    ``segment_refused``); one that got in around the guard turns the badge NOT OK (``inserted``)
    and the export is refused (409)."""
    site = unique_site
    cfg = users_cfg(site, tmp_path, s3_server.cfg)
    db = make_database(tmp_path / "w.db")
    store = SegmentStore(
        object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments, guard=sealed_conflict
    )
    bare = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    app = create_app(Services(cfg=cfg, db=db, objects=object_store))
    try:
        key = HubKey.load_or_create(cfg.storage.data_dir)
        info = await one_camera_session(db, cfg, site, "ZB-SEAL-1", "补录", T0)
        await archive(store, site, "r1", "cam1", T0, [(10, b"a" * 300), (10, b"b" * 300)])
        closed = T0 + timedelta(seconds=30)
        await close_session(db, cfg, key, info.id, "sup", objects=object_store, now=closed)

        late = SegmentMeta(site=site, room="r1", camera="cam1",
                           start=closed - timedelta(milliseconds=1), end=closed + timedelta(seconds=9))
        with pytest.raises(SegmentRefused, match="sealed window of session ZB-SEAL-1"):
            await store.put(late, b"x" * 300)
        # a retry of sealed footage is still the idempotent no-op, after the window is fine
        await store.put(SegmentMeta(site=site, room="r1", camera="cam1", start=T0,
                                    end=T0 + timedelta(seconds=10)), b"a" * 300)
        await archive(store, site, "r1", "cam1", closed, [(10, b"c" * 300)])
        with db.session() as s:
            rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "segment_refused")))
        assert len(rows) == 1 and rows[0].actor == f"agent:{site}"
        assert "ZB-SEAL-1" in str(rows[0].details)

        # around the guard (no guard in this store): in the DB and S3, chained like any other
        gap = SegmentMeta(site=site, room="r1", camera="cam1",
                          start=T0 + timedelta(seconds=20), end=T0 + timedelta(seconds=25), source="backfill")
        await bare.put(gap, b"d" * 300)
        await bare.wait_uploaded(30)
        q = {"start": T0.isoformat(), "end": (T0 + timedelta(minutes=1)).isoformat()}
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
                r = await c.post("/api/auth/login", json={"username": ROLE_USERS["auditor"],
                                                          "password": password_of("auditor")})
                assert r.status_code == 200
                r = await c.get(f"/api/replay/{site}/r1/cam1/verify", params=q)
                assert r.status_code == 200, r.text
                badge = r.json()
                assert badge["ok"] is False and badge["problem"] == "inserted", badge
                assert "ZB-SEAL-1" in badge["message"] and "added after the seal" in badge["message"]
                r = await c.get(f"/api/export/{site}/r1/cam1", params=q)
                assert r.status_code == 409 and "added after the seal" in r.json()["detail"], r.text
                # a range outside the sealed window is not affected
                q2 = {"start": (closed + timedelta(seconds=1)).isoformat(),
                      "end": (closed + timedelta(seconds=9)).isoformat()}
                r = await c.get(f"/api/replay/{site}/r1/cam1/verify", params=q2)
                assert r.json()["ok"] is True, r.text
    finally:
        await store.stop()
        await bare.stop()
        db.dispose()


@pytest.mark.security
async def test_ingest_refuses_sealed_overlap_and_a_wrong_declared_duration(tmp_path: Path) -> None:
    """Finding 4 of #12 at the agents' API: the sealed-window refusal is a 409 naming the session
    (not a 503), and the declared duration must match the media's (a 2 s clip declared as 10 s
    is a 400 saying both)."""

    from capture.ingest import make_router
    from testkit.capture import make_clip
    from testkit.dashboard import make_services

    class Rec:
        def known(self, ref: Any) -> bool:
            return True

        def note_segment(self, *a: Any) -> None:
            pass

    class Store:
        async def put(self, meta: SegmentMeta, data: bytes) -> Any:
            if meta.start.second == 0:
                raise SegmentRefused("segment ... overlaps the sealed window of session ZB-9")
            return None

        async def missing_ranges(self, *a: Any, **k: Any) -> list[Any]:
            return []

    from pydantic import SecretStr

    services = make_services(tmp_path)
    services.cfg.sites[0].agent_token = SecretStr("agent-token-site1-0123456789")
    services.extra_routers = [make_router(Rec(), Store(), services.cfg)]  # type: ignore[arg-type]
    clip = make_clip(tmp_path / "c.mp4", seconds=2.0, width=64, height=48, fps=10).read_bytes()
    import hashlib

    headers = {"Authorization": "Bearer agent-token-site1-0123456789",
               "X-Content-SHA256": hashlib.sha256(clip).hexdigest()}
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def url(start: datetime, seconds: float) -> str:
        end = start + timedelta(seconds=seconds)
        return (f"/api/ingest/segments/site1/room1/cam1?start={start.isoformat().replace('+00:00', 'Z')}"
                f"&end={end.isoformat().replace('+00:00', 'Z')}")

    a = create_app(services)
    async with a.router.lifespan_context(a), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=a), base_url=BASE
    ) as c:
        r = await c.put(url(now.replace(second=5), 10), content=clip, headers=headers)
        assert r.status_code == 400, r.text
        assert "declares 10.00s" in r.json()["detail"] and "lasts 2.00s" in r.json()["detail"]
        r = await c.put(url(now.replace(second=5), 2), content=clip, headers=headers)
        assert r.status_code == 200, r.text
        r = await c.put(url(now.replace(second=0), 2), content=clip, headers=headers)
        assert r.status_code == 409 and "sealed window of session ZB-9" in r.json()["detail"], r.text


def test_late_sealed_footage_policy_of_the_hub() -> None:
    """``storage.late_sealed_footage``: the hub archives late footage by default (nothing an
    agent recorded is lost; the badge and range exports flag it, test above) and refuses it only
    when configured to."""
    from evalwatch.hub import segment_guard

    assert segment_guard(EvalwatchConfig()) is None
    cfg = EvalwatchConfig.model_validate({"storage": {"late_sealed_footage": "refuse"}})
    assert segment_guard(cfg) is sealed_conflict
