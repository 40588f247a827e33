"""Evidence export: the zip of a sealed session, or of a camera range from the dashboard.

``evalwatch export SESSION ...`` (:mod:`evalwatch.export`) writes a zip (layout in
:mod:`sessions.evidence_format`);
``evalwatch verify FILE.zip --key PEM ...`` checks it with no hub access
(:mod:`sessions.evidence_verify`).  :func:`write_evidence` is the one writer:
:func:`export_session` and ``dashboard.evidence.export_camera_range`` only choose the heads,
rows and events.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from sessions.evidence_format import (
    EXPORT_KEY_FILE,
    FORMAT,
    SEAL_KEY_FILE,
    VERSION,
    progress_bar,
    sha256_hex,
)
from sessions.experts import dump_events
from sessions.lifecycle import SealError, SessionError, SessionInfo, get_session, seal_key, verify_seal
from sessions.signing import HubKey, hub_trusted_pems, key_id
from storage.chain import chain_key, link_bytes
from storage.common import CameraId
from storage.models import AuditLog, EventRow, Segment
from storage.objects import ObjectMissing

README = """evalwatch evidence export
==========================

Verify offline:  evalwatch verify THIS.zip --key hub_public_key.pem [--key ...]

manifest.json lists every file with its sha256 and size; manifest.sig signs manifest.json;
seal.json holds the Ed25519-signed chain heads (one per camera); chain/ holds the hash-chain
links up to each head; segments/ holds the video exactly as archived.
public_key.pem signed the heads; export_public_key.pem, if present (the hub key changed after
the seal), signed the manifest.  These key files prove nothing by themselves (anybody can
re-sign a zip): verify against the keys your trading centre publishes, --key once per key.
Without a trusted key evalwatch verify says UNPINNED and exits 3.
"""


def session_events(s: Session, info: SessionInfo, start: datetime, end: datetime) -> list[EventRow]:
    """Events of the session's cameras in ``[start, end)`` or tagged with the session, by time."""
    E = EventRow
    cams = [(E.site == c.site) & (E.room == c.room) & (E.camera == c.camera) for c in info.cameras]
    in_range = or_(*cams) & (E.started_at < end) & ((E.ended_at.is_(None)) | (E.ended_at > start))
    rows = s.scalars(select(E).where(or_(in_range, E.session_id == info.id)).order_by(E.started_at, E.id))
    return [e for e in rows if e.started_at < end and (e.ended_at is None or e.ended_at > start)]


# ------------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """What :func:`write_evidence` wrote: the zip and its counts (``bytes`` = payload bytes)."""

    path: Path
    segments: int
    links: int
    events: int
    snapshots: int
    bytes: int
    notes: list[str] = field(default_factory=list)


class ExportTooLarge(Exception):
    """The export would hold more footage than ``max_bytes`` (``storage.export_max_bytes`` for the
    dashboard's exports, finding 13 of #12); the message names the sizes and the setting."""


class EvidenceMissing(Exception):
    """A chain link or segment that belongs in the zip is missing from object storage.

    ``camera`` (``site/room/camera``) and ``seq`` name it; the message says which piece."""

    def __init__(self, camera: str, seq: int, message: str) -> None:
        super().__init__(message)
        self.camera, self.seq = camera, seq


@dataclass
class EvidenceCamera:
    """One camera of an evidence zip: the signed head its chain ends at and the rows to write.

    Contract: ``payload`` is the canonical JSON of a signed head (session seal or export-time
    head) for this camera whose ``head_seq`` equals :attr:`head_seq`, ``signature`` its base64
    Ed25519 signature by the *seal key* given to :func:`write_evidence`; ``segments`` are the
    exported segment rows and ``links`` the chain rows from the first exported segment up to
    ``head_seq`` inclusive, both in seq order.
    """

    site: str
    room: str
    camera: str
    head_seq: int
    payload: str
    signature: str
    segments: list[Segment]
    links: list[Segment]

    @property
    def path(self) -> str:
        return CameraId(self.site, self.room, self.camera).path


