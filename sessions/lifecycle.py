"""Session lifecycle: create (``scheduled``) → start (``running``) → close (``closed``, sealed).

Contract:

* :func:`create_session` validates a :class:`SessionSpec` against the config — every room,
  camera and seat must exist; an expert sits once; a seat holds one expert; every seat's bid is
  one of the session's bids; ``planned_end > planned_start`` (timezone-aware) — and stores it as
  ``scheduled``.  Seats come from ``seats:`` or verbatim from the JSON output of
  ``evalwatch seats assign --json`` (``seating: {seed, assignments}``); a seat's ``room`` may be
  ``site/room`` or a room id that is unique among the session's rooms.
* :func:`start_session` (``scheduled`` → ``running``) arms the rules: from then on
  :func:`active_sessions` returns the session for each of its rooms with the set of assigned
  seats (what the analysis pipeline needs).  A room can be in one running session at a time.
* :func:`close_session` (``running`` → ``closed``) seals the session: per camera it records the
  chain head in the DB (``head_seq``, ``head_hash``; ``0``/``GENESIS`` when the camera never
  archived anything) and the first chain position of the session (``first_seq``), and signs the
  canonical payload (:func:`seal_payload`) with the hub's Ed25519 key.  It also tags the
  session's events (``events.session_id``) and records the retention outcome
  (:func:`apply_retention`).
* Every transition writes an ``audit_log`` row (``session_create|start|close``) and a wrong
  transition raises :class:`SessionError` naming the session and its status.

All datetimes are UTC-aware.  Errors a user can cause raise :class:`SessionError` (message only,
no traceback needed); :class:`SessionNotFound` is its subclass.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from sessions.models import EvalSession, SessionCamera, SessionHead, SessionSeat
from sessions.signing import HubKey, key_id, verify_signature
from storage.chain import GENESIS, canonical_json, iso_ms
from storage.common import CameraId
from storage.models import AuditLog, EventRow, Segment

log = logging.getLogger("evalwatch.sessions")

T = TypeVar("T")
SEAL_VERSION = 1
SEAL_TYPE = "evalwatch-session-seal"


class SessionError(ValueError):
    """Bad session input or a transition that is not allowed; the message says why."""


class SessionNotFound(SessionError):
    """No session with that id or code."""


class SealError(SessionError):
    """The session's seal does not verify against the hub's trusted keys (tampered record)."""


# ----------------------------------------------------------------------------------- spec


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("must include a timezone (e.g. 2026-03-01T09:00:00+08:00 or ...Z)")
    return v.astimezone(UTC)


class RoomSpec(BaseModel):
    """A room of the session; ``cameras`` defaults to every camera of the room in the config."""

    model_config = ConfigDict(extra="forbid")
    site: str
    room: str
    cameras: list[str] | None = None


class SeatSpec(BaseModel):
    """One expert on one seat (the shape of ``evalwatch seats assign --json`` assignments)."""

    model_config = ConfigDict(extra="forbid")
    expert: str = Field(min_length=1, max_length=200)
    bid: str = Field(min_length=1, max_length=64)
    room: str = Field(min_length=1)
    seat: str = Field(min_length=1, max_length=64)
    site: str | None = None
    #: The expert's code in the register (docs/credit.md); ``expert`` defaults to it.
    expert_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    @model_validator(mode="before")
    @classmethod
    def _expert_from_code(cls, v: Any) -> Any:
        if isinstance(v, dict) and not v.get("expert") and v.get("expert_code"):
            v = {**v, "expert": v["expert_code"]}
        return v

    @field_validator("expert", "bid", "room", "seat", "site", "expert_code", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class SeatingOutput(BaseModel):
    """The JSON output of ``evalwatch seats assign --json``."""

    seed: int | None = None
    assignments: list[SeatSpec]


class SessionSpec(BaseModel):
    """What it takes to create a session (YAML/JSON file for the CLI, JSON body for the API)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    project: str = Field(min_length=1, max_length=200)
    bids: list[str] = Field(min_length=1)
    planned_start: datetime
    planned_end: datetime
    rooms: list[RoomSpec] = Field(min_length=1)
    seats: list[SeatSpec] = []
    seating: SeatingOutput | None = None

    @field_validator("bids", mode="before")
    @classmethod
    def _bids(cls, v: Any) -> Any:
        if isinstance(v, str | int):
            v = [v]
        return [str(b) for b in v] if isinstance(v, list) else v

    @field_validator("planned_start", "planned_end")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _aware(v)

    @model_validator(mode="after")
    def _check(self) -> SessionSpec:
        if self.planned_end <= self.planned_start:
            raise ValueError("planned_end must be after planned_start")
        if self.seats and self.seating:
            raise ValueError("give either 'seats' or 'seating', not both")
        if len(set(self.bids)) != len(self.bids):
            raise ValueError("bids: duplicate bid code")
        return self

    def all_seats(self) -> list[SeatSpec]:
        return list(self.seating.assignments) if self.seating else list(self.seats)


