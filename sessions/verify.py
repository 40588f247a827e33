"""Verify a session's archive in object storage against its seal (``evalwatch verify --session``).

For each camera of the session: the Ed25519 seal of its chain head verifies with one of the hub's
trusted keys (its key file and rotated keys, never the public key stored in the DB); the camera's
chain verifies from object storage over the session's time window (no missing, altered,
reordered or inserted segment); and the chain link at the sealed ``head_seq`` still has the
sealed ``head_hash`` — so footage deleted or rewritten after closing is caught even though the
chain has grown since.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from sessions.lifecycle import SessionInfo, get_session, verify_seal
from sessions.models import EvalSession, SessionHead
from sessions.signing import hub_trusted_pems, verify_signature
from storage.chain import chain_key
from storage.common import CameraId
from storage.db import Database
from storage.models import Segment
from storage.objects import ObjectMissing, ObjectStore
from storage.segments import SegmentRecord
from storage.verify import DbLink, SignedHead, VerifyResult, verify_chain, verify_window


@dataclass
class SessionVerdict:
    """``ok`` when every check passed; ``lines`` says what was checked, per camera."""

    session: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"PROBLEM {line}")


async def verify_session_archive(cfg: EvalwatchConfig, ident: int | str) -> SessionVerdict:
    """Check session ``ident`` (id or code); raises ``SessionNotFound`` for an unknown session."""
    db = Database(cfg.storage.database_url)
    try:
        info: SessionInfo = await get_session(db, ident)
    finally:
        db.dispose()
    verdict = SessionVerdict(session=info.code)
    if info.status == "closed":
        trusted = await asyncio.to_thread(hub_trusted_pems, cfg.storage.data_dir)
        for problem in verify_seal(info, trusted):
            verdict.fail(f"seal: {problem}")
    else:
        verdict.lines.append(f"note: session {info.code} is {info.status}; no seal to check yet")
    objects = ObjectStore(cfg.storage.s3)
    bucket = cfg.storage.s3.bucket_segments
    start, end = info.window()
    for cam in info.cameras:
        head = info.head(cam.site, cam.room, cam.camera)
        result = await verify_chain(
            objects, cam.site, cam.room, cam.camera, start, end,
            expected_head=head.head_seq if head else None,
        )
        if not result.ok:
            verdict.fail(str(result))
            continue
        sealed_seq = head.head_seq if head else 0
        purged = next((r for r in result.purged_ranges if r[0] <= sealed_seq <= r[1]), None)
        if head is not None and head.head_seq > 0 and purged is not None:
            # The retention purge deleted the sealed head's link: its record keeps the anchor.
            if purged[1] == head.head_seq and purged[2] != head.head_hash:
                verdict.fail(
                    f"{cam.path}: the purge record's anchor {purged[2][:16]}… at seq {head.head_seq} differs "
                    f"from the sealed head {head.head_hash[:16]}…"
                )
                continue
            verdict.lines.append(
                f"note: {cam.path}: the sealed footage (links up to {head.head_seq}) was purged by "
                "retention; the seal signature is all that remains to check"
            )
        elif head is not None and head.head_seq > 0:
            key = chain_key(cam.site, cam.room, cam.camera, head.head_seq)
            try:
                link = json.loads(await objects.get_bytes(bucket, key))
            except (ObjectMissing, ValueError) as e:
                verdict.fail(f"{cam.path}: sealed head link {key} unreadable: {e}")
                continue
            if link.get("link_hash") != head.head_hash:
                verdict.fail(
                    f"{cam.path}: link {head.head_seq} hash {str(link.get('link_hash'))[:16]}… "
                    f"differs from the sealed head {head.head_hash[:16]}…"
                )
                continue
        verdict.lines.append(f"OK {result}")
    return verdict


#: At most this many database links are hashed between a replayed window and the signed head
#: that anchors it (~11.5 days of 10-s segments; no S3 call, a few seconds of hashing at most);
#: a window further from any seal is checked against the database's links alone, with a note.
MAX_ANCHOR_LINKS = 100_000


@dataclass(frozen=True)
class _Seal:
    label: str
    seq: int
    payload: str
    signature: str


def _window_links(
    s: Session, site: str, room: str, camera: str, start: datetime, end: datetime
) -> tuple[list[DbLink], set[int], _Seal | None]:
    """The DB links from the window's first segment to the nearest sealed head at or after its
    last one, the window's seqs and that seal (signature NOT yet checked)."""
    cam = (Segment.site == site) & (Segment.room == room) & (Segment.camera == camera)
    seqs = list(s.scalars(
        select(Segment.seq).where(cam, Segment.start < end, Segment.end > start).order_by(Segment.seq)
    ))
    if not seqs:
        return [], set(), None
    first, last = seqs[0], seqs[-1]
    row = s.execute(
        select(EvalSession.code, SessionHead)
        .join(SessionHead, SessionHead.session_id == EvalSession.id)
        .where(SessionHead.site == site, SessionHead.room == room, SessionHead.camera == camera)
        .where(EvalSession.status == "closed", SessionHead.head_seq >= last)
        .where(SessionHead.head_seq - first < MAX_ANCHOR_LINKS)
        .order_by(SessionHead.head_seq, EvalSession.id)
        .limit(1)
    ).first()
    seal: _Seal | None = None
    upto = last
    if row is not None:
        code, head = row
        seal = _Seal(f"the seal of session {code}", head.head_seq, head.payload, head.signature)
        upto = head.head_seq
    links = [
        DbLink(SegmentRecord.model_validate(g).link_fields(), g.link_hash)
        for g in s.scalars(select(Segment).where(cam, Segment.seq >= first, Segment.seq <= upto)
                           .order_by(Segment.seq))
    ]
    return links, set(seqs), seal


async def verify_replay_window(
    db: Database,
    objects: ObjectStore,
    data_dir: str | Path,
    site: str,
    room: str,
    camera: str,
    start: datetime,
    end: datetime,
    *,
    bucket: str | None = None,
) -> VerifyResult:
    """The replay badge (finding 8 of issue #12): :func:`storage.verify.verify_window` over
    ``[start, end)`` against the database's links and the nearest closed session's seal at or
    after the window, whose signature is checked against the hub's key files (never the DB's
    public key) and whose *signed* payload gives the head's seq and hash."""
    links, seqs, head = await db.run(lambda s: _window_links(s, site, room, camera, start, end))
    anchor: SignedHead | None = None
    cam_path = CameraId(site, room, camera).path
    if head is not None:
        trusted = await asyncio.to_thread(hub_trusted_pems, data_dir)
        ok = any(verify_signature(p, head.payload.encode("utf-8"), head.signature) for p in trusted)
        try:
            doc = json.loads(head.payload)
            seq, lh = int(doc["head_seq"]), str(doc["head_hash"])
            ok = ok and doc.get("camera") == cam_path and seq == head.seq
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            return VerifyResult(
                ok=False, camera=cam_path, problem="altered", seq=head.seq,
                message=f"{head.label} for {cam_path} does not verify against the hub's trusted keys",
            )
        anchor = SignedHead(seq, lh, head.label)
    return await verify_window(objects, site, room, camera, start, end, links, seqs,
                               anchor=anchor, bucket=bucket)
