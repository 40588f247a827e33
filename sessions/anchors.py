"""Anchoring the per-camera chains outside the hub (issue #12): signed chain heads that whoever
holds the hub's S3 keys and its database cannot take back.

Contract:

* An **anchor record** is one JSON object::

      {"type": "evalwatch-chain-anchor", "v": 1, "anchored_at": "2026-03-01T10:00:00.000Z",
       "reason": "hourly" | "session_close:<code>" | "manual", "key_id": "<sha256 of the key>",
       "heads": [{"camera": "site/room/cam", "seq": 17, "head_hash": "<link_hash of seq 17>",
                  "time": "<end of that segment, ISO ms Z>"}, ...],
       "signature": "<base64 Ed25519 over canonical_json(the record without signature)>"}

  ``heads`` has every camera that has archived footage (the database's newest chain link per
  camera, uploaded or still in the write-ahead queue), sorted by camera; ``canonical_json`` is
  :func:`storage.chain.canonical_json`.  Signed with the hub's key (:class:`HubKey`).
* :class:`Anchorer` takes one: the heads, the signature, a row in ``chain_anchors`` (the feed's
  source) and, with ``storage.anchor`` set, an object in the **anchor store** (:class:`AnchorStore`:
  its own endpoint / bucket / credentials, object-locked COMPLIANCE by default), at key
  ``anchors/YYYY/MM/DD/HHMMSS_mmm-<sha256 of the object, 16 hex>.json`` — a name that also
  commits to the content.  A failed store write is logged (ERROR), kept in the row's
  ``store_error`` and never fails the caller (a session close must not fail on it).
* The hub anchors at every session close (``POST /api/sessions/{id}/close``,
  ``evalwatch session close``) and on ``storage.anchor_cron`` (``evalwatch.anchors.AnchorJob``).
* The **feed** (:class:`AnchorFeed`, ``GET /api/anchors/feed``) lists the newest records, as
  signed; observers download and keep it.  It carries the hub's public key for information
  only: :func:`check_archive` never trusts a key from the feed, only the pinned ones it is given.
* :func:`check_archive` checks an archive against kept records: each record's signature with a
  pinned key, then per camera the chain from object storage (:func:`storage.verify.verify_chain`)
  and each anchored (seq, head_hash): link ``seq`` must still exist and hash to ``head_hash``.
  Since every link hash covers all links before it, a chain rewritten or truncated at or before
  an anchored seq after the anchor was taken is reported, naming the camera and the seq — even
  when the rewrite is consistent (links re-hashed, database rows updated), which
  ``verify_chain`` alone cannot see.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.models import AnchorStoreConfig, S3Config
from sessions.signing import HubKey, key_id, verify_signature
from storage.chain import canonical_json, chain_key, iso_ms
from storage.common import CameraId
from storage.models import ChainAnchor, Segment
from storage.objects import ObjectMissing, ObjectStore, StorageError

log = logging.getLogger("evalwatch.sessions.anchors")

ANCHOR_TYPE = "evalwatch-chain-anchor"
FEED_TYPE = "evalwatch-anchor-feed"
ANCHOR_VERSION = 1
FEED_MAX = 1000
"""At most this many records in one feed answer (``limit``)."""


class AnchorHead(BaseModel):
    """One camera's chain head at the time of the anchor."""

    model_config = ConfigDict(extra="forbid")
    camera: str = Field(description="site/room/camera")
    seq: int = Field(ge=0, description="the newest chain link's seq (0: nothing archived)")
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="that link's link_hash")
    time: str | None = Field(default=None, description="end of that segment (ISO-8601 UTC, ms, Z)")


