"""Retention purge (issue #17 item 3) on a real SeaweedFS with object lock.

One archive, three cameras, segments 20..1 days old, ``retention_days: 7``:

* ``r1/cam1``: expired seqs 1, 2 (its lock runs out during the test), 3, 4 (locked for an
  hour), 5 (in an export in progress during the dry run); 6, 7 recent.
* ``r1/cam2``: expired 1, 2 inside a session under legal hold, 3 outside it; 4 recent.
* ``r2/cam1``: two expired segments only (the newest stays: it is the chain head).

The dry run deletes nothing; the purge deletes exactly the expired, unheld, unlocked objects
(segments, their links, a snapshot), records ranges and anchors in the DB, the audit log and
object storage; ``verify_chain`` passes on what remains and still catches a deleted link;
releasing the hold lets the next run purge the session's footage.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_sessions_support import cfg_dict, spec_dict, write_cfg

from config.models import EvalwatchConfig
from storage.common import CameraId, utcnow
from storage.objects import ObjectStore, ObjectVersion

DAY = timedelta(days=1)


async def _put(store, cam: CameraId, start: datetime, data: bytes):
    from storage.segments import SegmentMeta

    meta = SegmentMeta(
        site=cam.site, room=cam.room, camera=cam.camera, start=start, end=start + timedelta(seconds=10)
    )
    return await store.put(meta, data)


async def _keys(objects, bucket: str, prefix: str) -> set[str]:
    return {o.key for o in await objects.list(bucket, prefix)}


async def test_retention_purge(s3_server, unique_site: str, tmp_path: Path, capsys) -> None:
    from minio.commonconfig import GOVERNANCE
    from minio.retention import Retention

    from evalwatch import retention as cli_retention
    from evalwatch import session as cli_session
    from sessions import lifecycle as lc
    from sessions.holds import export_hold, hold_windows
    from sessions.models import EvalSession
    from storage.chain import chain_key
    from storage.db import Database
    from storage.models import AuditLog, EventRow, PurgedRange, Segment
    from storage.retention import HoldWindow, purge
    from storage.segments import SegmentStore
    from storage.verify import verify_chain

    site = unique_site
    bucket = "ret" + uuid.uuid4().hex[:12]
    s3 = s3_server.cfg.model_copy(update={"bucket_segments": bucket})
    data = cfg_dict(site, tmp_path, s3)
    data["storage"]["retention_days"] = 7
    cfg_path = write_cfg(tmp_path / "evalwatch.yaml", data)
    cfg = EvalwatchConfig.model_validate(data)
    objects = ObjectStore(s3)
    # Object lock on, no bucket default: each test object gets its own retention.
    await asyncio.to_thread(objects.client.make_bucket, bucket, object_lock=True)
    await objects.ensure_buckets([s3.bucket_snapshots])
    db = Database(cfg.storage.database_url)
    db.upgrade()
    store = SegmentStore(objects, db, tmp_path / "wal", bucket, retry_min_s=0.2, retry_max_s=1.0)
    await store.start()
    now = utcnow()
    a, b, c = CameraId(site, "r1", "cam1"), CameraId(site, "r1", "cam2"), CameraId(site, "r2", "cam1")
    ages = {a: [20, 19, 18, 17, 16, 2, 1], b: [20, 19, 18, 1], c: [20, 19]}
    recs: dict[CameraId, list] = {}
    for cam, days in ages.items():
        recs[cam] = [await _put(store, cam, now - d * DAY, f"{cam}-{d}".encode() * 50) for d in days]
    await store.wait_uploaded(20)
    await store.stop()
    # a seq 4: locked for an hour; a seq 2: its lock ends in a moment.
    lock_end = utcnow() + timedelta(seconds=2)  # a retain-until in the past is refused
    for seq, until in ((4, now + timedelta(hours=1)), (2, lock_end)):
        r = recs[a][seq - 1]
        for key in (r.key, chain_key(a.site, a.room, a.camera, seq)):
            await asyncio.to_thread(
                objects.client.set_object_retention, bucket, key, Retention(GOVERNANCE, until)
            )
    # Snapshots: an old incident of a (goes), one of b in the held session (stays), a recent one.
    snaps = {}
    for name, cam, age in (("old", a, 10), ("held", b, 19.5), ("new", a, 1)):
        key = f"{cam.path}/snap-{name}.jpg"
        await objects.put_bytes(s3.bucket_snapshots, key, b"jpeg", "image/jpeg")
        snaps[name] = key
        started = now - age * DAY

        def add(s, cam=cam, key=key, started=started):
            s.add(
                EventRow(
                    site=cam.site,
                    room=cam.room,
                    camera=cam.camera,
                    seat=None,
                    rule="phone",
                    started_at=started,
                    ended_at=started + timedelta(seconds=30),
                    snapshot_key=key,
                )
            )

        await db.run(add)
    # A closed session on r1/cam2 from 20.1 to 18.6 days ago (b's seqs 1..2), under legal hold (CLI).
    info = await lc.create_session(
        db,
        cfg,
        lc.parse_spec(spec_dict(site, rooms=[{"site": site, "room": "r1", "cameras": ["cam2"]}], seats=[])),
        "admin",
    )

    def window(s):
        row = s.get(EvalSession, info.id)
        row.status, row.started_at, row.closed_at = "closed", now - 20.1 * DAY, now - 18.6 * DAY

    await db.run(window)
    assert await asyncio.to_thread(cli_session.cli, ["hold", "--config", str(cfg_path), info.code]) == 2
    assert "--reason" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(
            cli_session.cli, ["hold", "--config", str(cfg_path), info.code, "--reason", "complaint 2026-17"]
        )
        == 0
    )
    assert (
        await asyncio.to_thread(
            cli_session.cli, ["hold", "--config", str(cfg_path), info.code, "--reason", "again"]
        )
        == 2
    )
    assert "already under a legal hold" in capsys.readouterr().err
    # (exit 1: this test closed the session by hand, without a seal to verify)
    assert await asyncio.to_thread(cli_session.cli, ["show", "--config", str(cfg_path), info.code]) == 1
    shown = capsys.readouterr().out
    assert "legal hold #1 by cli:" in shown and "complaint 2026-17" in shown

    all_keys = await _keys(objects, bucket, f"{site}/")
    rows_before = await db.run(lambda s: len(list(s.scalars(select(Segment).where(Segment.site == site)))))

    # --- dry run (CLI), then with an export in progress over a's seq 5 ---------------------
    assert (
        await asyncio.to_thread(
            cli_retention.cli, ["purge", "--config", str(cfg_path), "--dry-run", "--json"]
        )
        == 0
    )
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    ranges = {
        (r["camera"], r["first_seq"], r["last_seq"]) for r in dry["ranges"] if r["camera"].startswith(site)
    }
    assert (a.path, 4, 4) not in ranges and any(f"{a.path} seq 4" in m for m in dry["locked"])
    assert (b.path, 3, 3) in ranges and (c.path, 1, 1) in ranges  # c's seq 2 is its head
    async with export_hold(
        db, [a], now - 16 * DAY - timedelta(minutes=1), now - 16 * DAY + timedelta(minutes=1), "auditor1"
    ):
        held_dry = await purge(
            db,
            objects,
            bucket_segments=bucket,
            bucket_snapshots=s3.bucket_snapshots,
            retention_days=7,
            holds=await hold_windows(db),
            dry_run=True,
        )
    assert not any(s.camera == a and s.first_seq <= 5 <= s.last_seq for s in held_dry.spans)
    assert held_dry.held >= 3  # b's 1, 2 (legal hold) and a's 5 (export)
    assert await _keys(objects, bucket, f"{site}/") == all_keys  # nothing deleted
    assert (
        await db.run(lambda s: len(list(s.scalars(select(Segment).where(Segment.site == site)))))
        == rows_before
    )

    # --- the purge -------------------------------------------------------------------------
    await asyncio.sleep(
        max(0.0, (lock_end + timedelta(seconds=0.5) - utcnow()).total_seconds())
    )  # a's seq 2 unlocked
    report = await purge(
        db,
        objects,
        bucket_segments=bucket,
        bucket_snapshots=s3.bucket_snapshots,
        retention_days=7,
        holds=await hold_windows(db),
        actor="test",
    )
    mine = {(s.camera, s.first_seq, s.last_seq) for s in report.spans if s.camera.site == site}
    assert mine == {(a, 1, 3), (a, 5, 5), (b, 3, 3), (c, 1, 1)}, report.lines()
    assert not report.failures
    gone = {(a, q) for q in (1, 2, 3, 5)} | {(b, 3), (c, 1)}
    for cam, rs in recs.items():
        for r in rs:
            link = chain_key(cam.site, cam.room, cam.camera, r.seq)
            versions = await objects.versions(bucket, r.key) + await objects.versions(bucket, link)
            if (cam, r.seq) in gone:
                assert versions == [], f"{cam} seq {r.seq} should be purged (all versions)"
            else:
                assert any(not v.delete_marker for v in versions), f"{cam} seq {r.seq} must stay"
    left = await db.run(
        lambda s: {(r.room, r.camera, r.seq) for r in s.scalars(select(Segment).where(Segment.site == site))}
    )
    assert left == {("r1", "cam1", q) for q in (4, 6, 7)} | {("r1", "cam2", q) for q in (1, 2, 4)} | {
        ("r2", "cam1", 2)
    }
    ranges_db = await db.run(
        lambda s: [
            (r.camera, r.room, r.first_seq, r.last_seq, r.last_link_hash)
            for r in s.scalars(select(PurgedRange).where(PurgedRange.site == site))
        ]
    )
    assert ("cam1", "r1", 1, 3, recs[a][2].link_hash) in ranges_db
    audit = await db.run(
        lambda s: [r.details for r in s.scalars(select(AuditLog).where(AuditLog.action == "retention_purge"))]
    )
    assert audit and audit[-1] is not None
    last: dict[str, Any] = audit[-1]
    assert last["run_id"] == report.run_id and last["segments"] == report.segments
    assert any(r["camera"] == a.path and r["anchor"]["seq"] == 3 for r in last["ranges"])
    snap_left = await _keys(objects, s3.bucket_snapshots, f"{site}/")
    assert snaps["old"] not in snap_left and {snaps["held"], snaps["new"]} <= snap_left
    cleared = await db.run(
        lambda s: [e.snapshot_key for e in s.scalars(select(EventRow).where(EventRow.site == site))]
    )
    assert cleared.count(None) == 1

    # --- verify what remains, from object storage alone ------------------------------------
    for cam, purged in ((a, 4), (b, 1), (c, 1)):
        res = await verify_chain(objects, *cam.as_tuple(), bucket=bucket, expected_head=len(recs[cam]))
        assert res.ok, str(res)
        assert res.purged_links == purged and "purged by retention" in str(res)
    # `evalwatch verify --camera` agrees, and cross-checks the purge records with the DB's.
    from evalwatch import verify as cli_verify

    argv = ["--config", str(cfg_path), "--camera", c.path]
    assert await asyncio.to_thread(cli_verify.cli, argv) == 0
    assert "1 older links purged by retention" in capsys.readouterr().out

    def forget(s):
        s.query(PurgedRange).filter(PurgedRange.site == c.site, PurgedRange.room == c.room).delete()

    await db.run(forget)  # a purge record the database does not know: forged (or half-done)
    assert await asyncio.to_thread(cli_verify.cli, argv) == 1
    assert "no matching record in the database" in capsys.readouterr().out
    # ... and it still catches tampering after a purge: a's link 6 deleted (a delete marker).
    await objects.delete(bucket, chain_key(a.site, a.room, a.camera, 6))
    bad = await verify_chain(objects, *a.as_tuple(), bucket=bucket)
    assert not bad.ok and bad.problem == "missing" and bad.seq == 6

    # --- releasing the hold lets the next run take the session's footage --------------------
    assert (
        await asyncio.to_thread(
            cli_session.cli, ["release", "--config", str(cfg_path), info.code, "--reason", "settled"]
        )
        == 0
    )
    actions = await db.run(
        lambda s: [
            r.action for r in s.scalars(select(AuditLog).where(AuditLog.target.like(f"session:{info.id}:%")))
        ]
    )
    assert "legal_hold" in actions and "legal_hold_release" in actions

    # An export that starts after the plan was made still keeps what it reads.
    async def export_started() -> list[HoldWindow]:
        return [HoldWindow(b, now - 21 * DAY, now - 18 * DAY, "export hold #99")]

    late = await purge(
        db,
        objects,
        bucket_segments=bucket,
        bucket_snapshots=s3.bucket_snapshots,
        retention_days=7,
        holds=await hold_windows(db),
        holds_now=export_started,
    )
    assert [s for s in late.spans if s.camera.site == site] == []
    assert any(f"{b.path} links 1..2 kept: export hold #99" in m for m in late.late_holds)
    assert len(await objects.versions(bucket, recs[b][0].key)) == 1
    again = await purge(
        db,
        objects,
        bucket_segments=bucket,
        bucket_snapshots=s3.bucket_snapshots,
        retention_days=7,
        holds=await hold_windows(db),
    )
    assert {(s.camera, s.first_seq, s.last_seq) for s in again.spans if s.camera.site == site} == {(b, 1, 2)}
    res = await verify_chain(objects, *b.as_tuple(), bucket=bucket, expected_head=4)
    assert res.ok and res.purged_links == 3, str(res)
    db.dispose()


async def test_legal_hold_api(unique_site: str, tmp_path: Path) -> None:
    """Admins and auditors set and release a session's legal hold; bad input is a clear 4xx."""
    import httpx

    from dashboard.app import create_app
    from dashboard.services import Services
    from sessions import lifecycle as lc
    from storage.db import Database
    from storage.models import AuditLog
    from testkit.dashboard import ROLE_USERS, password_of

    raw = cfg_dict(unique_site, tmp_path)
    raw["hub"] = {"secret_key": "test-secret-key-0123456789", "force_password_change": False}
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    cfg = EvalwatchConfig.model_validate(raw)
    db = Database(cfg.storage.database_url)
    db.upgrade()
    info = await lc.create_session(db, cfg, lc.parse_spec(spec_dict(unique_site)), "admin")
    app = create_app(Services(cfg=cfg, db=db))
    async with app.router.lifespan_context(app):
        clients = {}
        for role in ("auditor", "supervisor"):
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            r = await c.post(
                "/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)}
            )
            c.headers["X-CSRF-Token"] = r.json()["csrf"]
            clients[role] = c
        aud, sup = clients["auditor"], clients["supervisor"]
        url = f"/api/sessions/{info.id}"
        assert (await sup.post(f"{url}/hold", json={"reason": "x"})).status_code == 403
        r = await aud.post(f"{url}/hold", json={"reason": "  "})
        assert r.status_code == 422 and "needs a reason" in r.json()["detail"]
        r = await aud.post(f"{url}/hold", json={"reason": "x", "extra": 1})
        assert r.status_code == 422
        assert (await aud.post("/api/sessions/999/hold", json={"reason": "x"})).status_code == 404
        r = await aud.post(f"{url}/release", json={})
        assert r.status_code == 409 and "not under a legal hold" in r.json()["detail"]
        r = await aud.post(f"{url}/hold", json={"reason": "complaint 17"})
        assert r.status_code == 200 and r.json()["kind"] == "legal" and r.json()["released_at"] is None
        assert (await aud.post(f"{url}/hold", json={"reason": "again"})).status_code == 409
        holds = (await sup.get(f"{url}/holds")).json()["holds"]
        assert [h["reason"] for h in holds] == ["complaint 17"]
        r = await aud.post(f"{url}/release", json={"reason": "settled"})
        assert r.status_code == 200 and r.json()["released_by"] == ROLE_USERS["auditor"]
    rows = await db.run(
        lambda s: [
            (r.action, r.actor, r.role)
            for r in s.scalars(select(AuditLog).where(AuditLog.action.like("legal%")))
        ]
    )
    assert rows == [
        ("legal_hold", ROLE_USERS["auditor"], "auditor"),
        ("legal_hold_release", ROLE_USERS["auditor"], "auditor"),
    ]
    db.dispose()


