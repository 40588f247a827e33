"""Evidence export of one camera's time range (``GET /api/export/{site}/{room}/{camera}``) in the
format of :mod:`sessions.export`, so that ``evalwatch verify FILE.zip`` checks it offline.

This module only chooses what anchors the chain; :func:`sessions.export.write_evidence` (the one
writer, shared with the session export) writes the zip.

What anchors the chain:

* If a **closed session sealed this camera** at or after the last exported segment, the export
  carries that session's signed head — the strongest evidence: the head was signed when the
  session closed, before anyone asked for an export.  ``manifest.session`` names the session.
  If the hub key changed since that seal, the zip carries both public keys (``public_key.pem``
  signed the head, ``export_public_key.pem`` the manifest) and verifies against each.
* Otherwise the hub signs, at export time, the link of the last exported segment as it stands in
  the database (payload ``type: evalwatch-export-head``, ``session: null``).  That attests what
  the hub held when it exported; the manifest records ``anchor: "export"`` and a note says so.
  (Also when the sealing session has no stored public key, with a note.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sessions.experts import dump_events
from storage.common import CameraId
from storage.models import EventRow, Segment

EXPORT_HEAD_TYPE = "evalwatch-export-head"


class NoFootage(Exception):
    """The range holds no archived segment of the camera."""


class EvidenceError(Exception):
    """A piece of the evidence cannot be read (message names it)."""


class SealNotTrusted(Exception):
    """The session seal covering the range does not verify against the hub's trusted keys, or a
    segment in the range was added to a sealed window after its seal (never signed)."""


@dataclass
class Anchor:
    """The signed head the export's chain ends at (``public_pem`` = the key that signed it)."""

    head_seq: int
    payload: str
    signature: str
    session: dict[str, Any] | None
    public_pem: str
    kind: str  # "session" | "export"


@dataclass
class CameraExport:
    """What :func:`export_camera_range` wrote (``anchor`` = ``"session"`` | ``"export"``)."""

    path: Path
    segments: int
    links: int
    events: int
    anchor: str
    session_id: int | None
    notes: list[str] = field(default_factory=list)


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
    """:func:`_export_camera_range` while an export hold keeps the range from the retention purge."""
    from sessions.holds import export_hold

    cam = CameraId(site, room, camera)
    async with export_hold(st.db, [cam], start, end, actor, hours=st.cfg.storage.export_hold_hours,
                           what=f"export of {cam.path}"):
        return await _export_camera_range(st, site, room, camera, start, end, actor, out_dir)


async def _export_camera_range(
    st: Any,
    site: str,
    room: str,
    camera: str,
    start: datetime,
    end: datetime,
    actor: str,
    out_dir: Path | None = None,
) -> CameraExport:
    """Write the evidence zip of ``site/room/camera`` over ``[start, end)`` (see module docstring)
    into a fresh temporary directory (under ``out_dir`` if given; :func:`remove_export` deletes
    both).  ``st`` provides ``cfg``, ``db`` and ``services.objects``.

    Raises :class:`NoFootage` when nothing is archived in the range and :class:`EvidenceError`
    when a segment or chain link is missing from object storage; other store failures propagate.
    Nothing is left behind on failure.
    """
    import tempfile

    from sessions.export import EvidenceCamera, EvidenceMissing, write_evidence
    from storage.chain import canonical_json, iso_ms

    cfg = st.cfg
    cam_path = CameraId(site, room, camera).path
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
        # Never sign footage added to a sealed window after its seal (finding 4 of #12).
        from sessions.sealed import added_after_seal

        late = added_after_seal(s, site, room, camera, start, end)
        if late:
            raise SealNotTrusted(f"NOT OK: {late[0]}; refusing to export")
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
            select(EventRow)
            .where(EventRow.site == site, EventRow.room == room, EventRow.camera == camera)
            .where(EventRow.started_at < end, EventRow.started_at >= start - timedelta(hours=1))
            .where((EventRow.ended_at.is_(None)) | (EventRow.ended_at > start))
            .order_by(EventRow.started_at, EventRow.id)
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
        return segs, links, dump_events(s, list(evs)), anchor

    segs, links, events, sealed = await st.db.run(q)
    if not segs:
        raise NoFootage(
            f"no archived segment of {cam_path} between {start.isoformat()} and {end.isoformat()}"
        )
    notes: list[str] = []
    seal_pem = None
    if sealed is not None:
        # the seal is checked against the hub's key files, never the key stored in the DB row
        from sessions.signing import hub_trusted_pems, verify_signature

        trusted = await asyncio.to_thread(hub_trusted_pems, cfg.storage.data_dir, key)
        seal_pem = next(
            (p for p in trusted if verify_signature(p, sealed[2].encode("utf-8"), sealed[3])), None
        )
        if seal_pem is None:
            raise SealNotTrusted(
                f"NOT OK: the seal of session {sealed[0]['code']} for {cam_path} does not verify "
                "against the hub's trusted keys; refusing to export"
            )
    if sealed is not None and seal_pem is not None:
        anchor = Anchor(sealed[1], sealed[2], sealed[3], sealed[0], seal_pem, "session")
    else:
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

    tmpdir = Path(tempfile.mkdtemp(prefix="evalwatch-export-", dir=out_dir))
    out = tmpdir / f"evidence_{site}_{room}_{camera}_{start.strftime('%Y%m%dT%H%M%SZ')}.zip"
    try:
        r = await write_evidence(
            out,
            db=st.db,
            objects=st.services.objects,
            cfg=cfg,
            key=key,
            seal_public_pem=anchor.public_pem,
            seal_ref={
                "session_id": anchor.session["id"] if anchor.session else None,
                "code": anchor.session["code"] if anchor.session else None,
            },
            header={
                "scope": "camera-range",
                "anchor": anchor.kind,
                "session": anchor.session,
                "range": {"from": start.isoformat(), "to": end.isoformat()},
            },
            cameras=[
                EvidenceCamera(
                    site, room, camera, anchor.head_seq, anchor.payload, anchor.signature, segs, links
                )
            ],
            events=events,
            actor=actor,
            notes=notes,
            progress=False,
            max_bytes=cfg.storage.export_max_bytes,
        )
    except EvidenceMissing as e:
        remove_export(out)
        raise EvidenceError(str(e)) from None
    except BaseException:
        remove_export(out)
        raise
    return CameraExport(
        r.path,
        r.segments,
        r.links,
        r.events,
        anchor.kind,
        anchor.session["id"] if anchor.session else None,
        r.notes,
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
