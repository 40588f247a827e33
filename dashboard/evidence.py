"""Evidence export of one camera's time range (``GET /api/export/{site}/{room}/{camera}``) in the
format of :mod:`sessions.export`, so that ``evalwatch verify FILE.zip`` checks it offline.

What anchors the chain:

* If a **closed session sealed this camera** at or after the last exported segment (and the seal
  was made with the hub's current key), the export carries that session's signed head — the
  strongest evidence: the head was signed when the session closed, before anyone asked for an
  export.  ``manifest.session`` names the session.
* Otherwise the hub signs, at export time, the link of the last exported segment as it stands in
  the database (payload ``type: evalwatch-export-head``, ``session: null``).  That attests what
  the hub held when it exported; the manifest records ``anchor: "export"`` and a note says so.

Reused from :mod:`sessions.export`: the format constants, ``README`` and ``event_to_dict``; the
zip is written the same way (``chain/``, ``segments/``, ``events.json``, ``snapshots/``,
``seal.json``, ``public_key.pem``, ``manifest.json`` + ``manifest.sig``).  ``sessions.export``
has no public "write evidence for these heads" function, hence the loop below mirrors
``export_session``'s (see docs/dashboard.md: what sessions/export.py should expose).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Event, Segment

EXPORT_HEAD_TYPE = "evalwatch-export-head"


class NoFootage(Exception):
    """The range holds no archived segment of the camera."""


class EvidenceError(Exception):
    """A piece of the evidence cannot be read (message names it)."""


@dataclass
class Anchor:
    """The signed head the export's chain ends at."""

    head_seq: int
    payload: str
    signature: str
    session: dict[str, Any] | None
    public_pem: str
    kind: str  # "session" | "export"


@dataclass
class CameraExport:
    path: Path
    segments: int
    links: int
    events: int
    anchor: str
    session_id: int | None
    notes: list[str] = field(default_factory=list)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sealed_anchor(s: Session, site: str, room: str, camera: str, last_seq: int, first_seq: int) -> Any:
    """The closed session whose seal of this camera covers ``[first_seq, last_seq]`` (the one with
    the shortest chain to its head), as ``(EvalSession, SessionHead)`` or None."""
    from sessions.models import EvalSession, SessionHead

    row = s.execute(
        select(EvalSession, SessionHead)
        .join(SessionHead, SessionHead.session_id == EvalSession.id)
        .where(SessionHead.site == site, SessionHead.room == room, SessionHead.camera == camera)
        .where(EvalSession.status == "closed")
        .where(SessionHead.head_seq >= last_seq, SessionHead.first_seq <= first_seq)
        .order_by(SessionHead.head_seq, EvalSession.id)
        .limit(1)
    ).first()
    return row