class _NoLocks(ObjectStore):
    """An object store without object lock and without objects (planning only)."""

    def __init__(self) -> None:  # no S3 client: planning only lists versions
        pass

    async def versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        return []


async def test_plan_on_both_databases(database, unique_site: str) -> None:
    """The purge's queries (expired segments but each camera's head, holds) on SQLite and PostgreSQL."""
    from sessions.holds import hold_windows, set_legal_hold
    from sessions.models import EvalSession, SessionCamera
    from storage.models import Segment
    from storage.retention import plan_purge

    now = utcnow()
    cams = [CameraId(unique_site, "r1", "cam1"), CameraId(unique_site, "r1", "cam2")]

    def fill(s):
        for cam in cams:
            for seq, age in enumerate((30, 29, 28, 27), start=1):
                start = now - age * DAY
                s.add(
                    Segment(
                        site=cam.site,
                        room=cam.room,
                        camera=cam.camera,
                        start=start,
                        end=start + timedelta(seconds=10),
                        key=f"{cam.path}/{seq}.mp4",
                        sha256="0" * 64,
                        size=10,
                        seq=seq,
                        prev_hash=f"{seq - 1:064d}",
                        link_hash=f"{seq:064d}",
                        uploaded=True,
                    )
                )
        sess = EvalSession(
            code="HOLD-1",
            project="p",
            bids=["B1"],
            planned_start=now - 29.5 * DAY,
            planned_end=now - 28.5 * DAY,
            status="scheduled",
            created_by="admin",
        )
        s.add(sess)
        s.flush()
        s.add(SessionCamera(session_id=sess.id, site=cams[1].site, room=cams[1].room, camera=cams[1].camera))

    await database.run(fill)
    await set_legal_hold(database, "HOLD-1", "dispute", "auditor1")
    plan = await plan_purge(
        database,
        _NoLocks(),
        bucket_segments="b",
        bucket_snapshots="s",
        retention_days=7,
        holds=await hold_windows(database),
    )
    spans = {(s.camera.camera, s.first_seq, s.last_seq, s.last_link_hash[-1]) for s in plan.spans}
    # cam1: 1..3 (4 is its head); cam2: seq 2 (29 days ago) is in the held session's planned hours.
    assert spans == {("cam1", 1, 3, "3"), ("cam2", 1, 1, "1"), ("cam2", 3, 3, "3")}
    assert plan.held == 1


