"""Credit records (信用档案, docs/credit.md): supervisors' judgements of incidents, kept forever.

A supervisor (or admin) **confirms** an incident as a violation or **dismisses** it, with a
category (``cfg.credit.categories``), a note and the evidence (:func:`evidence_of`: the snapshot
key, the camera's footage range and the chain positions of the segments covering it, and the
session's signed head of that camera when sealed).  That makes a :class:`CreditRecord` for the
expert on the incident's seat (``sessions.experts.event_experts``) and its first revision.
Every later change — a revision of the decision/category/note, the expert's statement, an appeal
and its decision — appends a revision holding the whole state, who changed it, when, which
fields and why; nothing is updated in place or deleted.  An expert's credit record is the list
of records whose current decision is ``violation``.

Exports (:func:`to_csv`, :func:`to_xlsx`, :func:`signed_feed`) write the current state; callers
that may not see names (observers) pass ``names=False`` and get codes only.  The JSON feed for
the city's credit platform is signed with the hub's Ed25519 key: ``signature`` is the base64
signature of ``storage.chain.canonical_json(feed)`` (:func:`verify_feed`).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from sessions.credit_models import APPEAL_STATES, CreditRecord, CreditRevision, Expert
from sessions.experts import event_experts
from sessions.models import EvalSession, SessionHead
from storage.chain import canonical_json
from storage.common import CameraId, utcnow
from storage.incident import IsoTime
from storage.models import AuditLog, EventRow, Segment

Decision = Literal["violation", "dismissed"]
Appeal = Literal["open", "upheld", "overturned"]
FEED_FORMAT = "evalwatch-credit-feed"
FOOTAGE_MARGIN = timedelta(seconds=10)


class CreditError(ValueError):
    """A request the records refuse; ``code`` is the dashboard's i18n key, the message says why."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class RevisionOut(BaseModel):
    rev: int
    at: IsoTime
    actor: str
    role: str | None
    action: str = Field(description="confirm | dismiss | revise | statement | appeal | appeal_decision")
    changed: list[str]
    decision: Decision
    category: str | None
    note: str | None
    statement: str | None
    appeal: Appeal | None
    reason: str | None


class CreditRecordOut(BaseModel):
    """A credit record in its current state (its newest revision), with the history."""

    id: int
    event_id: int
    expert_code: str | None
    expert_name: str | None = Field(default=None, description="absent for observers")
    session_id: int | None
    session_code: str | None = None
    site: str
    room: str
    camera: str
    seat: str | None
    rule: str
    occurred_at: IsoTime
    decision: Decision
    category: str | None
    note: str | None
    statement: str | None
    appeal: Appeal | None
    evidence: dict[str, Any] | None
    created_at: IsoTime
    created_by: str
    updated_at: IsoTime
    updated_by: str
    revisions: list[RevisionOut] = []


def evidence_of(s: Session, e: EventRow) -> dict[str, Any]:
    """The evidence of incident ``e``: snapshot key, footage range of its camera and the chain
    positions (seq, link hash, segment sha256) of the segments covering it; the session's sealed
    head of the camera when the session is closed (the head authenticates every earlier link)."""
    start = e.footage_start or (e.started_at - FOOTAGE_MARGIN)
    end = e.footage_end or ((e.ended_at or e.started_at) + FOOTAGE_MARGIN)
    segs = s.scalars(
        select(Segment)
        .where(Segment.site == e.site, Segment.room == e.room, Segment.camera == e.camera)
        .where(Segment.start < end, Segment.end > start)
        .order_by(Segment.seq)
    ).all()
    out: dict[str, Any] = {
        "snapshot_key": e.snapshot_key,
        "camera": CameraId(e.site, e.room, e.camera).path,
        "footage_start": start.isoformat(),
        "footage_end": end.isoformat(),
        "segments": [
            {
                "seq": g.seq,
                "start": g.start.isoformat(),
                "end": g.end.isoformat(),
                "key": g.key,
                "sha256": g.sha256,
                "link_hash": g.link_hash,
            }
            for g in segs
        ],
        "sealed_head": None,
    }
    if e.session_id is not None:
        head = s.get(SessionHead, (e.session_id, e.site, e.room, e.camera))
        if head is not None:
            out["sealed_head"] = {
                "session_id": e.session_id,
                "head_seq": head.head_seq,
                "head_hash": head.head_hash,
                "signature": head.signature,
            }
    return out