async def export_camera_range(
    st: Any,
    site: str,
    room: str,
    camera: str,
    start: datetime,
    end: datetime,
    actor: str,
    out_dir: Path | None = None,
) -> CameraExport:
    """Write the evidence zip of ``site/room/camera`` over ``[start, end)`` (see module docstring).

    Raises :class:`NoFootage` when nothing is archived in the range and :class:`EvidenceError`
    when a segment or chain link is missing from object storage; other store failures propagate.
    """
    from sessions.export import FORMAT, README, VERSION, event_to_dict
    from storage.chain import canonical_json, chain_key, iso_ms, link_bytes
    from storage.objects import ObjectMissing
    from storage.segments import SegmentRecord, SegmentStore

    cfg = st.cfg
    bucket = cfg.storage.s3.bucket_segments
    objects = st.services.objects
    cam_path = f"{site}/{room}/{camera}"
    key = await _load_key(cfg)

    def q(s: Session) -> tuple[list[Segment], list[Segment], list[dict[str, Any]], Any]:
        cam = (Segment.site == site) & (Segment.room == room) & (Segment.camera == camera)
        segs = list(
            s.scalars(
                select(Segment).where(cam, Segment.start < end, Segment.end > start).order_by(Segment.seq)
            )
        )
        if not segs:
            return [], [], [], None
        sealed = _sealed_anchor(s, site, room, camera, segs[-1].seq, segs[0].seq)
        head_seq = sealed[1].head_seq if sealed is not None else segs[-1].seq
        links = list(
            s.scalars(
                select(Segment)
                .where(cam, Segment.seq >= segs[0].seq, Segment.seq <= head_seq)
                .order_by(Segment.seq)
            )
        )
        evs = s.scalars(
            select(Event)
            .where(Event.site == site, Event.room == room, Event.camera == camera)
            .where(Event.started_at < end, Event.started_at >= start - timedelta(hours=1))
            .where((Event.ended_at.is_(None)) | (Event.ended_at > start))
            .order_by(Event.started_at, Event.id)
        )
        anchor = None
        if sealed is not None:
            sess, head = sealed
            anchor = (
                {
                    "id": sess.id,
                    "code": sess.code,
                    "project": sess.project,
                    "bids": list(sess.bids),
                    "started_at": sess.started_at.isoformat() if sess.started_at else None,
                    "closed_at": sess.closed_at.isoformat() if sess.closed_at else None,
                },
                head.head_seq,
                head.payload,
                head.signature,
                sess.public_key_pem,
            )
        return segs, links, [event_to_dict(e) for e in evs], anchor

    segs, links, events, sealed = await st.db.run(q)
    if not segs:
        raise NoFootage(
            f"no archived segment of {cam_path} between {start.isoformat()} and {end.isoformat()}"
        )
    notes: list[str] = []
    if sealed is not None and (sealed[4] or "").strip() == key.public_pem().strip():
        anchor = Anchor(sealed[1], sealed[2], sealed[3], sealed[0], key.public_pem(), "session")
    else:
        if sealed is not None:
            notes.append(
                f"session {sealed[0]['code']} sealed this camera with another hub key; the hub signed "
                "the head at export time instead"
            )
        last = segs[-1]
        links = [g for g in links if g.seq <= last.seq]
        payload = canonical_json(
            {
                "v": 1,
                "type": EXPORT_HEAD_TYPE,
                "session": None,
                "camera": cam_path,
                "first_seq": segs[0].seq,
                "head_seq": last.seq,
                "head_hash": last.link_hash,
                "sealed_at": iso_ms(datetime.now(UTC)),
                "key_id": key.key_id,
            }
        )
        anchor = Anchor(
            last.seq, payload, key.sign(payload.encode("utf-8")), None, key.public_pem(), "export"
        )
        notes.append(
            "no closed session sealed this range: the chain head was signed by the hub at export time"
        )

    store = SegmentStore(objects, st.db, cfg.storage.wal_dir, bucket)
    files: list[dict[str, Any]] = []
    tmpdir = Path(tempfile.mkdtemp(prefix="evalwatch-export-", dir=out_dir))
    out = tmpdir / f"evidence_{site}_{room}_{camera}_{start.strftime('%Y%m%dT%H%M%SZ')}.zip"
    tmp = out.with_name(out.name + ".part")

    def add(z: zipfile.ZipFile, name: str, data: bytes, compress: bool = True) -> None:
        z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        files.append({"path": name, "sha256": _sha(data), "size": len(data)})

    try:
        with zipfile.ZipFile(tmp, "w") as z:
            for row in links:
                rec = SegmentRecord.model_validate(row)
                try:
                    link = await objects.get_bytes(bucket, chain_key(site, room, camera, row.seq))
                except ObjectMissing:
                    if row.uploaded:
                        raise EvidenceError(
                            f"chain link seq {row.seq} of {cam_path} is missing from object storage"
                        ) from None
                    link = link_bytes(rec.link_fields())  # still in the hub's WAL
                add(z, f"chain/{cam_path}/{row.seq:08d}.json", link)
            for row in segs:
                rec = SegmentRecord.model_validate(row)
                try:
                    data = await store.read(rec)
                except ObjectMissing:
                    raise EvidenceError(
                        f"segment {row.key} (seq {row.seq}) is missing from object storage"
                    ) from None
                add(z, f"segments/{row.key}", data, compress=False)
            for ev in events:
                if ev["snapshot_key"]:
                    try:
                        snap = await objects.get_bytes(cfg.storage.s3.bucket_snapshots, ev["snapshot_key"])
                    except ObjectMissing:
                        ev["snapshot"] = None
                        notes.append(f"event {ev['id']}: snapshot {ev['snapshot_key']} is missing")
                    else:
                        ev["snapshot"] = f"snapshots/{ev['snapshot_key']}"
                        add(z, ev["snapshot"], snap, compress=False)
            add(z, "events.json", json.dumps(events, ensure_ascii=False, indent=2).encode("utf-8"))
            seal = {
                "session_id": anchor.session["id"] if anchor.session else None,
                "code": anchor.session["code"] if anchor.session else None,
                "key_id": key.key_id,
                "heads": [{"camera": cam_path, "payload": anchor.payload, "signature": anchor.signature}],
            }
            add(z, "seal.json", json.dumps(seal, ensure_ascii=False, indent=2).encode("utf-8"))
            add(z, "public_key.pem", anchor.public_pem.encode("ascii"))
            add(z, "README.txt", README.encode("utf-8"))
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "scope": "camera-range",
                "anchor": anchor.kind,
                "session": anchor.session,
                "range": {"from": start.isoformat(), "to": end.isoformat()},
                "cameras": [
                    {
                        "camera": cam_path,
                        "first_seq": links[0].seq,
                        "head_seq": anchor.head_seq,
                        "segments": [g.seq for g in segs],
                        "range": [segs[0].start.isoformat(), segs[-1].end.isoformat()],
                    }
                ],
                "exported_at": datetime.now(UTC).isoformat(),
                "exported_by": actor,
                "key_id": key.key_id,
                "notes": notes,
                "files": files,
            }
            mbytes = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
            z.writestr("manifest.json", mbytes)
            z.writestr("manifest.sig", key.sign(mbytes))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        remove_export(out)
        raise
    return CameraExport(
        out,
        len(segs),
        len(links),
        len(events),
        anchor.kind,
        anchor.session["id"] if anchor.session else None,
        notes,
    )


async def _load_key(cfg: Any) -> Any:
    import asyncio

    from sessions.signing import HubKey

    return await asyncio.to_thread(HubKey.load_or_create, cfg.storage.data_dir)


def remove_export(path: Path) -> None:
    """Delete an export written by :func:`export_camera_range` and its temporary directory."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