def _describe(e: Any) -> str:
    loc = ".".join(str(p) for p in e.get("loc", ()))
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_spec(data: Any, where: str = "session") -> SessionSpec:
    """Validate a spec mapping; :class:`SessionError` lists the offending fields."""
    if not isinstance(data, dict):
        raise SessionError(f"{where}: expected a mapping with code, project, bids, planned_start, ...")
    try:
        return SessionSpec.model_validate(data)
    except ValidationError as e:
        lines = [_describe(x) for x in e.errors()[:10]]
        raise SessionError(f"{where}: " + "; ".join(lines)) from None


def load_spec(path: str | Path) -> SessionSpec:
    """Read a session spec from a YAML or JSON file (:class:`SessionError` on any problem)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SessionError(f"{p}: cannot read: {e}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise SessionError(
            f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}"
        ) from None
    return parse_spec(data, str(p))


# ------------------------------------------------------------------------------ read model


class SeatRow(BaseModel):
    site: str
    room: str
    seat: str
    expert: str
    bid: str
    expert_code: str | None = None


class HeadRow(BaseModel):
    site: str
    room: str
    camera: str
    first_seq: int
    head_seq: int
    head_hash: str
    sealed_at: datetime
    #: The signed canonical payload: kept for verification, left out of the JSON form.
    payload: str = Field(exclude=True)
    signature: str

    @property
    def path(self) -> str:
        return CameraId(self.site, self.room, self.camera).path


class SessionInfo(BaseModel):
    """A session as read from the DB (detached, JSON-friendly via :meth:`to_dict`)."""

    id: int
    code: str
    project: str
    bids: list[str]
    planned_start: datetime
    planned_end: datetime
    status: str
    seating_seed: str | None
    created_at: datetime
    created_by: str
    started_at: datetime | None
    started_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    key_id: str | None
    public_key_pem: str | None
    retention: dict[str, Any] | None
    cameras: list[CameraId]
    seats: list[SeatRow]
    heads: list[HeadRow]

    def rooms(self) -> list[tuple[str, str]]:
        """The (site, room) pairs of the session, in camera order, without duplicates."""
        out: list[tuple[str, str]] = []
        for c in self.cameras:
            if (c.site, c.room) not in out:
                out.append((c.site, c.room))
        return out

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The session's time range: actual start/close when known, else the planned hours
        (a running session runs until ``now``)."""
        start = self.started_at or self.planned_start
        if self.closed_at is not None:
            end = self.closed_at
        elif self.started_at is not None:
            end = max(now or datetime.now(UTC), start)
        else:
            end = self.planned_end
        return start, end

    def head(self, site: str, room: str, camera: str) -> HeadRow | None:
        for h in self.heads:
            if (h.site, h.room, h.camera) == (site, room, camera):
                return h
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the API's ``SessionInfo``: heads without their payload)."""
        return self.model_dump(mode="json")


def _load(s: Session, ident: int | str) -> EvalSession:
    row: EvalSession | None = None
    if isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit()):
        row = s.get(EvalSession, int(ident))
    if row is None and isinstance(ident, str):
        row = s.scalars(select(EvalSession).where(EvalSession.code == ident)).first()
    if row is None:
        raise SessionNotFound(f"no session {ident!r} (give its id or code)")
    return row


