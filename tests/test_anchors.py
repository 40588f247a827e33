"""Anchoring the chain outside the hub (issue #12): signed chain heads in an anchor store the
hub's own S3 keys cannot touch (real SeaweedFS, COMPLIANCE, two identities) and a kept feed
against which ``evalwatch verify --anchors`` catches a chain rewritten *consistently* by an
attacker holding the hub's S3 keys and its database (links re-hashed, rows updated) -- which
``evalwatch verify --camera`` alone reports as OK.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from minio import Minio
from minio.commonconfig import GOVERNANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from pydantic import SecretStr
from sqlalchemy import delete, select, update

from config.models import AnchorStoreConfig, S3Config
from evalwatch.verify import UNPINNED
from evalwatch.verify import cli as verify_cli
from sessions.anchors import Anchorer, AnchorFeed, AnchorStore, feed_records, sign_record
from sessions.signing import HubKey
from storage.chain import chain_key, link_bytes, link_fields, parse_iso
from storage.models import ChainAnchor, Segment
from storage.objects import ObjectStore
from storage.s3server import AnchorIdentity, SeaweedPorts, SeaweedServer, free_ports
from storage.segments import SegmentMeta, SegmentStore

pytestmark = pytest.mark.security

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
BYPASS = {"x-amz-bypass-governance-retention": "true"}


async def _verify(argv: list[str]) -> int:
    """``evalwatch verify ...`` as the command runs it (its own event loop, in a thread)."""
    return await asyncio.to_thread(verify_cli, argv)


def _code(fn: Any) -> str:
    try:
        fn()
    except S3Error as e:
        return str(e.code)
    return ""


def _versions(c: Minio, bucket: str, key: str) -> list[str]:
    objs = c.list_objects(bucket, prefix=key, include_version=True)
    return [str(o.version_id) for o in objs if o.object_name == key]


def _purge_key(c: Minio, bucket: str, key: str) -> None:
    """The attacker of the issue: every version of ``key`` deleted with the hub's keys and the
    governance bypass header."""
    for v in _versions(c, bucket, key):
        c._execute("DELETE", bucket, key, query_params={"versionId": v}, headers=dict(BYPASS))


async def _archive(segments: SegmentStore, site: str, camera: str, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        start = T0 + timedelta(seconds=10 * i)
        data = hashlib.sha256(f"{site}{camera}{i}".encode()).digest() * 64
        end = start + timedelta(seconds=10)
        meta = SegmentMeta(site=site, room="room1", camera=camera, start=start, end=end)
        rec = await segments.put(meta, data)
        assert rec.uploaded


async def _feed_file(db: Any, key: HubKey, path: Path) -> Path:
    feed = AnchorFeed(
        generated_at="2026-03-01T03:00:00.000Z", key_id=key.key_id, public_key=key.public_pem(),
        anchors=await feed_records(db, limit=100),  # type: ignore[arg-type]
    )
    await asyncio.to_thread(path.write_text, feed.model_dump_json(), encoding="utf-8")
    return path


def _config(tmp: Path, s3: S3Config, bucket: str) -> Path:
    cfg = {
        "storage": {
            "data_dir": str(tmp / "data"),
            "database_url": f"sqlite:///{tmp / 'unused.db'}",
            "s3": {
                "endpoint": s3.endpoint,
                "embedded": False,
                "access_key": s3.access_key.get_secret_value() if s3.access_key else None,
                "secret_key": s3.secret_key.get_secret_value() if s3.secret_key else None,
                "bucket_segments": bucket,
            },
        },
        "secrets_file": None,
    }
    path = tmp / "verify.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_kept_feed_catches_a_consistent_rewrite_that_plain_verify_misses(
    s3_server, database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"anch-{uuid.uuid4().hex[:8]}"
    store = ObjectStore(s3_server.cfg.model_copy(update={"bucket_segments": bucket}))
    await store.ensure_buckets([bucket], lock_days=1, mode="governance")
    segments = SegmentStore(store, database, tmp_path / "wal", bucket)
    site = "t" + uuid.uuid4().hex[:10]
    key = HubKey.generate()
    anchorer = Anchorer(database, key)
    await _archive(segments, site, "cam1", 3)
    await _archive(segments, site, "cam2", 2)
    await anchorer.anchor("hourly", now=T0 + timedelta(minutes=1))
    await _archive(segments, site, "cam1", 1, first=3)
    await anchorer.anchor("session_close:S1", now=T0 + timedelta(minutes=2))
    feed = await _feed_file(database, key, tmp_path / "feed.json")
    pem = tmp_path / "hub.pem"
    pem.write_text(key.public_pem(), encoding="ascii")
    cfg = _config(tmp_path, s3_server.cfg, bucket)
    cam1, cam2 = f"{site}/room1/cam1", f"{site}/room1/cam2"

    # Intact: every anchored head is there.
    assert await _verify(["--config", str(cfg), "--anchors", str(feed), "--key", str(pem)]) == 0
    out = capsys.readouterr().out
    assert f"OK {cam1}: 4 links verified; 2 anchored heads match" in out, out
    assert f"OK {cam2}" in out and "anchors: OK (2 anchor records, 2 cameras)" in out

    # The attacker (hub's S3 keys + DB, GOVERNANCE): segment 3 of cam1 is deleted and the chain
    # re-linked around it -- link 3 := the old link 4 renumbered and re-hashed, link 4 gone, the
    # DB rows made to match.  Nothing is left that does not chain.
    c = store.client
    link2 = json.loads(await store.get_bytes(bucket, chain_key(site, "room1", "cam1", 2)))
    link3 = json.loads(await store.get_bytes(bucket, chain_key(site, "room1", "cam1", 3)))
    link4 = json.loads(await store.get_bytes(bucket, chain_key(site, "room1", "cam1", 4)))
    _purge_key(c, bucket, link3["key"])
    for seq in (3, 4):
        _purge_key(c, bucket, chain_key(site, "room1", "cam1", seq))
    fields = link_fields(
        site=site, room="room1", camera="cam1", seq=3, key=link4["key"], start=parse_iso(link4["start"]),
        end=parse_iso(link4["end"]), sha256=link4["sha256"], size=link4["size"],
        content_type=link4["content_type"], source=link4["source"], prev_hash=link2["link_hash"],
    )
    new3 = json.loads(link_bytes(fields))
    await store.put_bytes(bucket, chain_key(site, "room1", "cam1", 3), link_bytes(fields), "application/json")

    def rewrite_db(s: Any) -> None:
        s.execute(delete(Segment).where(Segment.site == site, Segment.camera == "cam1", Segment.seq == 3))
        s.execute(
            update(Segment)
            .where(Segment.site == site, Segment.camera == "cam1", Segment.seq == 4)
            .values(seq=3, prev_hash=link2["link_hash"], link_hash=new3["link_hash"])
        )

    await database.run(rewrite_db)
    assert link3["link_hash"] != new3["link_hash"]

    # Verify without the feed: the rewritten chain is self-consistent, so it says OK.
    assert await _verify(["--config", str(cfg), "--camera", cam1]) == 0
    assert capsys.readouterr().out.startswith(f"OK {cam1}: 3 links")

    # With the kept feed: both anchored heads of cam1 are named, cam2 is still OK.
    assert await _verify(["--config", str(cfg), "--anchors", str(feed), "--key", str(pem)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM {cam1} seq 3: rewritten: link 3 hashes to {new3['link_hash'][:16]}" in out, out
    assert f"PROBLEM {cam1} seq 4: truncated: the chain has no link 4" in out, out
    assert f"OK {cam2}" in out and "anchors: PROBLEMS FOUND" in out
    # --camera narrows it down.
    args = ["--config", str(cfg), "--anchors", str(feed), "--key", str(pem)]
    assert await _verify([*args, "--camera", cam2]) == 0
    capsys.readouterr()

    # A feed the attacker re-signs over the rewritten heads with their own key (and their key
    # inside it) is refused against the pinned key.
    fake = HubKey.generate()
    forged = await Anchorer(database, fake).anchor("hourly", now=T0 + timedelta(minutes=3))
    forged_feed = tmp_path / "forged.json"
    forged_feed.write_text(
        AnchorFeed(generated_at="x", key_id=fake.key_id, public_key=fake.public_pem(),
                   anchors=[forged]).model_dump_json(),  # type: ignore[list-item]
        encoding="utf-8",
    )
    assert await _verify(["--config", str(cfg), "--anchors", str(forged_feed), "--key", str(pem)]) == 1
    assert "is not signed by a pinned key" in capsys.readouterr().out
    # No pinned key: never checked on the strength of a key inside the feed.
    assert await _verify(["--config", str(cfg), "--anchors", str(feed)]) == UNPINNED
    assert "UNPINNED" in capsys.readouterr().err


async def test_bad_feed_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, S3Config(endpoint="127.0.0.1:1", embedded=False), "b")
    key = HubKey.generate()
    pem = tmp_path / "hub.pem"
    pem.write_text(key.public_pem(), encoding="ascii")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "something-else"}', encoding="utf-8")
    assert await _verify(["--config", str(cfg), "--anchors", str(bad), "--key", str(pem)]) == 2
    assert "not an evalwatch anchor feed" in capsys.readouterr().err
    nope = str(tmp_path / "nope.json")
    assert await _verify(["--config", str(cfg), "--anchors", nope, "--key", str(pem)]) == 2
    assert "nope.json" in capsys.readouterr().err
    # A record whose heads were edited after signing is a PROBLEM, not a crash.
    rec = sign_record(key, [{"camera": "s/r/c", "seq": 2, "head_hash": "a" * 64, "time": None}],
                      reason="hourly", at=T0)
    rec["heads"][0]["seq"] = 1
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps([rec]), encoding="utf-8")
    assert await _verify(["--config", str(cfg), "--anchors", str(edited), "--key", str(pem)]) == 1
    assert "is not signed by a pinned key" in capsys.readouterr().out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_anchor_store_cannot_be_rewritten_with_the_hubs_keys(
    database, tmp_path: Path
) -> None:
    """The demo's anchor store: a second identity on the embedded SeaweedFS, allowed only the
    anchor bucket, locked COMPLIANCE; the hub's identity limited to its own buckets."""
    hub_access, hub_secret = "hub-" + uuid.uuid4().hex[:12], "hubsecret-" + uuid.uuid4().hex
    s3 = S3Config(access_key=SecretStr(hub_access), secret_key=SecretStr(hub_secret), embedded=False)
    anchor_cfg = AnchorStoreConfig(
        embedded=True, access_key=SecretStr("anc-" + uuid.uuid4().hex[:12]),
        secret_key=SecretStr("ancsecret-" + uuid.uuid4().hex), retention_days=1,
    )
    ident = AnchorIdentity(
        anchor_cfg.access_key.get_secret_value(), anchor_cfg.secret_key.get_secret_value(),  # type: ignore[union-attr]
        anchor_cfg.bucket, (s3.bucket_segments, s3.bucket_snapshots, s3.bucket_exports),
    )
    server = SeaweedServer(tmp_path / "weed", hub_access, hub_secret, SeaweedPorts(*free_ports(8)),
                           grace_s=3.0, die_with_parent=True, anchor=ident)
    server.start()
    try:
        s3 = s3.model_copy(update={"endpoint": server.endpoint})
        hub_objects = ObjectStore(s3)
        await hub_objects.ensure_buckets([s3.bucket_segments], lock_days=1, mode="compliance")
        segments = SegmentStore(hub_objects, database, tmp_path / "wal", s3.bucket_segments)
        await _archive(segments, "site1", "cam1", 2)  # the hub's keys still work on its own buckets

        store = AnchorStore(anchor_cfg, s3, retention_days=180)
        await store.start()
        record = await Anchorer(database, HubKey.generate(), store).anchor("hourly")
        assert [h["seq"] for h in record["heads"]] == [2]
        row = await database.run(lambda s: s.scalars(select(ChainAnchor)).one())
        assert row.store_key and row.store_error is None
        key = row.store_key
        original = await store.objects.get_bytes(store.bucket, key)
        assert json.loads(original) == record

        hub = hub_objects.client  # whoever holds the hub's S3 keys
        anc = store.objects.client
        (version,) = _versions(anc, store.bucket, key)
        retention = anc.get_object_retention(store.bucket, key, version_id=version)
        assert retention is not None and retention.mode == "COMPLIANCE"
        assert store.bucket not in [b.name for b in hub.list_buckets()]
        assert _code(lambda: hub.remove_object(store.bucket, key)) == "AccessDenied"
        assert _code(lambda: hub._execute("DELETE", store.bucket, key, query_params={"versionId": version},
                                          headers=dict(BYPASS))) == "AccessDenied"
        assert _code(lambda: hub.put_object(store.bucket, key, _bio(b"{}"), 2)) == "AccessDenied"
        assert _code(lambda: hub.get_object(store.bucket, key)) == "AccessDenied"
        assert _code(lambda: hub.set_object_lock_config(
            store.bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS))) == "AccessDenied"
        # Even the anchor's own keys cannot destroy the version: COMPLIANCE.
        assert _code(lambda: anc._execute("DELETE", store.bucket, key, query_params={"versionId": version},
                                          headers=dict(BYPASS))) == "AccessDenied"
        resp = anc.get_object(store.bucket, key, version_id=version)
        try:
            assert resp.read() == original
        finally:
            resp.close()
            resp.release_conn()
    finally:
        server.stop()