def _audit(
    s: Session,
    actor: str,
    role: str | None,
    action: str,
    rec: CreditRecord,
    details: dict[str, Any],
    ip: str | None,
) -> None:
    s.add(
        AuditLog(
            actor=actor[:64],
            role=role,
            action=action,
            target=f"credit:{rec.id}",
            ip=ip,
            details={"event_id": rec.event_id, "expert_code": rec.expert_code, **details},
        )
    )


def _latest(s: Session, record_id: int) -> CreditRevision | None:
    return s.scalars(
        select(CreditRevision)
        .where(CreditRevision.record_id == record_id)
        .order_by(CreditRevision.rev.desc())
    ).first()


def judge(
    s: Session,
    event_id: int,
    *,
    decision: Decision,
    category: str | None,
    note: str,
    categories: list[str],
    actor: str,
    role: str | None,
    ip: str | None = None,
) -> CreditRecord:
    """Confirm (``violation``) or dismiss incident ``event_id``: creates its record, or appends a
    ``revise`` revision when it was judged before.  Raises :class:`CreditError`."""
    e = s.get(EventRow, event_id)
    if e is None:
        raise CreditError("err.event_not_found", f"no event {event_id}", 404)
    if decision == "violation":
        if not category:
            raise CreditError("err.credit_category", f"a violation needs a category, one of {categories}")
    if category is not None and category not in categories:
        raise CreditError("err.credit_category", f"unknown category {category!r}; one of {categories}")
    rec = s.scalars(select(CreditRecord).where(CreditRecord.event_id == event_id)).first()
    if rec is not None:
        return revise(
            s,
            rec.id,
            decision=decision,
            category=category,
            note=note,
            reason=None,
            actor=actor,
            role=role,
            ip=ip,
        )
    who = event_experts(s, [e]).get(e.id)
    now = utcnow()
    rec = CreditRecord(
        event_id=e.id,
        expert_code=who.code if who else None,
        session_id=e.session_id,
        site=e.site,
        room=e.room,
        camera=e.camera,
        seat=e.seat,
        rule=e.rule,
        occurred_at=e.started_at,
        created_at=now,
        created_by=actor[:64],
    )
    s.add(rec)
    s.flush()
    action = "confirm" if decision == "violation" else "dismiss"
    s.add(
        CreditRevision(
            record_id=rec.id,
            rev=1,
            at=now,
            actor=actor[:64],
            role=role,
            action=action,
            changed=["decision", "category", "note", "evidence"],
            decision=decision,
            category=category,
            note=note or None,
            evidence=evidence_of(s, e),
        )
    )
    _audit(s, actor, role, f"credit_{action}", rec, {"category": category, "note": note or None}, ip)
    s.flush()
    return rec