def _info(s: Session, row: EvalSession) -> SessionInfo:
    cams = s.scalars(
        select(SessionCamera)
        .where(SessionCamera.session_id == row.id)
        .order_by(SessionCamera.site, SessionCamera.room, SessionCamera.camera)
    )
    seats = s.scalars(
        select(SessionSeat)
        .where(SessionSeat.session_id == row.id)
        .order_by(SessionSeat.site, SessionSeat.room, SessionSeat.seat)
    )
    heads = s.scalars(
        select(SessionHead)
        .where(SessionHead.session_id == row.id)
        .order_by(SessionHead.site, SessionHead.room, SessionHead.camera)
    )
    return SessionInfo(
        id=row.id,
        code=row.code,
        project=row.project,
        bids=list(row.bids),
        planned_start=row.planned_start,
        planned_end=row.planned_end,
        status=row.status,
        seating_seed=row.seating_seed,
        created_at=row.created_at,
        created_by=row.created_by,
        started_at=row.started_at,
        started_by=row.started_by,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        key_id=row.key_id,
        public_key_pem=row.public_key_pem,
        retention=row.retention,
        cameras=[CameraId(c.site, c.room, c.camera) for c in cams],
        seats=[
            SeatRow(
                site=x.site, room=x.room, seat=x.seat, expert=x.expert, bid=x.bid, expert_code=x.expert_code
            )
            for x in seats
        ],
        heads=[
            HeadRow(
                site=h.site,
                room=h.room,
                camera=h.camera,
                first_seq=h.first_seq,
                head_seq=h.head_seq,
                head_hash=h.head_hash,
                sealed_at=h.sealed_at,
                payload=h.payload,
                signature=h.signature,
            )
            for h in heads
        ],
    )


async def _run(db: Any, fn: Callable[[Session], T]) -> T:
    return await db.run(fn)


async def get_session(db: Any, ident: int | str) -> SessionInfo:
    """The session with id or code ``ident``; :class:`SessionNotFound` otherwise."""
    return await _run(db, lambda s: _info(s, _load(s, ident)))


async def list_sessions(db: Any, status: str | None = None) -> list[SessionInfo]:
    """Every session (newest planned start first), optionally of one status."""

    def q(s: Session) -> list[SessionInfo]:
        stmt = select(EvalSession).order_by(EvalSession.planned_start.desc(), EvalSession.id.desc())
        if status:
            stmt = stmt.where(EvalSession.status == status)
        return [_info(s, r) for r in s.scalars(stmt)]

    return await _run(db, q)


# ------------------------------------------------------------------------------ transitions


def _audit(s: Session, actor: str, action: str, row: EvalSession, details: dict[str, Any]) -> None:
    s.add(
        AuditLog(
            actor=actor[:64],
            role=None,
            action=action,
            target=f"session:{row.id}:{row.code}",
            details=details,
        )
    )


