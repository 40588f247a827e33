"""Async object store over the (sync) minio client; works with any S3 endpoint by config alone.

Every public coroutine runs the blocking minio call in ``asyncio.to_thread``.  Errors are mapped:

* :class:`StorageUnavailable` — the server could not be reached or answered 5xx (retryable);
* :class:`ObjectMissing` — the bucket or key does not exist;
* :class:`StorageError` — anything else (access denied, bad bucket name...), with a message
  naming the bucket/key.  Keys are never in the message of the secret.

User metadata is passed and returned *without* the ``x-amz-meta-`` prefix, keys lower-cased.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention

from config.models import S3Config

log = logging.getLogger("evalwatch.storage.objects")

T = TypeVar("T")

_META = "x-amz-meta-"
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "NoSuchVersion"}
_NO_BUCKET_LOCK_CODES = ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration")


def s3_lock_mode(mode: str) -> str:
    """``governance``/``compliance`` (``storage.s3.lock_mode``, any case) as S3 spells it."""
    m = mode.upper()
    if m not in (GOVERNANCE, COMPLIANCE):
        raise ValueError(f"object lock mode must be governance or compliance, got {mode!r}")
    return m


class StorageError(Exception):
    """An object-storage operation failed for a reason that retrying will not fix."""


class StorageUnavailable(StorageError):
    """The S3 server could not be reached (or answered 5xx).  Retry later."""


class ObjectMissing(StorageError):
    """The bucket or object does not exist."""


class ObjectLocked(StorageError):
    """An object version is under object-lock retention (or legal hold): it cannot be deleted yet."""


#: What servers answer ``GetObjectRetention`` for an object without retention.
_NO_LOCK_CODES = {
    "ObjectLockConfigurationNotFoundError",
    "NoSuchObjectLockConfiguration",
    "InvalidRequest",
    "NoSuchObjectRetention",
}


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of a key (``version_id`` None: an unversioned bucket)."""

    key: str
    version_id: str | None
    delete_marker: bool
    size: int = 0


@dataclass(frozen=True)
class ObjectInfo:
    """What ``stat``/``list`` report about one object."""

    bucket: str
    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _user_meta(headers: object) -> dict[str, str]:
    out: dict[str, str] = {}
    if headers is None:
        return out
    for k, v in headers.items():  # type: ignore[attr-defined]
        lk = str(k).lower()
        if lk.startswith(_META):
            out[lk[len(_META) :]] = str(v)
    return out


