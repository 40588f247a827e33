"""SegmentStore against a real SeaweedFS and both databases."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import httpx
import pytest
from pydantic import ValidationError

from storage.objects import ObjectMissing, ObjectStore
from storage.segments import SegmentConflict, SegmentMeta, SegmentStore

T0 = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)


def meta(
    site: str, i: int, *, dur: float = 10.0, cam: str = "cam1", source: Literal["live", "backfill"] = "live"
) -> SegmentMeta:
    start = T0 + timedelta(seconds=i * dur)
    return SegmentMeta(
        site=site, room="room1", camera=cam, start=start, end=start + timedelta(seconds=dur), source=source
    )


def blob(i: int, n: int = 5000) -> bytes:
    return (f"segment-{i}-".encode() * (n // 10 + 1))[:n]


async def test_put_get_list_and_ranged_read(segment_store: SegmentStore, unique_site: str) -> None:
    recs = [await segment_store.put(meta(unique_site, i), blob(i)) for i in range(3)]
    assert [r.seq for r in recs] == [1, 2, 3]
    assert all(r.uploaded for r in recs)
    assert recs[0].key == f"{unique_site}/room1/cam1/2026/03/01/020000_000.mp4"
    assert recs[1].prev_hash == recs[0].link_hash
    assert recs[0].sha256 == hashlib.sha256(blob(0)).hexdigest() and recs[0].size == 5000
    assert await segment_store.pending_uploads() == 0
    assert not any((segment_store.wal_dir).rglob("*.seg"))

    got = await segment_store.read(recs[1])
    assert got == blob(1)
    assert await segment_store.read(recs[1], offset=100, length=50) == blob(1)[100:150]
    assert await segment_store.objects.get_bytes(segment_store.bucket, recs[2].key, 10, 5) == blob(2)[10:15]

    listed = await segment_store.list_segments(
        unique_site, "room1", "cam1", T0 + timedelta(seconds=15), T0 + timedelta(seconds=25)
    )
    assert [r.seq for r in listed] == [2, 3]
    assert await segment_store.list_segments(unique_site, "room1", "other", T0, T0 + timedelta(hours=1)) == []

    info = await segment_store.objects.stat(segment_store.bucket, recs[0].key)
    assert info.metadata["sha256"] == recs[0].sha256 and info.content_type == "video/mp4"
    links = await segment_store.objects.list(segment_store.bucket, f"{unique_site}/room1/cam1/chain/")
    assert [o.key.rsplit("/", 1)[1] for o in links] == ["00000001.json", "00000002.json", "00000003.json"]


async def test_presigned_url_fetch(segment_store: SegmentStore, unique_site: str) -> None:
    rec = await segment_store.put(meta(unique_site, 0), blob(7))
    url = await segment_store.presigned_url(rec, expires=60)
    assert url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as client:
        r = await client.get(url)
        assert r.status_code == 200 and r.content == blob(7)
        r = await client.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == blob(7)[10:20]
        tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=00")
        assert (await client.get(tampered)).status_code == 403


async def test_duplicate_put_is_noop_and_conflict_is_error(
    segment_store: SegmentStore, unique_site: str
) -> None:
    a = await segment_store.put(meta(unique_site, 0), blob(1))
    b = await segment_store.put(meta(unique_site, 0), blob(1))
    assert b.id == a.id and b.seq == 1
    with pytest.raises(SegmentConflict, match=r"020000_000\.mp4.*different bytes"):
        await segment_store.put(meta(unique_site, 0), blob(2))
    c = await segment_store.put(meta(unique_site, 1), blob(3))
    assert c.seq == 2 and c.prev_hash == a.link_hash
    objs = await segment_store.objects.list(segment_store.bucket, f"{unique_site}/")
    assert len(objs) == 4  # 2 segments + 2 links, nothing duplicated


async def test_missing_ranges(segment_store: SegmentStore, unique_site: str) -> None:
    # segments [0,10) [10,20) [40,50) and one with 0.3 s jitter at [50.3, 60)
    for i in (0, 1, 4):
        await segment_store.put(meta(unique_site, i), blob(i))
    s5 = T0 + timedelta(seconds=50.3)
    await segment_store.put(
        SegmentMeta(site=unique_site, room="room1", camera="cam1", start=s5, end=T0 + timedelta(seconds=60)),
        blob(5),
    )
    gaps = await segment_store.missing_ranges(unique_site, "room1", "cam1", T0, T0 + timedelta(seconds=80))
    assert gaps == [
        (T0 + timedelta(seconds=20), T0 + timedelta(seconds=40)),
        (T0 + timedelta(seconds=60), T0 + timedelta(seconds=80)),
    ]
    strict = await segment_store.missing_ranges(
        unique_site, "room1", "cam1", T0, T0 + timedelta(seconds=60), tolerance_s=0.1
    )
    assert (T0 + timedelta(seconds=50), s5) in strict
    # backfill fills the first gap
    await segment_store.put(meta(unique_site, 2, source="backfill"), blob(2))
    await segment_store.put(meta(unique_site, 3, source="backfill"), blob(3))
    gaps = await segment_store.missing_ranges(unique_site, "room1", "cam1", T0, T0 + timedelta(seconds=60))
    assert gaps == []


def test_segment_meta_validation() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        SegmentMeta(
            site="s", room="r", camera="c", start=datetime(2026, 1, 1), end=datetime(2026, 1, 1, 0, 1)
        )
    with pytest.raises(ValidationError, match="not after start"):
        SegmentMeta(site="s", room="r", camera="c", start=T0, end=T0)
    with pytest.raises(ValidationError, match="camera"):
        SegmentMeta(site="s", room="r", camera="../etc", start=T0, end=T0 + timedelta(seconds=1))
    m = SegmentMeta(
        site="s",
        room="r",
        camera="c",
        start=datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8))),
        end=T0 + timedelta(hours=1),
    )
    assert m.start == datetime(2026, 3, 1, 2, 0, 0, 123000, tzinfo=UTC)
    assert m.key() == "s/r/c/2026/03/01/020000_123.mp4"


async def test_object_store_errors(object_store: ObjectStore, s3_server) -> None:
    b = s3_server.cfg.bucket_snapshots
    with pytest.raises(ObjectMissing):
        await object_store.get_bytes(b, "no/such/key")
    assert not await object_store.exists(b, "no/such/key")
    await object_store.put_bytes(b, "x/y.jpg", b"jpeg", "image/jpeg")
    assert await object_store.exists(b, "x/y.jpg")
    await object_store.delete(b, "x/y.jpg")
    assert not await object_store.exists(b, "x/y.jpg")
    assert "secret" not in repr(object_store)