async def test_retention_job_schedule(tmp_path: Path) -> None:
    """The hub's job: APScheduler on storage.purge_cron in hub.timezone; bad cron named; a failing
    run is recorded, never raised into the scheduler."""
    from zoneinfo import ZoneInfo

    from evalwatch.retention import RetentionJob

    def cfg(cron: str | None) -> EvalwatchConfig:
        return EvalwatchConfig.model_validate(
            {
                "hub": {"timezone": "Asia/Shanghai"},
                "storage": {"purge_cron": cron, "database_url": f"sqlite:///{tmp_path / 'x.db'}"},
                "secrets_file": None,
            }
        )

    job = RetentionJob(cfg("30 3 * * *"), None, None)
    job.start()
    try:
        nxt = job.scheduler.get_job("retention-purge").next_run_time.astimezone(ZoneInfo("Asia/Shanghai"))
        assert (nxt.hour, nxt.minute) == (3, 30) and nxt > utcnow()
    finally:
        await job.stop()
    with pytest.raises(ValueError, match=re.escape("storage.purge_cron '99 3 * * *'")):
        RetentionJob(cfg("99 3 * * *"), None, None).start()
    off = RetentionJob(cfg(None), None, None)
    off.start()
    assert off.scheduler is None
    assert await job.run_once() is None and job.last_error  # no database: recorded, not raised
    with pytest.raises(ValueError, match="5 fields"):
        cfg("daily")
