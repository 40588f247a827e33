"""Write-ahead upload queue under faults: S3 killed and restarted, hub restarted, crash mid-put."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.models import S3Config
from storage.chain import link_bytes, link_fields
from storage.db import Database
from storage.objects import ObjectStore, StorageUnavailable
from storage.segments import SegmentMeta, SegmentStore
from storage.verify import verify_chain

T0 = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)


def meta(site: str, i: int) -> SegmentMeta:
    start = T0 + timedelta(seconds=10 * i)
    return SegmentMeta(site=site, room="r1", camera="c1", start=start, end=start + timedelta(seconds=10))


def blob(i: int, n: int = 20_000) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (n // 32)


async def segment_objects(objects: ObjectStore, bucket: str, site: str) -> list[str]:
    return [o.key for o in await objects.list(bucket, f"{site}/") if o.key.endswith(".mp4")]


@pytest.mark.faults
async def test_s3_killed_mid_upload_then_restarted(
    s3_server_factory, database: Database, tmp_path: Path
) -> None:
    env = s3_server_factory()
    objects = ObjectStore(env.cfg, connect_timeout_s=1.0)
    await objects.ensure_buckets()
    bucket = env.cfg.bucket_segments
    store = SegmentStore(objects, database, tmp_path / "wal", bucket, retry_min_s=0.2, retry_max_s=1.0)
    await store.start()
    try:
        for i in range(2):
            assert (await store.put(meta("site1", i), blob(i))).uploaded

        # Kill the server while puts are in flight.
        async def putter() -> None:
            for i in range(2, 8):
                await store.put(meta("site1", i), blob(i))

        task = asyncio.create_task(putter())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(env.server.kill)
        await task
        t = time.monotonic()
        rec = await store.put(meta("site1", 8), blob(8))
        assert time.monotonic() - t < 5, "put must not hang while S3 is down"
        assert not rec.uploaded
        pending = await store.pending_uploads()
        assert pending >= 1
        assert len(list(store.wal_dir.rglob("*.seg"))) == pending
        assert await store.read(rec, 32, 64) == blob(8)[32:96]  # replay from the WAL meanwhile
        with pytest.raises(StorageUnavailable):
            await store.presigned_url(rec)

        env.server.start()  # same ports, same data (main thread: die_with_parent)
        await store.wait_uploaded(timeout_s=60)
    finally:
        await store.stop()

    assert not list(store.wal_dir.rglob("*.seg"))
    keys = await segment_objects(objects, bucket, "site1")
    assert len(keys) == 9 and len(set(keys)) == 9  # every segment exactly once
    for i, k in enumerate(sorted(keys)):
        assert await objects.get_bytes(bucket, k) == blob(i)
    res = await verify_chain(objects, "site1", "r1", "c1")
    assert res.ok and res.links_checked == 9, res


def _dead_store(s3: S3Config) -> ObjectStore:
    """An ObjectStore whose endpoint nothing listens on (S3 down from the hub's point of view)."""
    from storage.s3server import free_port

    cfg = s3.model_copy(update={"endpoint": f"127.0.0.1:{free_port()}"})
    return ObjectStore(cfg, connect_timeout_s=0.5)


async def test_hub_restart_with_nonempty_wal(
    object_store: ObjectStore, s3_server, database: Database, tmp_path: Path, unique_site: str
) -> None:
    bucket = s3_server.cfg.bucket_segments
    wal = tmp_path / "wal"
    first = SegmentStore(_dead_store(s3_server.cfg), database, wal, bucket, retry_min_s=0.1, retry_max_s=0.2)
    await first.start()
    recs = [await first.put(meta(unique_site, i), blob(i)) for i in range(4)]
    assert not any(r.uploaded for r in recs)
    assert await first.pending_uploads() == 4
    await first.stop()  # hub goes down with 4 segments in the WAL

    second = SegmentStore(object_store, database, wal, bucket, retry_min_s=0.1, retry_max_s=0.5)
    await second.start()
    try:
        await second.wait_uploaded(timeout_s=30)
        # the chain continues where it stopped
        nxt = await second.put(meta(unique_site, 4), blob(4))
        assert nxt.seq == 5 and nxt.uploaded and nxt.prev_hash == recs[-1].link_hash
    finally:
        await second.stop()
    assert len(await segment_objects(object_store, bucket, unique_site)) == 5
    assert (await verify_chain(object_store, unique_site, "r1", "c1")).ok
    assert not list(wal.rglob("*.seg"))


async def test_crash_between_fsync_and_commit_is_recovered(
    object_store: ObjectStore, s3_server, database: Database, tmp_path: Path, unique_site: str
) -> None:
    bucket = s3_server.cfg.bucket_segments
    wal = tmp_path / "wal"
    store = SegmentStore(object_store, database, wal, bucket)
    await store.start()
    first = await store.put(meta(unique_site, 0), blob(0))
    await store.stop()

    # The WAL entry for seq 2 is on disk, but the process died before the DB commit.
    m = meta(unique_site, 1)
    data = blob(1)
    fields = link_fields(
        site=m.site,
        room=m.room,
        camera=m.camera,
        seq=2,
        key=m.key(),
        start=m.start,
        end=m.end,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type=m.content_type,
        source=m.source,
        prev_hash=first.link_hash,
    )
    seg, js = store._wal_paths(m.site, m.room, m.camera, 2)
    store._wal_write(seg, js, data, link_bytes(fields))
    # Debris of a put that never finished: a torn temp file and data without its link.
    (seg.parent / "00000003.seg.tmp").write_bytes(b"torn")
    (seg.parent / "00000009.seg").write_bytes(b"no link")
    # And an entry that does not chain onto the DB head (e.g. from another database).
    bad = dict(fields, seq=7, prev_hash="e" * 64)
    s7, j7 = store._wal_paths(m.site, m.room, m.camera, 7)
    store._wal_write(s7, j7, b"x", link_bytes({**bad, "sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}))

    restarted = SegmentStore(object_store, database, wal, bucket)
    await restarted.start()
    try:
        await restarted.wait_uploaded(timeout_s=30)
        recs = await restarted.list_segments(unique_site, "r1", "c1", T0, T0 + timedelta(minutes=1))
        assert [r.seq for r in recs] == [1, 2]
        assert await restarted.read(recs[1]) == data
    finally:
        await restarted.stop()
    assert (await verify_chain(object_store, unique_site, "r1", "c1")).ok
    leftovers = sorted(p.name for p in wal.rglob("*") if p.is_file())
    assert leftovers == ["00000007.json", "00000007.seg"]  # set aside in _orphaned, not uploaded
    assert all("_orphaned" in str(p) for p in wal.rglob("*") if p.is_file())


async def test_already_uploaded_object_counts_as_uploaded(
    object_store: ObjectStore, s3_server, database: Database, tmp_path: Path, unique_site: str
) -> None:
    """Crash after the upload but before the DB flag: the retry must not write a second copy."""
    bucket = s3_server.cfg.bucket_segments
    store = SegmentStore(_dead_store(s3_server.cfg), database, tmp_path / "wal", bucket)
    rec = await store.put(meta(unique_site, 0), blob(0))
    assert not rec.uploaded
    # The bytes did reach S3 (put from "before the crash")
    await object_store.put_bytes(bucket, rec.key, blob(0), "video/mp4", {"sha256": rec.sha256})
    before = (await object_store.stat(bucket, rec.key)).last_modified
    await asyncio.sleep(1.1)
    live = SegmentStore(object_store, database, tmp_path / "wal", bucket)
    await live.start()
    try:
        await live.wait_uploaded(timeout_s=20)
    finally:
        await live.stop()
    assert (await object_store.stat(bucket, rec.key)).last_modified == before  # not re-uploaded
    assert (await verify_chain(object_store, unique_site, "r1", "c1")).ok


def test_dead_endpoint_config_keeps_secret(s3_server) -> None:
    store = _dead_store(s3_server.cfg)
    assert isinstance(store.cfg.secret_key, SecretStr)
    assert store.cfg.secret_key.get_secret_value() not in repr(store)