class AnchorRecord(BaseModel):
    """One signed anchor record (module docstring)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["evalwatch-chain-anchor"] = "evalwatch-chain-anchor"
    v: int = ANCHOR_VERSION
    anchored_at: str
    reason: str
    key_id: str
    heads: list[AnchorHead]
    signature: str


class AnchorFeed(BaseModel):
    """``GET /api/anchors/feed``: the newest signed anchor records, oldest first."""

    type: Literal["evalwatch-anchor-feed"] = "evalwatch-anchor-feed"
    v: int = ANCHOR_VERSION
    generated_at: str
    key_id: str = Field(description="the hub's current signing key fingerprint")
    public_key: str = Field(
        description="the hub's public key, for information only: verify against a key you "
        "obtained from the hub's operator (evalwatch verify --anchors FEED --key hub.pem)"
    )
    anchor_store: str | None = Field(
        default=None, description="bucket and lock mode of the anchor store outside the hub (null: none)"
    )
    anchors: list[AnchorRecord]


def record_payload(record: dict[str, Any]) -> bytes:
    """The signed bytes of a record: canonical JSON of every field but ``signature``."""
    return canonical_json({k: v for k, v in record.items() if k != "signature"}).encode("utf-8")


def chain_heads(s: Session) -> list[dict[str, Any]]:
    """Every camera's newest chain link in the database, sorted by camera path."""
    newest = (
        select(Segment.site, Segment.room, Segment.camera, func.max(Segment.seq).label("seq"))
        .group_by(Segment.site, Segment.room, Segment.camera)
        .subquery()
    )
    rows = s.execute(
        select(Segment.site, Segment.room, Segment.camera, Segment.seq, Segment.link_hash, Segment.end).join(
            newest,
            (Segment.site == newest.c.site)
            & (Segment.room == newest.c.room)
            & (Segment.camera == newest.c.camera)
            & (Segment.seq == newest.c.seq),
        )
    ).all()
    heads = [
        {
            "camera": CameraId(site, room, camera).path,
            "seq": int(seq),
            "head_hash": str(link_hash),
            "time": iso_ms(end),
        }
        for site, room, camera, seq, link_hash, end in rows
    ]
    return sorted(heads, key=lambda h: str(h["camera"]))


def sign_record(key: HubKey, heads: list[dict[str, Any]], *, reason: str, at: datetime) -> dict[str, Any]:
    """A signed anchor record of ``heads`` (module docstring)."""
    body: dict[str, Any] = {
        "type": ANCHOR_TYPE,
        "v": ANCHOR_VERSION,
        "anchored_at": iso_ms(at),
        "reason": reason[:128],
        "key_id": key.key_id,
        "heads": heads,
    }
    return {**body, "signature": key.sign(record_payload(body))}


def record_bytes(record: dict[str, Any]) -> bytes:
    return (canonical_json(record) + "\n").encode("utf-8")


def store_key(record: dict[str, Any]) -> str:
    """Where a record lives in the anchor store: its time and the sha256 of its bytes."""
    at = str(record["anchored_at"])  # 2026-03-01T10:00:00.000Z
    digest = hashlib.sha256(record_bytes(record)).hexdigest()[:16]
    day, clock = at[:10], at[11:23]
    return f"anchors/{day.replace('-', '/')}/{clock[:8].replace(':', '')}_{clock[9:12]}-{digest}.json"


class AnchorStore:
    """The anchor bucket outside the hub (``storage.anchor``), reached with its own credentials."""

    def __init__(self, cfg: AnchorStoreConfig, s3: S3Config, retention_days: int) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.days = cfg.retention_days or retention_days
        self.objects = ObjectStore(
            S3Config(
                endpoint=cfg.endpoint or s3.endpoint,
                secure=cfg.secure if cfg.endpoint else s3.secure,
                region=cfg.region,
                access_key=cfg.access_key,
                secret_key=cfg.secret_key,
                lock_mode=cfg.lock_mode,
                embedded=False,
            )
        )

    def describe(self) -> str:
        return f"s3://{self.bucket} ({self.cfg.lock_mode.upper()}, {self.days} days)"

    async def start(self) -> None:
        """Create the bucket (object lock in ``lock_mode``) if absent; every object written gets
        the retention itself (``ObjectStore.retention_for``)."""
        await self.objects.ensure_bucket(self.bucket, lock_days=self.days, mode=self.cfg.lock_mode)

    async def put(self, record: dict[str, Any]) -> str:
        key = store_key(record)
        await self.objects.put_bytes(self.bucket, key, record_bytes(record), "application/json")
        return key