def _resolve(cfg: EvalwatchConfig, spec: SessionSpec) -> tuple[list[CameraId], list[SeatRow]]:
    cams: list[CameraId] = []
    room_seats: dict[tuple[str, str], set[str]] = {}
    for i, r in enumerate(spec.rooms):
        try:
            room = cfg.room(r.site, r.room)
        except KeyError:
            raise SessionError(f"rooms[{i}]: no room {r.site}/{r.room} in the config") from None
        if (r.site, r.room) in room_seats:
            raise SessionError(f"rooms[{i}]: room {r.site}/{r.room} listed twice")
        known = [c.id for c in room.cameras]
        chosen = r.cameras if r.cameras is not None else known
        if not chosen:
            raise SessionError(f"rooms[{i}]: room {r.site}/{r.room} needs at least one camera")
        for c in chosen:
            if c not in known:
                raise SessionError(f"rooms[{i}]: room {r.site}/{r.room} has no camera {c!r} (has {known})")
            cams.append(CameraId(r.site, r.room, c))
        room_seats[(r.site, r.room)] = {s.id for s in room.seats}
    seats: list[SeatRow] = []
    experts: set[str] = set()
    codes: set[str] = set()
    taken: set[tuple[str, str, str]] = set()
    for i, st in enumerate(spec.all_seats()):
        where = f"seats[{i}] ({st.expert})"
        if st.site is not None:
            site, room_id = st.site, st.room
        elif "/" in st.room:
            site, _, room_id = st.room.partition("/")
        else:
            matches = [k for k in room_seats if k[1] == st.room]
            if len(matches) != 1:
                raise SessionError(
                    f"{where}: room {st.room!r} "
                    + (
                        "is not one of the session's rooms"
                        if not matches
                        else "is ambiguous; write site/room"
                    )
                )
            site, room_id = matches[0]
        if (site, room_id) not in room_seats:
            raise SessionError(f"{where}: room {site}/{room_id} is not one of the session's rooms")
        if st.seat not in room_seats[(site, room_id)]:
            raise SessionError(f"{where}: room {site}/{room_id} has no seat {st.seat!r} in the config")
        if st.bid not in spec.bids:
            raise SessionError(f"{where}: bid {st.bid!r} is not one of the session's bids {spec.bids}")
        if st.expert in experts:
            raise SessionError(f"{where}: expert {st.expert!r} is seated twice")
        if (site, room_id, st.seat) in taken:
            raise SessionError(f"{where}: seat {site}/{room_id}/{st.seat} is assigned twice")
        if st.expert_code is not None and st.expert_code in codes:
            raise SessionError(f"{where}: expert code {st.expert_code!r} is seated twice")
        experts.add(st.expert)
        if st.expert_code is not None:
            codes.add(st.expert_code)
        taken.add((site, room_id, st.seat))
        seats.append(
            SeatRow(
                site=site,
                room=room_id,
                seat=st.seat,
                expert=st.expert,
                bid=st.bid,
                expert_code=st.expert_code,
            )
        )
    return cams, seats


async def create_session(db: Any, cfg: EvalwatchConfig, spec: SessionSpec, actor: str) -> SessionInfo:
    """Validate ``spec`` against ``cfg`` and store it as a ``scheduled`` session."""
    cams, seats = _resolve(cfg, spec)

    def go(s: Session) -> SessionInfo:
        if s.scalars(select(EvalSession.id).where(EvalSession.code == spec.code)).first() is not None:
            raise SessionError(f"a session with code {spec.code!r} already exists")
        from sessions.credit_models import Expert

        # a seat whose expert *is* a register code (the drawing system's output, a seating drawn
        # over codes) is linked to that expert
        plain = {x.expert for x in seats if not x.expert_code}
        if plain:
            linked = set(s.scalars(select(Expert.code).where(Expert.code.in_(plain))))
            for x in seats:
                if not x.expert_code and x.expert in linked:
                    x.expert_code = x.expert
        wanted = {x.expert_code for x in seats if x.expert_code}
        if wanted:
            known = set(s.scalars(select(Expert.code).where(Expert.code.in_(wanted))))
            unknown = sorted(wanted - known)
            if unknown:
                raise SessionError(
                    f"seats: expert code(s) {', '.join(unknown)} not in the expert register "
                    "(import them first: evalwatch experts import FILE)"
                )
        row = EvalSession(
            code=spec.code,
            project=spec.project,
            bids=list(spec.bids),
            planned_start=spec.planned_start,
            planned_end=spec.planned_end,
            status="scheduled",
            seating_seed=(str(spec.seating.seed) if spec.seating and spec.seating.seed is not None else None),
            created_by=actor[:64],
        )
        s.add(row)
        s.flush()
        for c in cams:
            s.add(SessionCamera(session_id=row.id, site=c.site, room=c.room, camera=c.camera))
        for x in seats:
            s.add(
                SessionSeat(
                    session_id=row.id,
                    site=x.site,
                    room=x.room,
                    seat=x.seat,
                    expert=x.expert,
                    bid=x.bid,
                    expert_code=x.expert_code,
                )
            )
        _audit(s, actor, "session_create", row, {"cameras": len(cams), "seats": len(seats)})
        s.flush()
        return _info(s, row)

    info = await _run(db, go)
    log.info("session created id=%s code=%s cameras=%s seats=%s", info.id, info.code, len(cams), len(seats))
    return info