def _bio(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


async def test_anchor_job_schedules_on_the_cron(database, tmp_path: Path) -> None:
    from config.models import EvalwatchConfig
    from evalwatch.anchors import AnchorJob

    cfg = EvalwatchConfig.model_validate({"storage": {"anchor_cron": "0 * * * *"}})
    job = AnchorJob(cfg, Anchorer(database, HubKey.generate()))
    job.start()
    try:
        nxt = job.scheduler.get_job("chain-anchor").next_run_time
        assert nxt.minute == 0 and nxt - datetime.now(UTC) <= timedelta(hours=1)
        rec = await job.run_once()
        assert rec["reason"] == "hourly" and rec["heads"] == []
    finally:
        await job.stop()
    with pytest.raises(ValueError, match="anchor_cron"):
        EvalwatchConfig.model_validate({"storage": {"anchor_cron": "hourly"}})
    with pytest.raises(ValueError, match="endpoint"):
        EvalwatchConfig.model_validate({"storage": {"anchor": {"bucket": "x-anchors"}}})


def test_anchor_config_is_checked_with_the_field_named(tmp_path: Path) -> None:
    from config.loader import ConfigError, load_config
    from config.models import EvalwatchConfig

    with pytest.raises(ValueError, match=r"anchor\.embedded"):
        EvalwatchConfig.model_validate({"storage": {"s3": {"embedded": False}, "anchor": {"embedded": True}}})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "storage": {"data_dir": str(tmp_path), "anchor": {"endpoint": "anchors.example.org:9000"}},
        "secrets_file": str(tmp_path / "secrets.yaml"),
    }), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"storage\.anchor\.access_key: required"):
        load_config(cfg)
    # the demo's embedded store gets generated keys, kept in the secrets file
    cfg.write_text(yaml.safe_dump({
        "storage": {"data_dir": str(tmp_path), "anchor": {"embedded": True}},
        "secrets_file": str(tmp_path / "secrets.yaml"),
    }), encoding="utf-8")
    a = load_config(cfg).storage.anchor
    assert a is not None and a.access_key is not None and a.secret_key is not None
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text(encoding="utf-8"))
    assert stored["anchor.secret_key"] == a.secret_key.get_secret_value()


