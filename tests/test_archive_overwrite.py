"""Finding 14 of issue #12 (second half): "an object with different content is overwritten".

The segment uploader used to write the WAL copy over an object already stored under the same key
with other content — a hub whose database was reset (or a second hub on the same bucket) then
replaced archived footage and chain links; on a versioned, locked bucket the new version is the
one every reader gets.  Real SeaweedFS, real ``SegmentStore``, a locked (versioned) bucket.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.chain import chain_key
from storage.objects import ObjectStore
from storage.segments import SegmentConflict, SegmentMeta, SegmentStore
from storage.verify import verify_chain
from testkit.dashboard import make_database

pytestmark = pytest.mark.security

T0 = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)


async def test_a_second_put_with_other_bytes_never_replaces_the_archived_version(
    s3_server: Any, tmp_path: Path
) -> None:
    bucket = f"ovw-{uuid.uuid4().hex[:8]}"
    cfg = s3_server.cfg.model_copy(update={"lock_mode": "governance", "bucket_segments": bucket})
    objects = ObjectStore(cfg)
    await objects.ensure_buckets([bucket], lock_days=1)
    site = "t" + uuid.uuid4().hex[:10]
    meta = SegmentMeta(site=site, room="r1", camera="c1", start=T0, end=T0 + timedelta(seconds=10))
    original, other = b"original footage " * 50, b"other footage!!! " * 50
    db1, db2 = make_database(tmp_path / "one.db"), make_database(tmp_path / "two.db")
    first = SegmentStore(objects, db1, tmp_path / "wal1", bucket)
    # the same hub after its database was reset (or a second hub on the same bucket)
    second = SegmentStore(objects, db2, tmp_path / "wal2", bucket)
    try:
        rec = await first.put(meta, original)
        assert rec.uploaded
        link_key = chain_key(site, "r1", "c1", 1)
        link_before = await objects.get_bytes(bucket, link_key)
        versions_before = len(await objects.versions(bucket, meta.key()))

        with pytest.raises(SegmentConflict, match="already holds other content") as ei:
            await second.put(meta, other)
        assert meta.key() in str(ei.value) and "refusing to replace archived footage" in str(ei.value)
        # the archived version is still the one the chain references, and the only one
        assert hashlib.sha256(await objects.get_bytes(bucket, meta.key())).hexdigest() == rec.sha256
        assert len(await objects.versions(bucket, meta.key())) == versions_before == 1
        assert await objects.get_bytes(bucket, link_key) == link_before
        assert len(await objects.versions(bucket, link_key)) == 1
        # the uploader keeps trying and keeps refusing; the second hub keeps its copy in its WAL
        assert await second.flush() == 1
        assert list((tmp_path / "wal2").rglob("*.seg"))
        assert hashlib.sha256(await objects.get_bytes(bucket, meta.key())).hexdigest() == rec.sha256
        res = await verify_chain(objects, site, "r1", "c1", bucket=bucket)
        assert res.ok and res.segments_checked == 1, str(res)

        # a different segment whose chain link number is taken: the link is not replaced either
        later = SegmentMeta(site=site, room="r1", camera="c1", start=T0 + timedelta(minutes=5),
                            end=T0 + timedelta(minutes=5, seconds=10))
        db3 = make_database(tmp_path / "three.db")
        third = SegmentStore(objects, db3, tmp_path / "wal3", bucket)
        with pytest.raises(SegmentConflict, match=r"chain/00000001\.json"):
            await third.put(later, b"later footage " * 40)
        assert await objects.get_bytes(bucket, link_key) == link_before
        db3.dispose()
    finally:
        db1.dispose()
        db2.dispose()