async def start_session(db: Any, ident: int | str, actor: str, *, now: datetime | None = None) -> SessionInfo:
    """``scheduled`` → ``running``: from now on :func:`active_sessions` reports its seats."""
    now = (now or datetime.now(UTC)).astimezone(UTC)

    def go(s: Session) -> SessionInfo:
        row = _load(s, ident)
        if row.status != "scheduled":
            raise SessionError(f"session {row.code} is {row.status}; only a scheduled session can start")
        rooms = {
            (c.site, c.room)
            for c in s.scalars(select(SessionCamera).where(SessionCamera.session_id == row.id))
        }
        busy = s.execute(
            select(EvalSession.code, SessionCamera.site, SessionCamera.room)
            .join(SessionCamera, SessionCamera.session_id == EvalSession.id)
            .where(EvalSession.status == "running", EvalSession.id != row.id)
        ).all()
        for code, site, room in busy:
            if (site, room) in rooms:
                raise SessionError(f"room {site}/{room} is already in running session {code}; close it first")
        row.status = "running"
        row.started_at = now
        row.started_by = actor[:64]
        _audit(s, actor, "session_start", row, {"at": now.isoformat()})
        s.flush()
        return _info(s, row)

    info = await _run(db, go)
    log.info("session started id=%s code=%s", info.id, info.code)
    return info


def seal_payload(
    info: SessionInfo,
    camera: CameraId,
    *,
    first_seq: int,
    head_seq: int,
    head_hash: str,
    sealed_at: datetime,
    closed_at: datetime,
    key: str,
) -> str:
    """The canonical JSON a camera's seal signs (``storage.chain.canonical_json``)."""
    return canonical_json(
        {
            "v": SEAL_VERSION,
            "type": SEAL_TYPE,
            "session": {
                "id": info.id,
                "code": info.code,
                "project": info.project,
                "bids": info.bids,
                "started_at": iso_ms(info.started_at or info.planned_start),
                "closed_at": iso_ms(closed_at),
            },
            "camera": camera.path,
            "first_seq": first_seq,
            "head_seq": head_seq,
            "head_hash": head_hash,
            "sealed_at": iso_ms(sealed_at),
            "key_id": key,
        }
    )


async def apply_retention(objects: Any, bucket: str, keys: list[str], until: datetime) -> dict[str, Any]:
    """Retention of a session's objects, as recorded in the session.

    When the segments bucket has an object-lock configuration (``ObjectStore.bucket_lock_days``)
    each object's retention is raised to ``until`` in ``storage.s3.lock_mode`` (GOVERNANCE or
    COMPLIANCE: a COMPLIANCE retention can be extended, never turned into GOVERNANCE);
    otherwise — or if the server refuses — the result says ``enforced: false`` and why.  Never
    raises for storage errors.
    """
    from storage.objects import StorageError

    out: dict[str, Any] = {"bucket": bucket, "until": until.isoformat(), "objects": len(keys)}
    try:
        days = await objects.bucket_lock_days(bucket)
    except StorageError as e:
        return {**out, "enforced": False, "note": f"object lock status unknown: {e}"}
    if days is None:
        return {
            **out,
            "enforced": False,
            "note": f"bucket {bucket} has no object lock; retention is not enforced by the S3 server",
        }
    out["bucket_lock_days"] = days
    try:
        from minio.retention import Retention

        mode = str(getattr(getattr(objects, "cfg", None), "lock_mode", "governance")).upper()
        client = objects.client
        for k in keys:
            await asyncio.to_thread(client.set_object_retention, bucket, k, Retention(mode, until))
    except Exception as e:  # server without per-object retention: the bucket default still applies
        return {
            **out,
            "enforced": True,
            "mode": "bucket default",
            "note": (
                f"per-object retention refused ({type(e).__name__}); "
                f"bucket default of {days} days applies"
            ),
        }
    return {**out, "enforced": True, "mode": f"{mode} per object"}