async def test_session_close_on_the_command_line_anchors_the_heads(
    unique_site: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``evalwatch session close`` anchors too; an anchor store that cannot be reached is said
    and kept in the row (``store_error``), and the close still succeeds."""
    from test_sessions_support import cfg_dict, spec_dict, write_cfg

    from evalwatch.session import cli as session_cli
    from storage.db import Database

    raw = cfg_dict(unique_site, tmp_path)
    raw["storage"]["anchor"] = {"endpoint": "127.0.0.1:9", "access_key": "anchor-key-123456",
                                "secret_key": "anchor-secret-123456"}
    cfg = str(write_cfg(tmp_path / "evalwatch.yaml", raw))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict(unique_site)), encoding="utf-8")
    for argv in (["create", "--config", cfg, str(spec)], ["start", "--config", cfg, "1"]):
        assert await asyncio.to_thread(session_cli, argv) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(session_cli, ["close", "--config", cfg, "1"]) == 0
    out = capsys.readouterr().out
    assert "chain heads anchored (anchor store: s3://evalwatch-anchors (COMPLIANCE" in out, out
    assert "NOT written to the anchor store" in out and "127.0.0.1:9" in out, out
    db = Database(raw["storage"]["database_url"])
    try:
        rows = await db.run(lambda s: list(s.scalars(select(ChainAnchor))))
    finally:
        db.dispose()
    assert [r.reason for r in rows] == ["session_close:ZB-2026-001"]
    assert rows[0].store_key is None and rows[0].store_error
    assert json.loads(rows[0].document)["reason"] == "session_close:ZB-2026-001"


async def test_feed_route_serves_signed_records_to_observers_and_audits(tmp_path: Path) -> None:
    """``GET /api/anchors/feed``: the records as signed (a verifier's check passes on them), the
    newest ``limit`` oldest first, ``since`` filters; every download audited; bad parameters are
    the app's 422, never a 500."""
    import httpx

    from dashboard.app import create_app
    from sessions.anchors import record_payload
    from sessions.signing import verify_signature
    from storage.models import AuditLog
    from testkit.dashboard import ROLE_USERS, make_services, password_of

    services = make_services(tmp_path)
    key = HubKey.load_or_create(services.cfg.storage.data_dir)
    anchorer = Anchorer(services.db, key)
    services.anchors = anchorer
    for i in range(3):
        await anchorer.anchor(f"hourly-{i}", now=T0 + timedelta(hours=i))
    app = create_app(services)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.3.3.3", 5)), base_url="http://testserver"
    ) as c:
        assert (await c.get("/api/anchors/feed")).status_code == 401
        r = await c.post("/api/auth/login", json={"username": ROLE_USERS["observer"],
                                                  "password": password_of("observer")})
        assert r.status_code == 200
        r = await c.get("/api/anchors/feed", params={"limit": 2})
        assert r.status_code == 200, r.text
        feed = r.json()
        assert [a["reason"] for a in feed["anchors"]] == ["hourly-1", "hourly-2"]
        assert feed["key_id"] == key.key_id and feed["anchor_store"] is None
        for rec in feed["anchors"]:
            assert verify_signature(key.public_pem(), record_payload(rec), rec["signature"])
        since = _iso_z(T0 + timedelta(minutes=30))
        r = await c.get("/api/anchors/feed", params={"since": since})
        assert [a["reason"] for a in r.json()["anchors"]] == ["hourly-1", "hourly-2"]
        for bad in ({"limit": 0}, {"limit": 100000}, {"since": "yesterday"}):
            r = await c.get("/api/anchors/feed", params=bad)
            assert r.status_code == 422 and "code" in r.json(), (bad, r.text)
    with services.db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "anchor_feed")))
    assert len(rows) == 2 and rows[0].actor == ROLE_USERS["observer"]


def _iso_z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