class ObjectStore:
    """S3 access for evalwatch.  ``cfg`` gives endpoint, TLS, region and keys (``S3Config``).

    ``connect_timeout_s``/``read_timeout_s``/``retries`` bound how long a call may hang when the
    server is down, so callers can fall back to the write-ahead queue promptly.
    """

    def __init__(
        self,
        cfg: S3Config,
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        retries: int = 1,
    ) -> None:
        self.cfg = cfg
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=10,
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self.client = Minio(
            cfg.endpoint,
            access_key=cfg.access_key.get_secret_value() if cfg.access_key else None,
            secret_key=cfg.secret_key.get_secret_value() if cfg.secret_key else None,
            secure=cfg.secure,
            region=cfg.region,
            http_client=http,
        )

        #: bucket -> (S3 lock mode, days): every object put there carries that retention itself.
        self.locks: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint={self.cfg.endpoint!r}, secure={self.cfg.secure})"

    # --- error mapping --------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except S3Error as e:
            if e.code in _MISSING_CODES:
                raise ObjectMissing(f"{what}: {e.code}") from None
            if e.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(
                    f"{what}: {e.code} — check storage.s3.access_key/secret_key and bucket policy"
                ) from None
            raise StorageError(f"{what}: {e.code}: {e.message}") from None
        except ServerError as e:
            raise StorageUnavailable(f"{what}: S3 server error {e.status_code}") from None
        except InvalidResponseError as e:
            raise StorageUnavailable(f"{what}: invalid response from {self.cfg.endpoint}: {e}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise StorageUnavailable(
                f"{what}: cannot reach S3 at {self.cfg.endpoint}: {type(e).__name__}"
            ) from None

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(self._call, what, fn)

    # --- buckets --------------------------------------------------------------------------

    def ensure_bucket_sync(
        self, bucket: str, *, lock_days: int | None = None, mode: str | None = None
    ) -> None:
        """Create ``bucket`` if absent.  With ``lock_days`` the bucket is created with S3 Object
        Lock and a default retention of that many days in ``mode`` (``governance`` or
        ``compliance``; default ``storage.s3.lock_mode``), and every object this store puts there
        afterwards carries that retention itself (``x-amz-object-lock-mode`` /
        ``retain-until-date``): the bucket's default can be changed or removed by anyone holding
        the keys, an object's COMPLIANCE retention cannot (docs/storage.md, "Object lock").

        An existing bucket keeps its settings (object lock can only be chosen at creation): one
        without object lock is used unlocked (logged as an error), one whose default mode differs
        is logged as a warning — the objects written from now on still get ``mode`` themselves.
        """
        lock_mode = s3_lock_mode(mode or str(getattr(self.cfg, "lock_mode", "governance")))

        def go() -> None:
            created = False
            if not self.client.bucket_exists(bucket):
                try:
                    self.client.make_bucket(bucket, object_lock=lock_days is not None)
                    created = True
                except S3Error as e:
                    if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            if lock_days is None:
                if created:
                    log.info("created bucket %s (no object lock)", bucket)
                return
            if created:
                self.client.set_object_lock_config(
                    bucket, ObjectLockConfig(lock_mode, lock_days, DAYS)
                )
                log.info("created bucket %s object_lock=%s days=%s", bucket, lock_mode, lock_days)
            else:
                try:
                    current = self.client.get_object_lock_config(bucket).mode
                except S3Error as e:
                    if e.code not in _NO_BUCKET_LOCK_CODES:
                        raise
                    log.error(
                        "bucket %s exists without object lock: its objects can be deleted by anyone "
                        "holding the S3 keys; object lock can only be chosen when a bucket is "
                        "created — point storage.s3.bucket_* at new buckets", bucket,
                    )
                    return
                if current != lock_mode:
                    log.warning(
                        "bucket %s: default object lock is %s, storage.s3.lock_mode asks %s; objects "
                        "written from now on carry %s retention themselves", bucket, current,
                        lock_mode, lock_mode,
                    )
            self.locks[bucket] = (lock_mode, lock_days)

        try:
            self._call(f"bucket {bucket}", go)
        except ValueError as e:
            raise StorageError(f"bucket {bucket!r}: {e}") from None

    async def ensure_bucket(
        self, bucket: str, *, lock_days: int | None = None, mode: str | None = None
    ) -> None:
        await asyncio.to_thread(self.ensure_bucket_sync, bucket, lock_days=lock_days, mode=mode)

    async def ensure_buckets(
        self,
        buckets: Iterable[str] | None = None,
        *,
        lock_days: int | None = None,
        mode: str | None = None,
    ) -> None:
        """Create the given buckets (default: the three configured ones) if absent."""
        names = (
            list(buckets)
            if buckets is not None
            else [
                self.cfg.bucket_segments,
                self.cfg.bucket_snapshots,
                self.cfg.bucket_exports,
            ]
        )
        for b in names:
            await self.ensure_bucket(b, lock_days=lock_days, mode=mode)

    def retention_for(self, bucket: str) -> Retention | None:
        """The retention a new object in ``bucket`` gets (None: the bucket is not locked)."""
        lock = self.locks.get(bucket)
        if lock is None:
            return None
        mode, days = lock
        return Retention(mode, datetime.now(UTC).replace(microsecond=0) + timedelta(days=days))

    async def bucket_lock_days(self, bucket: str) -> int | None:
        """Default retention (days) of ``bucket``'s object-lock config, or None if unlocked."""

        def go() -> int | None:
            try:
                c = self.client.get_object_lock_config(bucket)
            except S3Error as e:
                if e.code in _NO_BUCKET_LOCK_CODES:
                    return None
                raise
            if c.duration is None:
                return None
            return int(c.duration) * (365 if str(c.duration_unit).upper() == "YEARS" else 1)

        return await self._run(f"bucket {bucket}", go)

    # --- objects --------------------------------------------------------------------------

    async def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """Store ``data`` at ``bucket/key`` (overwrites; on a locked bucket a new version, with
        the bucket's retention — :meth:`retention_for`).  Returns the ETag."""
        meta = {k: str(v) for k, v in (metadata or {}).items()}
        retention = self.retention_for(bucket)

        def go() -> str | None:
            r = self.client.put_object(
                bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata=meta,  # type: ignore[arg-type]
                retention=retention,
            )
            return r.etag

        return await self._run(f"put {bucket}/{key}", go)

    async def get_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the object, or ``length`` bytes from ``offset`` (HTTP range) when given."""
        if offset < 0 or (length is not None and length <= 0):
            raise ValueError(f"bad range offset={offset} length={length} for {bucket}/{key}")

        def go() -> bytes:
            resp = self.client.get_object(bucket, key, offset=offset, length=length or 0)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return await self._run(f"get {bucket}/{key}", go)

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag, content type and user metadata; :class:`ObjectMissing` if absent."""

        def go() -> ObjectInfo:
            s = self.client.stat_object(bucket, key)
            return ObjectInfo(
                bucket=bucket,
                key=key,
                size=int(s.size or 0),
                etag=s.etag,
                last_modified=s.last_modified,
                content_type=s.content_type,
                metadata=_user_meta(s.metadata),
            )

        return await self._run(f"stat {bucket}/{key}", go)

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await self.stat(bucket, key)
        except ObjectMissing:
            return False
        return True

    async def list(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        """Every object (latest versions) whose key starts with ``prefix``, recursively, by key."""

        def go() -> list[ObjectInfo]:
            out = []
            for o in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                if o.is_dir or o.object_name is None:
                    continue
                out.append(
                    ObjectInfo(
                        bucket=bucket,
                        key=o.object_name,
                        size=int(o.size or 0),
                        etag=o.etag,
                        last_modified=o.last_modified,
                    )
                )
            return sorted(out, key=lambda i: i.key)

        return await self._run(f"list {bucket}/{prefix}", go)

    async def presigned_get(self, bucket: str, key: str, expires: timedelta | float = 3600) -> str:
        """A time-limited GET URL for the object (no network call: the region is configured)."""
        exp = expires if isinstance(expires, timedelta) else timedelta(seconds=float(expires))
        return await self._run(
            f"presign {bucket}/{key}", lambda: self.client.presigned_get_object(bucket, key, expires=exp)
        )

    async def delete(self, bucket: str, key: str) -> None:
        """Delete the object (on a versioned/locked bucket this adds a delete marker)."""
        await self._run(f"delete {bucket}/{key}", lambda: self.client.remove_object(bucket, key))

    # --- versions and object lock (retention purge) -----------------------------------------

    async def versions(self, bucket: str, key: str) -> builtins.list[ObjectVersion]:
        """Every stored version of ``key`` (delete markers included); ``version_id`` is None on a
        bucket without versioning.  Empty when the key was never stored."""

        def go() -> builtins.list[ObjectVersion]:
            out = []
            for o in self.client.list_objects(bucket, prefix=key, include_version=True):
                if o.object_name != key:
                    continue
                vid = o.version_id if o.version_id not in (None, "", "null") else None
                out.append(ObjectVersion(key, vid, bool(o.is_delete_marker), int(o.size or 0)))
            return out

        return await self._run(f"list versions {bucket}/{key}", go)

    async def retained_until(self, bucket: str, key: str, version_id: str | None) -> datetime | None:
        """The object-lock retain-until date of one version, or None when it has none (no lock
        on the bucket, no retention on the object)."""

        def go() -> datetime | None:
            try:
                r = self.client.get_object_retention(bucket, key, version_id=version_id)
            except S3Error as e:
                if e.code in _NO_LOCK_CODES:
                    return None
                raise
            return r.retain_until_date if r is not None else None

        return await self._run(f"retention {bucket}/{key}", go)

    async def delete_version(self, bucket: str, key: str, version_id: str | None) -> None:
        """Delete one version for good (never bypassing governance retention: a locked version
        is refused by the server, :class:`ObjectLocked`)."""
        try:
            await self._run(
                f"delete {bucket}/{key} version {version_id}",
                lambda: self.client.remove_object(bucket, key, version_id=version_id),
            )
        except StorageError as e:
            if "AccessDenied" in str(e):
                raise ObjectLocked(
                    f"{bucket}/{key}: the server refused the delete (object lock?): {e}"
                ) from None
            raise

    async def ping(self) -> bool:
        """True when the server answers (any bucket listing succeeds)."""
        try:
            await self._run("ping", self.client.list_buckets)
        except StorageUnavailable:
            return False
        return True