class Anchorer:
    """Takes anchors: heads from ``db``, signed with ``key``, kept in ``chain_anchors`` and written
    to ``store`` when there is one."""

    def __init__(self, db: Any, key: HubKey, store: AnchorStore | None = None) -> None:
        self.db, self.key, self.store = db, key, store
        self.taken = 0
        self.last_error: str | None = None

    async def anchor(self, reason: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Take one anchor; returns the signed record.  A failed store write is logged and kept
        in the row, never raised."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        heads = await self.db.run(chain_heads)
        record = sign_record(self.key, heads, reason=reason, at=at)
        key: str | None = None
        error: str | None = None
        if self.store is not None:
            try:
                key = await self.store.put(record)
            except StorageError as e:
                error = str(e)
                log.error(
                    "anchor not written to the anchor store bucket=%s reason=%s: %s",
                    self.store.bucket, reason, e,
                )
        self.last_error = error

        def save(s: Session) -> None:
            s.add(
                ChainAnchor(
                    anchored_at=at,
                    reason=record["reason"],
                    key_id=self.key.key_id,
                    cameras=len(heads),
                    document=canonical_json(record),
                    store_key=key,
                    store_error=error,
                )
            )

        await self.db.run(save)
        self.taken += 1
        log.info(
            "chain heads anchored reason=%s cameras=%d store_key=%s", reason, len(heads), key or "-"
        )
        return record


async def feed_records(db: Any, *, limit: int = 24, since: datetime | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` records (at or after ``since``), oldest first, as signed."""

    def go(s: Session) -> list[str]:
        q = select(ChainAnchor.document).order_by(ChainAnchor.anchored_at.desc(), ChainAnchor.id.desc())
        if since is not None:
            q = q.where(ChainAnchor.anchored_at >= since)
        return list(s.scalars(q.limit(max(1, min(limit, FEED_MAX)))))

    return [json.loads(d) for d in reversed(await db.run(go))]


# ------------------------------------------------------------------------------ verification


@dataclass
class AnchorCheck:
    """What :func:`check_archive` found: ``lines`` to print, ``ok`` when no PROBLEM."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    records: int = 0
    cameras: int = 0

    def problem(self, line: str) -> None:
        self.ok = False
        self.problems.append(line)
        self.lines.append(line)


def load_feed(raw: bytes | str, name: str) -> list[dict[str, Any]]:
    """The anchor records of a kept feed file (an :class:`AnchorFeed`, a list of records, or one
    record).  ``ValueError`` naming the file and what is wrong."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{name}: not JSON ({e})") from None
    if isinstance(doc, dict) and doc.get("type") == FEED_TYPE:
        records = doc.get("anchors")
    elif isinstance(doc, dict) and doc.get("type") == ANCHOR_TYPE:
        records = [doc]
    elif isinstance(doc, list):
        records = doc
    else:
        raise ValueError(f"{name}: not an evalwatch anchor feed (type {FEED_TYPE!r} expected)")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{name}: 'anchors' must be a list of anchor records")
    return records


def _signed_by(record: dict[str, Any], trusted: Sequence[str]) -> bool:
    payload = record_payload(record)
    sig = str(record.get("signature", ""))
    ordered = sorted(trusted, key=lambda pem: _kid(pem) != record.get("key_id"))
    return any(verify_signature(pem, payload, sig) for pem in ordered)


def _kid(pem: str) -> str | None:
    try:
        return key_id(pem)
    except ValueError:
        return None


async def check_archive(
    objects: ObjectStore,
    records: list[dict[str, Any]],
    trusted: Sequence[str],
    *,
    bucket: str | None = None,
    camera: CameraId | None = None,
    verify: Callable[..., Any] | None = None,
) -> AnchorCheck:
    """Check the archive in ``bucket`` (default: the segments bucket) against anchor ``records``
    whose signatures verify with one of the ``trusted`` PEMs (module docstring).  Only cameras
    in the records (or ``camera``) are checked.  Raises ``StorageUnavailable``."""
    from storage.verify import verify_chain

    verify = verify or verify_chain
    bucket = bucket or objects.cfg.bucket_segments
    out = AnchorCheck(records=len(records))
    pins: dict[str, dict[int, tuple[str, str]]] = {}
    for i, raw in enumerate(records, 1):
        try:
            rec = AnchorRecord.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            out.problem(f"PROBLEM feed: record {i} is not an anchor record ({where}: {first['msg']})")
            continue
        if not _signed_by(raw, trusted):
            out.problem(
                f"PROBLEM feed: anchor of {rec.anchored_at} ({rec.reason}) is not signed by a pinned key "
                f"(it names key {rec.key_id[:16]}); a forged or altered feed"
            )
            continue
        for h in rec.heads:
            seen = pins.setdefault(h.camera, {})
            old = seen.get(h.seq)
            if old is not None and old[0] != h.head_hash:
                out.problem(
                    f"PROBLEM {h.camera} seq {h.seq}: the anchors of {old[1]} and {rec.anchored_at} "
                    "disagree on its hash (the hub signed two different histories)"
                )
            elif old is None:
                seen[h.seq] = (h.head_hash, rec.anchored_at)
    if camera is not None:
        pins = {camera.path: pins.get(camera.path, {})}
    for path in sorted(pins):
        try:
            cam = CameraId.parse(path)
        except ValueError:
            out.problem(f"PROBLEM feed: camera {path!r} is not site/room/camera")
            continue
        out.cameras += 1
        cam_pins = {s: v for s, v in pins[path].items() if s > 0}
        if not cam_pins:
            out.lines.append(f"note {path}: no footage anchored for this camera")
            continue
        res = await verify(objects, *cam.as_tuple(), bucket=bucket)
        bad = 0
        purged = list(getattr(res, "purged_ranges", []) or [])
        for seq in sorted(cam_pins):
            want, at = cam_pins[seq]
            rng = next(((f, last, h) for f, last, h in purged if f <= seq <= last), None)
            if rng is not None:
                if rng[1] == seq and rng[2] != want:
                    bad += 1
                    out.problem(
                        f"PROBLEM {path} seq {seq}: rewritten: the purge record's anchor hash "
                        f"{rng[2][:16]} is not the hash {want[:16]} anchored at {at}"
                    )
                elif rng[1] != seq:
                    out.lines.append(
                        f"note {path} seq {seq}: purged by retention; covered by the later links' hashes"
                    )
                continue
            try:
                doc = json.loads(await objects.get_bytes(bucket, chain_key(*cam.as_tuple(), seq)))
                got = str(doc["link_hash"]) if isinstance(doc, dict) else ""
            except ObjectMissing:
                bad += 1
                out.problem(
                    f"PROBLEM {path} seq {seq}: truncated: the chain has no link {seq}, anchored at {at} "
                    f"with head hash {want[:16]}"
                )
                continue
            except (ValueError, KeyError):
                got = ""
            if got != want:
                bad += 1
                out.problem(
                    f"PROBLEM {path} seq {seq}: rewritten: link {seq} hashes to "
                    f"{got[:16] or '(unreadable)'}, "
                    f"the anchor of {at} says {want[:16]} -- the chain was changed after it was anchored"
                )
        if not res.ok:
            out.problem(str(res) + (f" (seq {res.seq})" if res.seq is not None else ""))
        elif not bad:
            top = max(cam_pins)
            out.lines.append(
                f"OK {path}: {res.links_checked} links verified; {len(cam_pins)} anchored heads match "
                f"(newest seq {top}, anchored {cam_pins[top][1]})"
            )
    return out