async def write_evidence(
    out: str | Path,
    *,
    db: Any,
    objects: Any,
    cfg: EvalwatchConfig,
    key: HubKey,
    seal_public_pem: str,
    seal_ref: dict[str, Any],
    header: dict[str, Any],
    cameras: list[EvidenceCamera],
    events: list[dict[str, Any]],
    actor: str,
    notes: list[str] | None = None,
    stitch: bool = False,
    progress: bool | None = False,
    desc: str = "export",
    max_bytes: int | None = None,
) -> ExportResult:
    """Write one evidence zip (layout in the module docstring) to ``out``, atomically.

    The single writer behind the session export and the dashboard's camera-range export.

    * ``key`` signs ``manifest.json`` (the *export key*, the hub's current key);
      ``seal_public_pem`` is the public key that signed every camera's head (the *seal key*).
      It goes to ``public_key.pem``; when it differs from ``key`` (the hub key changed since the
      seal), ``key``'s public key goes to ``export_public_key.pem`` too.  The manifest records
      both fingerprints (``key_id`` = export key, ``seal_key_id``), ``seal.json`` the seal key's.
    * ``seal_ref`` = ``{"session_id", "code"}`` for ``seal.json`` (``None`` values for heads
      signed at export time); ``header`` = manifest fields placed after ``format``/``version``
      (``session``, ``range``, and e.g. ``scope``/``anchor``).
    * ``events`` are :class:`storage.incident.ExportedEvent` dicts (``ExportedEvent.dump``); each
      gets ``snapshot`` (zip path, or ``None``, with a note when the snapshot is missing from
      storage).  ``notes`` are copied to the manifest, followed by the writer's own.
    * ``stitch``: one MP4 per camera via ffmpeg (a note instead when it fails).
    * ``max_bytes``: :class:`ExportTooLarge` before anything is written when the segments' bytes
      exceed it (the dashboard passes ``storage.export_max_bytes``; the CLI none).

    Raises :class:`EvidenceMissing` when an uploaded chain link or a segment is missing from
    object storage (links still in the hub's WAL are rebuilt from the DB row); other storage
    errors propagate.  On any failure nothing is left at ``out`` (the ``.part`` file is removed).
    """
    from storage.segments import SegmentRecord, SegmentStore

    footage = sum(int(r.size) for c in cameras for r in c.segments)
    if max_bytes is not None and footage > max_bytes:
        raise ExportTooLarge(
            f"the export would hold {footage} bytes of footage, more than storage.export_max_bytes "
            f"({max_bytes}); export a shorter range or fewer cameras"
        )
    bucket = cfg.storage.s3.bucket_segments
    seal_kid = key_id(seal_public_pem)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    files: list[dict[str, Any]] = []
    notes = list(notes or [])
    total_bytes = 0
    n_snap = 0
    n_links = sum(len(c.links) for c in cameras)
    n_segs = sum(len(c.segments) for c in cameras)
    bar = progress_bar(n_links + n_segs + len(events), desc, progress)
    store = SegmentStore(objects, db, cfg.storage.wal_dir, bucket)

    def add(z: zipfile.ZipFile, name: str, data: bytes, compress: bool = True) -> None:
        nonlocal total_bytes
        z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        files.append({"path": name, "sha256": sha256_hex(data), "size": len(data)})
        total_bytes += len(data)

    workdir = tempfile.TemporaryDirectory(prefix="evalwatch-stitch-") if stitch else None
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            cam_docs = []
            for c in cameras:
                for row in c.links:
                    rec = SegmentRecord.model_validate(row)
                    try:
                        link = await objects.get_bytes(bucket, chain_key(c.site, c.room, c.camera, row.seq))
                    except ObjectMissing:
                        if row.uploaded:
                            raise EvidenceMissing(
                                c.path,
                                row.seq,
                                f"chain link seq {row.seq} of {c.path} is missing from object storage",
                            ) from None
                        link = link_bytes(rec.link_fields())  # still in the hub's WAL
                    add(z, f"chain/{c.path}/{row.seq:08d}.json", link)
                    bar.update(1)
                stitch_files: list[Path] = []
                for row in c.segments:
                    rec = SegmentRecord.model_validate(row)
                    try:
                        data = await store.read(rec)
                    except ObjectMissing:
                        raise EvidenceMissing(
                            c.path,
                            row.seq,
                            f"segment {row.key} (seq {row.seq}) is missing from object storage",
                        ) from None
                    add(z, f"segments/{row.key}", data, compress=False)
                    if workdir is not None:
                        sp = Path(workdir.name) / f"{len(stitch_files):06d}{Path(row.key).suffix}"
                        await asyncio.to_thread(sp.write_bytes, data)
                        stitch_files.append(sp)
                    bar.update(1)
                if workdir is not None and stitch_files:
                    mp4 = await asyncio.to_thread(_stitch, stitch_files, Path(workdir.name))
                    for sp in stitch_files:
                        sp.unlink()
                    if mp4 is None:
                        notes.append(f"{c.path}: stitching failed; segments are exported as archived")
                    else:
                        add(z, f"stitched/{c.site}_{c.room}_{c.camera}.mp4", mp4, compress=False)
                cam_docs.append(
                    {
                        "camera": c.path,
                        "first_seq": c.links[0].seq if c.links else c.head_seq + 1,
                        "head_seq": c.head_seq,
                        "segments": [r.seq for r in c.segments],
                        "range": [
                            c.segments[0].start.isoformat() if c.segments else None,
                            c.segments[-1].end.isoformat() if c.segments else None,
                        ],
                    }
                )
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
                        n_snap += 1
                bar.update(1)
            add(z, "events.json", json.dumps(events, ensure_ascii=False, indent=2).encode("utf-8"))
            seal = {
                "session_id": seal_ref.get("session_id"),
                "code": seal_ref.get("code"),
                "key_id": seal_kid,
                "heads": [
                    {"camera": c.path, "payload": c.payload, "signature": c.signature} for c in cameras
                ],
            }
            add(z, "seal.json", json.dumps(seal, ensure_ascii=False, indent=2).encode("utf-8"))
            add(z, SEAL_KEY_FILE, seal_public_pem.encode("ascii"))
            if seal_kid != key.key_id:
                add(z, EXPORT_KEY_FILE, key.public_pem().encode("ascii"))
                notes.append(
                    f"the chain heads were signed by key {seal_kid} ({SEAL_KEY_FILE}); the hub key has "
                    f"changed since, this manifest is signed by key {key.key_id} ({EXPORT_KEY_FILE})"
                )
            add(z, "README.txt", README.encode("utf-8"))
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                **header,
                "cameras": cam_docs,
                "exported_at": datetime.now(UTC).isoformat(),
                "exported_by": actor,
                "key_id": key.key_id,
                "seal_key_id": seal_kid,
                "notes": notes,
                "files": files,
            }
            mbytes = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
            z.writestr("manifest.json", mbytes)
            z.writestr("manifest.sig", key.sign(mbytes))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        if workdir is not None:
            workdir.cleanup()
    return ExportResult(out, n_segs, n_links, len(events), n_snap, total_bytes, notes)