def revise(
    s: Session,
    record_id: int,
    *,
    actor: str,
    role: str | None,
    decision: Decision | None = None,
    category: str | None = None,
    note: str | None = None,
    statement: str | None = None,
    appeal: Appeal | None = None,
    reason: str | None,
    categories: list[str] | None = None,
    ip: str | None = None,
) -> CreditRecord:
    """Append a revision changing the given fields (``None`` = unchanged).  The action is
    ``statement`` / ``appeal`` (opened) / ``appeal_decision`` (upheld/overturned; overturned sets
    the decision to ``dismissed``) / ``revise``.  A change that changes nothing is refused."""
    rec = s.get(CreditRecord, record_id)
    if rec is None:
        raise CreditError("err.credit_not_found", f"no credit record {record_id}", 404)
    cur = _latest(s, record_id)
    assert cur is not None
    if categories is not None and category is not None and category not in categories:
        raise CreditError("err.credit_category", f"unknown category {category!r}; one of {categories}")
    if appeal is not None and appeal not in APPEAL_STATES:
        raise CreditError("err.credit_appeal", f"appeal must be one of {APPEAL_STATES}")
    if appeal in ("upheld", "overturned") and cur.appeal != "open":
        raise CreditError("err.credit_appeal", "decide an appeal only while one is open", 409)
    if appeal == "open" and cur.appeal == "open":
        raise CreditError("err.credit_appeal", "an appeal is already open", 409)
    new = {
        "decision": decision or cur.decision,
        "category": category if category is not None else cur.category,
        "note": note if note is not None else cur.note,
        "statement": statement if statement is not None else cur.statement,
        "appeal": appeal or cur.appeal,
    }
    if appeal == "overturned":
        new["decision"] = "dismissed"
    if new["decision"] == "violation" and not new["category"]:
        raise CreditError("err.credit_category", "a violation needs a category")
    changed = [k for k, v in new.items() if v != getattr(cur, k)]
    if not changed:
        raise CreditError("err.credit_unchanged", "nothing to change", 409)
    if appeal == "open":
        action = "appeal"
    elif appeal in ("upheld", "overturned"):
        action = "appeal_decision"
    elif changed == ["statement"]:
        action = "statement"
    else:
        action = "revise"
    s.add(
        CreditRevision(
            record_id=rec.id,
            rev=cur.rev + 1,
            at=utcnow(),
            actor=actor[:64],
            role=role,
            action=action,
            changed=changed,
            reason=reason or None,
            evidence=cur.evidence,
            **new,
        )
    )
    _audit(s, actor, role, f"credit_{action}", rec, {"changed": changed, "reason": reason or None}, ip)
    s.flush()
    return rec


def records(
    s: Session,
    *,
    ids: list[int] | None = None,
    expert_code: str | None = None,
    decision: Decision | None = None,
    session_id: int | None = None,
    names: bool,
    history: bool = True,
) -> list[CreditRecordOut]:
    """Records in their current state, oldest incident first; ``names`` False leaves names out."""
    stmt = select(CreditRecord)
    if ids is not None:
        stmt = stmt.where(CreditRecord.id.in_(ids))
    if expert_code is not None:
        stmt = stmt.where(CreditRecord.expert_code == expert_code)
    if session_id is not None:
        stmt = stmt.where(CreditRecord.session_id == session_id)
    recs = list(s.scalars(stmt.order_by(CreditRecord.occurred_at, CreditRecord.id)))
    if not recs:
        return []
    revs: dict[int, list[CreditRevision]] = {}
    for v in s.scalars(
        select(CreditRevision)
        .where(CreditRevision.record_id.in_([x.id for x in recs]))
        .order_by(CreditRevision.rev)
    ):
        revs.setdefault(v.record_id, []).append(v)
    codes = {r.expert_code for r in recs if r.expert_code}
    who = (
        dict(s.execute(select(Expert.code, Expert.name).where(Expert.code.in_(codes))).all())
        if names and codes
        else {}
    )
    sids = {r.session_id for r in recs if r.session_id is not None}
    scodes = (
        dict(s.execute(select(EvalSession.id, EvalSession.code).where(EvalSession.id.in_(sids))).all())
        if sids
        else {}
    )
    out = []
    for r in recs:
        hist = revs[r.id]
        cur = hist[-1]
        if decision is not None and cur.decision != decision:
            continue
        out.append(
            CreditRecordOut(
                id=r.id,
                event_id=r.event_id,
                expert_code=r.expert_code,
                expert_name=who.get(r.expert_code) if names and r.expert_code else None,
                session_id=r.session_id,
                session_code=scodes.get(r.session_id) if r.session_id else None,
                site=r.site,
                room=r.room,
                camera=r.camera,
                seat=r.seat,
                rule=r.rule,
                occurred_at=r.occurred_at,
                decision=cur.decision,  # type: ignore[arg-type]
                category=cur.category,
                note=cur.note,
                statement=cur.statement,
                appeal=cur.appeal,  # type: ignore[arg-type]
                evidence=cur.evidence,
                created_at=r.created_at,
                created_by=r.created_by,
                updated_at=cur.at,
                updated_by=cur.actor,
                revisions=[RevisionOut.model_validate(x, from_attributes=True) for x in hist]
                if history
                else [],
            )
        )
    return out