async def close_session(
    db: Any,
    cfg: EvalwatchConfig,
    key: HubKey,
    ident: int | str,
    actor: str,
    *,
    objects: Any = None,
    now: datetime | None = None,
) -> SessionInfo:
    """``running`` → ``closed``: record and sign every camera's chain head (see module docstring).

    ``objects`` (an ``ObjectStore``) is used for retention; without it retention is recorded as
    not applied.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    info = await get_session(db, ident)
    if info.status != "running":
        raise SessionError(f"session {info.code} is {info.status}; only a running session can close")
    start = info.started_at or info.planned_start
    keys: list[str] = []

    def heads(s: Session) -> list[tuple[CameraId, int, int, str]]:
        out = []
        for c in info.cameras:
            cam = (Segment.site == c.site) & (Segment.room == c.room) & (Segment.camera == c.camera)
            last = s.scalars(select(Segment).where(cam).order_by(Segment.seq.desc()).limit(1)).first()
            head_seq, head_hash = (last.seq, last.link_hash) if last else (0, GENESIS)
            first = s.scalar(
                select(func.min(Segment.seq)).where(cam, Segment.end > start, Segment.start < now)
            )
            keys.extend(s.scalars(select(Segment.key).where(cam, Segment.end > start, Segment.start < now)))
            out.append((c, int(first) if first is not None else head_seq + 1, head_seq, head_hash))
        return out

    cam_heads = await _run(db, heads)
    until = now + timedelta(days=cfg.storage.retention_days)
    if objects is not None:
        retention = await apply_retention(objects, cfg.storage.s3.bucket_segments, keys, until)
    else:
        retention = {
            "enforced": False,
            "note": "object storage not available at close; retention not applied",
        }
    kid = key.key_id

    def go(s: Session) -> SessionInfo:
        row = _load(s, ident)
        if row.status != "running":
            raise SessionError(f"session {row.code} is {row.status}; only a running session can close")
        s.execute(delete(SessionHead).where(SessionHead.session_id == row.id))
        for c, first_seq, head_seq, head_hash in cam_heads:
            payload = seal_payload(
                info,
                c,
                first_seq=first_seq,
                head_seq=head_seq,
                head_hash=head_hash,
                sealed_at=now,
                closed_at=now,
                key=kid,
            )
            s.add(
                SessionHead(
                    session_id=row.id,
                    site=c.site,
                    room=c.room,
                    camera=c.camera,
                    first_seq=first_seq,
                    head_seq=head_seq,
                    head_hash=head_hash,
                    sealed_at=now,
                    payload=payload,
                    signature=key.sign(payload.encode("utf-8")),
                )
            )
            s.execute(
                update(EventRow)
                .where(
                    EventRow.site == c.site,
                    EventRow.room == c.room,
                    EventRow.camera == c.camera,
                    EventRow.started_at >= start,
                    EventRow.started_at < now,
                    EventRow.session_id.is_(None),
                )
                .values(session_id=row.id)
            )
        row.status = "closed"
        row.closed_at = now
        row.closed_by = actor[:64]
        row.key_id = kid
        row.public_key_pem = key.public_pem()
        row.retention = retention
        _audit(
            s,
            actor,
            "session_close",
            row,
            {
                "heads": {c.path: hs for c, _f, hs, _h in cam_heads},
                "key_id": kid,
                "retention_enforced": retention.get("enforced"),
            },
        )
        s.flush()
        return _info(s, row)

    out = await _run(db, go)
    log.info(
        "session closed and sealed id=%s code=%s cameras=%s key_id=%s",
        out.id,
        out.code,
        len(cam_heads),
        kid[:16],
    )
    return out


# ------------------------------------------------------------------------------ verification


def seal_key(info: SessionInfo, trusted: str | Sequence[str]) -> str | None:
    """The trusted public key PEM that sealed ``info``: the one among ``trusted`` (the hub's key
    files, :func:`sessions.signing.hub_trusted_pems`) under which every head's signature verifies,
    the one named by the row's ``key_id`` first.  ``None`` when no trusted key sealed it.  The
    public key stored in the DB row is never used."""
    cands = sorted(_pems(trusted), key=lambda pem: _kid(pem) != info.key_id)
    for pem in cands:
        if info.heads and all(
            verify_signature(pem, h.payload.encode("utf-8"), h.signature) for h in info.heads
        ):
            return pem
    return None


def _pems(trusted: str | Sequence[str]) -> list[str]:
    return [trusted] if isinstance(trusted, str) else list(trusted)


def _kid(pem: str) -> str | None:
    try:
        return key_id(pem)
    except ValueError:
        return None


def verify_seal(info: SessionInfo, trusted: str | Sequence[str]) -> list[str]:
    """Problems with the session's seal (empty list = every head verifies).

    Checks, per head, the Ed25519 signature of its payload with a key in ``trusted`` — the
    hub's current key and its rotated keys, read from files the hub owns
    (:func:`sessions.signing.hub_trusted_pems`), never the public key stored in the DB — and that
    the payload says what the DB row says (session, camera, seq, hash).  A closed session with
    no heads, or an unclosed one, is a problem.
    """
    if info.status != "closed":
        return [f"session {info.code} is {info.status}, not sealed"]
    trusted = _pems(trusted)
    if not trusted:
        return [f"session {info.code}: no trusted hub key to check the seal with"]
    pem = seal_key(info, trusted)
    problems: list[str] = []
    if pem is None:
        problems.append(
            f"session {info.code}: the seal does not verify with any trusted hub key "
            f"(recorded key {str(info.key_id)[:16]}…)"
        )
        pem = next((p for p in trusted if _kid(p) == info.key_id), trusted[0])
    if not info.heads:
        problems.append(f"session {info.code} is closed but has no sealed heads")
    for h in info.heads:
        if not verify_signature(pem, h.payload.encode("utf-8"), h.signature):
            problems.append(f"{h.path}: bad signature on the sealed chain head")
            continue
        try:
            p = json.loads(h.payload)
        except ValueError:
            problems.append(f"{h.path}: sealed payload is not JSON")
            continue
        expect = {
            "camera": h.path,
            "head_seq": h.head_seq,
            "head_hash": h.head_hash,
            "first_seq": h.first_seq,
        }
        for k, v in expect.items():
            if p.get(k) != v:
                problems.append(f"{h.path}: sealed {k} is {p.get(k)!r} but the record says {v!r}")
        if p.get("session", {}).get("id") != info.id or p.get("session", {}).get("code") != info.code:
            problems.append(f"{h.path}: seal belongs to another session")
    return problems


# ------------------------------------------------------------------------------ pipeline view


@dataclass(frozen=True)
class ActiveSession:
    """What the analysis pipeline needs about a running session in one room."""

    session_id: int
    code: str
    seats: frozenset[str]
    experts: dict[str, str] = field(default_factory=dict)  # seat -> expert
    cameras: frozenset[str] = frozenset()


def _active(s: Session, site: str, room: str) -> list[ActiveSession]:
    ids = (
        select(SessionCamera.session_id)
        .where(SessionCamera.site == site, SessionCamera.room == room)
        .scalar_subquery()
    )
    rows = s.scalars(
        select(EvalSession)
        .where(EvalSession.status == "running", EvalSession.id.in_(ids))
        .order_by(EvalSession.id)
    ).all()
    out = []
    for r in rows:
        seats = s.scalars(
            select(SessionSeat).where(
                SessionSeat.session_id == r.id, SessionSeat.site == site, SessionSeat.room == room
            )
        ).all()
        cams = s.scalars(
            select(SessionCamera.camera).where(
                SessionCamera.session_id == r.id, SessionCamera.site == site, SessionCamera.room == room
            )
        ).all()
        out.append(
            ActiveSession(
                session_id=r.id,
                code=r.code,
                seats=frozenset(x.seat for x in seats),
                experts={x.seat: x.expert for x in seats},
                cameras=frozenset(cams),
            )
        )
    return out


def active_sessions(db: Any, site: str, room: str) -> list[ActiveSession]:
    """Running sessions of ``site/room`` with their assigned seats (sync; call from a worker
    thread in async code, or use :func:`aactive_sessions`).  At most one in practice, since a
    room cannot be in two running sessions."""
    with db.session() as s:
        return _active(s, site, room)


async def aactive_sessions(db: Any, site: str, room: str) -> list[ActiveSession]:
    """Async :func:`active_sessions`."""
    return await _run(db, lambda s: _active(s, site, room))