async def export_session(
    db: Any,
    objects: Any,
    cfg: EvalwatchConfig,
    key: HubKey,
    ident: int | str,
    out: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    cameras: Iterable[str] | None = None,
    stitch: bool = False,
    actor: str = "system",
    progress: bool | None = None,
    max_bytes: int | None = None,
) -> ExportResult:
    """:func:`_export_session` while an export hold (``sessions.holds.export_hold``) keeps the
    session's footage from the retention purge."""
    from sessions.holds import export_hold

    info = await get_session(db, ident)
    w_start, w_end = info.window()
    async with export_hold(db, info.cameras, w_start, w_end, actor, hours=cfg.storage.export_hold_hours,
                           what=f"export of session {info.code}"):
        return await _export_session(
            db, objects, cfg, key, ident, out, start=start, end=end, cameras=cameras, stitch=stitch,
            actor=actor, progress=progress, max_bytes=max_bytes,
        )


async def _export_session(
    db: Any,
    objects: Any,
    cfg: EvalwatchConfig,
    key: HubKey,
    ident: int | str,
    out: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    cameras: Iterable[str] | None = None,
    stitch: bool = False,
    actor: str = "system",
    progress: bool | None = None,
    max_bytes: int | None = None,
) -> ExportResult:
    """Write the evidence zip of the sealed session ``ident`` to ``out`` (see module docstring).

    ``start``/``end`` narrow the session window; ``cameras`` (``site/room/camera``) narrow the
    cameras.  ``key`` is the hub's current key: it signs the manifest; the heads keep the
    session's seal signatures, which must verify against one of the hub's trusted keys (key
    files: :func:`sessions.signing.hub_trusted_pems`, never the public key stored in the DB) —
    else :class:`SealError` and nothing is written.  A session sealed before a key change is
    exported with both keys in the zip.
    Raises :class:`SessionError` for bad input (unknown session or camera, not closed, empty
    range) or a chain link / segment missing from object storage, and ``StorageError`` when a
    segment cannot be read.  ``progress``: ``None`` shows a tqdm bar on stderr when it is a
    terminal, ``True`` always, ``False`` never.  Audit ``export``.
    """
    info = await get_session(db, ident)
    if info.status != "closed" or not info.heads:
        raise SessionError(
            f"session {info.code} is {info.status}; only a closed (sealed) session can be exported"
        )
    trusted = await asyncio.to_thread(hub_trusted_pems, cfg.storage.data_dir, key)
    problems = verify_seal(info, trusted)
    seal_pem = seal_key(info, trusted)
    if problems or seal_pem is None:
        raise SealError(
            f"NOT OK: the seal of session {info.code} does not verify against the hub's trusted keys; "
            f"refusing to export: {'; '.join(problems[:3])}"
        )
    s0, e0 = info.window()
    w_start = max(s0, start) if start else s0
    w_end = min(e0, end) if end else e0
    if w_end <= w_start:
        raise SessionError(
            f"the range {w_start.isoformat()} – {w_end.isoformat()} does not overlap the session "
            f"({s0.isoformat()} – {e0.isoformat()})"
        )
    heads = info.heads
    if cameras:
        wanted = list(dict.fromkeys(cameras))
        known = {h.path for h in heads}
        for c in wanted:
            if c not in known:
                raise SessionError(f"camera {c!r} is not in session {info.code} (has {sorted(known)})")
        heads = [h for h in heads if h.path in wanted]

    def q(s: Session) -> tuple[list[EvidenceCamera], list[dict[str, Any]]]:
        cams: list[EvidenceCamera] = []
        for h in heads:
            cam = (Segment.site == h.site) & (Segment.room == h.room) & (Segment.camera == h.camera)
            sel = list(
                s.scalars(
                    select(Segment)
                    .where(cam, Segment.seq >= h.first_seq, Segment.seq <= h.head_seq)
                    .where(Segment.start < w_end, Segment.end > w_start)
                    .order_by(Segment.seq)
                )
            )
            lo = sel[0].seq if sel else h.head_seq + 1
            links = list(
                s.scalars(
                    select(Segment)
                    .where(cam, Segment.seq >= lo, Segment.seq <= h.head_seq)
                    .order_by(Segment.seq)
                )
            )
            cams.append(
                EvidenceCamera(h.site, h.room, h.camera, h.head_seq, h.payload, h.signature, sel, links)
            )
        evs = dump_events(s, session_events(s, info, w_start, w_end))
        paths = {h.path for h in heads}
        return cams, [e for e in evs if CameraId(e["site"], e["room"], e["camera"]).path in paths]

    cams, events = await db.run(q)
    try:
        r = await write_evidence(
            out,
            db=db,
            objects=objects,
            cfg=cfg,
            key=key,
            seal_public_pem=seal_pem,
            seal_ref={"session_id": info.id, "code": info.code},
            header={
                "session": {
                    "id": info.id,
                    "code": info.code,
                    "project": info.project,
                    "bids": info.bids,
                    "started_at": info.started_at.isoformat() if info.started_at else None,
                    "closed_at": info.closed_at.isoformat() if info.closed_at else None,
                },
                "range": {"from": w_start.isoformat(), "to": w_end.isoformat()},
            },
            cameras=cams,
            events=events,
            actor=actor,
            stitch=stitch,
            progress=progress,
            desc=f"export {info.code}",
            max_bytes=max_bytes,
        )
    except EvidenceMissing as e:
        raise SessionError(f"{e}; run: evalwatch verify --camera {e.camera}") from None

    def audit(s: Session) -> None:
        s.add(
            AuditLog(
                actor=actor[:64],
                action="export",
                target=f"session:{info.id}:{info.code}",
                details={
                    "from": w_start.isoformat(),
                    "to": w_end.isoformat(),
                    "cameras": [h.path for h in heads],
                    "segments": r.segments,
                    "file": r.path.name,
                },
            )
        )

    await db.run(audit)
    return r


def _stitch(paths: list[Path], workdir: Path) -> bytes | None:
    """One MP4 from the segment files (ffmpeg concat demuxer, stream copy); None if ffmpeg fails."""
    import ffmpeg
    import imageio_ffmpeg

    lst = workdir / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p in paths))
    out = workdir / "stitched.mp4"
    try:
        (
            ffmpeg.input(str(lst), format="concat", safe=0)
            .output(str(out), c="copy", movflags="+faststart")
            .overwrite_output()
            .run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), quiet=True)
        )
    except (ffmpeg.Error, OSError):
        return None
    data = out.read_bytes()
    out.unlink()
    return data