# ------------------------------------------------------------------------------ exports

COLUMNS = (
    "id",
    "event_id",
    "expert_code",
    "expert_name",
    "session_code",
    "site",
    "room",
    "camera",
    "seat",
    "rule",
    "occurred_at",
    "decision",
    "category",
    "note",
    "statement",
    "appeal",
    "updated_at",
    "updated_by",
    "revisions",
    "snapshot_key",
    "footage_start",
    "footage_end",
    "segments",
)


def _row(r: CreditRecordOut, names: bool) -> list[Any]:
    ev = r.evidence or {}
    vals: dict[str, Any] = {
        **r.model_dump(mode="json", exclude={"revisions", "evidence"}),
        "revisions": len(r.revisions),
        "snapshot_key": ev.get("snapshot_key"),
        "footage_start": ev.get("footage_start"),
        "footage_end": ev.get("footage_end"),
        "segments": " ".join(f"{g['seq']}:{g['link_hash']}" for g in ev.get("segments", [])),
    }
    return [_cell(c, vals.get(c)) for c in COLUMNS if names or c != "expert_name"]


#: Free-text columns: a value starting with one of ``FORMULA`` is written with a leading ``'`` so
#: that a spreadsheet shows it as text instead of running it as a formula (CSV injection).
TEXT_COLUMNS = {"expert_name", "category", "note", "statement", "updated_by"}
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def text_cell(v: Any) -> Any:
    """``v`` for a CSV/XLSX cell a spreadsheet shows as text: a string starting with one of
    ``FORMULA`` gets a leading ``'`` (CSV injection); anything else unchanged."""
    if isinstance(v, str) and v.startswith(FORMULA):
        return "'" + v
    return v


def _cell(col: str, v: Any) -> Any:
    return text_cell(v) if col in TEXT_COLUMNS else v


def _header(names: bool) -> list[str]:
    return [c for c in COLUMNS if names or c != "expert_name"]


def to_csv(recs: list[CreditRecordOut], *, names: bool) -> bytes:
    """UTF-8 CSV with a BOM (Excel opens it as UTF-8); ``names`` False: no name column."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_header(names))
    for r in recs:
        w.writerow(["" if v is None else v for v in _row(r, names)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(recs: list[CreditRecordOut], *, names: bool) -> bytes:
    """One sheet ``credit`` with the CSV's columns (openpyxl)."""
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("credit")
    ws.append(_header(names))
    for r in recs:
        ws.append(_row(r, names))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def signed_feed(
    recs: list[CreditRecordOut], key: Any, *, names: bool, now: datetime | None = None
) -> dict[str, Any]:
    """``{"feed": {...}, "signature": b64, "key_id", "public_key_pem"}``: ``signature`` is the
    hub key's Ed25519 signature of ``canonical_json(feed)``.  The receiver checks it against a
    public key it already trusts (``GET /api/sessions/public-key``), never the one included."""
    feed = {
        "format": FEED_FORMAT,
        "version": 1,
        "generated_at": (now or utcnow()).isoformat(),
        "key_id": key.key_id,
        "names": names,
        "records": [r.model_dump(mode="json", exclude=None if names else {"expert_name"}) for r in recs],
    }
    return {
        "feed": feed,
        "signature": key.sign(canonical_json(feed).encode()),
        "key_id": key.key_id,
        "public_key_pem": key.public_pem(),
    }


def verify_feed(doc: dict[str, Any], trusted_pem: str) -> bool:
    """True when ``doc`` (a :func:`signed_feed` answer) is signed by ``trusted_pem``."""
    from sessions.signing import verify_signature

    return verify_signature(trusted_pem, canonical_json(doc["feed"]).encode(), str(doc.get("signature", "")))
