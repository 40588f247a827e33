"""HTTP API of the expert register and the credit records (docs/credit.md; logic in
:mod:`sessions.experts` and :mod:`sessions.credit`).

==================================================  ====================================  =======
``GET   /api/experts``                              every role (observers: codes only)    list
``POST  /api/experts``                              admin                                 create
``POST  /api/experts/import?filename=``             admin (body: the CSV/XLSX file)       import
``GET   /api/experts/{code}``                       every role (observers: codes only)    page
``PATCH /api/experts/{code}``                       admin                                 edit
``PUT   /api/experts/{code}/photo``                 admin (body: JPEG or PNG)             photo
``GET   /api/experts/{code}/photo``                 admin, supervisor, auditor            photo
``POST  /api/events/{id}/credit``                   admin, supervisor                     judge
``GET   /api/credit[?expert=&decision=&session=]``  every role (observers: codes only)    list
``GET   /api/credit/categories``                    every role
``GET   /api/credit/export?format=csv|xlsx``        every role (observers: codes only)    file
``GET   /api/credit/feed``                          admin, supervisor, auditor            signed
``GET   /api/credit/{id}``                          every role (observers: codes only)    record
``POST  /api/credit/{id}/revise``                   admin, supervisor                     change
==================================================  ====================================  =======

Every change is audit-logged (``expert_create``, ``expert_update``, ``experts_import``,
``credit_confirm`` / ``credit_dismiss`` / ``credit_revise`` / ``credit_statement`` /
``credit_appeal`` / ``credit_appeal_decision``), and so is every export (``credit_export``) and
every observer view (``expert_list``, ``expert_view``, ``credit_list``, ``credit_view``).
Photos (``expert_photo``) are objects ``experts/<code>.jpg|png`` in the snapshots bucket; observers
never get them (a face is as identifying as a name).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import (
    CreditCategories,
    CreditFeed,
    CreditJudge,
    CreditList,
    CreditRevise,
    ExpertCreate,
    ExpertDetail,
    ExpertList,
    ExpertPublic,
    ExpertUpdate,
    ImportProblem,
    ImportReport,
    media,
)
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.experts import names_allowed
from dashboard.policy import ROLES, Principal, allow, client_ip
from dashboard.routes.common import fetch_object
from sessions import credit
from sessions.credit_models import CreditRecord, CreditRevision, Expert
from sessions.experts import ExpertIn, ImportFileError, check_row, hash_id_number, import_experts, upsert
from storage.common import utcnow

router = APIRouter(tags=["experts"])

ADMINS = ("admin",)
JUDGES = ("admin", "supervisor")
FEED_READERS = ("admin", "supervisor", "auditor")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _violations(s: Session) -> dict[str, int]:
    """Expert code → number of records whose newest revision says ``violation``."""
    newest = (
        select(CreditRevision.record_id, func.max(CreditRevision.rev).label("rev"))
        .group_by(CreditRevision.record_id)
        .subquery()
    )
    rows = s.execute(
        select(CreditRecord.expert_code, func.count())
        .join(newest, newest.c.record_id == CreditRecord.id)
        .join(
            CreditRevision,
            (CreditRevision.record_id == newest.c.record_id) & (CreditRevision.rev == newest.c.rev),
        )
        .where(CreditRevision.decision == "violation", CreditRecord.expert_code.is_not(None))
        .group_by(CreditRecord.expert_code)
    ).all()
    return {str(code): int(n) for code, n in rows}


def _public(e: Expert, names: bool, violations: int) -> ExpertPublic:
    return ExpertPublic(
        code=e.code,
        name=e.name if names else None,
        phone=e.phone if names else None,
        photo_key=e.photo_key if names else None,
        has_id_number=e.id_hash is not None,
        active=e.active,
        source=e.source,
        updated_at=e.updated_at,
        updated_by=e.updated_by,
        violations=violations,
    )


@router.get("/api/experts", response_model=ExpertList)
async def list_experts(
    auditor: Audit, st: State, me: Annotated[Principal, Depends(allow(*ROLES))]
) -> ExpertList:
    """The register by code; observers get codes and counts only (no names, phones, photos)."""
    await auditor.observer("expert_list")
    names = names_allowed(me.role)

    def q(s: Session) -> ExpertList:
        counts = _violations(s)
        rows = s.scalars(select(Expert).order_by(Expert.code))
        return ExpertList(experts=[_public(e, names, counts.get(e.code, 0)) for e in rows])

    return await run_db(st.db, q)


@router.post("/api/experts", status_code=201, response_model=ExpertPublic)
async def create_expert(
    st: State, request: Request, body: ExpertCreate, me: Annotated[Principal, Depends(allow(*ADMINS))]
) -> ExpertPublic:
    """Add one expert (409 ``err.expert_exists`` when the code is taken)."""
    checked = check_row(
        {"code": body.code, "name": body.name, "id_number": body.id_number or "", "phone": body.phone or ""}
    )
    if isinstance(checked, str):
        raise ApiError(422, "err.invalid_input", checked)
    checked.photo = body.photo_key

    def go(s: Session) -> ExpertPublic | None:
        if s.scalars(select(Expert.id).where(Expert.code == checked.code)).first() is not None:
            return None
        upsert(s, checked, me.username, "admin")
        audit.add(
            s,
            me.username,
            "expert_create",
            role=me.role,
            target=f"expert:{checked.code}",
            ip=client_ip(request),
        )
        s.flush()
        row = s.scalars(select(Expert).where(Expert.code == checked.code)).one()
        return _public(row, True, 0)

    out = await run_db(st.db, go)
    if out is None:
        raise ApiError(409, "err.expert_exists", f"expert {body.code!r} exists")
    return out


@router.post(
    "/api/experts/import",
    response_model=ImportReport,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def import_file(
    st: State,
    request: Request,
    me: Annotated[Principal, Depends(allow(*ADMINS))],
    filename: Annotated[str, Query(min_length=1, max_length=200)] = "experts.csv",
) -> ImportReport:
    """Import the drawing system's export (the request body: CSV or XLSX).  The good rows are
    imported (insert or update by code); every bad row is reported by line with its problem.
    422 ``err.import_file`` when the file as a whole is unreadable (format, header)."""
    data = await request.body()
    if not data:
        raise ApiError(422, "err.import_file", "empty request body: send the CSV or XLSX file")
    try:
        res = await import_experts(st.db, filename, data, me.username, role=me.role, ip=client_ip(request))
    except ImportFileError as e:
        raise ApiError(422, "err.import_file", str(e)) from None
    return ImportReport(
        created=res.created,
        updated=res.updated,
        errors=[ImportProblem(line=n, problem=m) for n, m in res.errors],
    )


@router.get("/api/experts/{code}", response_model=ExpertDetail)
async def expert_page(
    auditor: Audit, st: State, code: str, me: Annotated[Principal, Depends(allow(*ROLES))]
) -> ExpertDetail:
    """One expert and the history of every credit record about them."""
    await auditor.observer("expert_view", f"expert:{code}")
    names = names_allowed(me.role)

    def q(s: Session) -> ExpertDetail | None:
        e = s.scalars(select(Expert).where(Expert.code == code)).first()
        if e is None:
            return None
        recs = credit.records(s, expert_code=code, names=names)
        n = sum(1 for r in recs if r.decision == "violation")
        return ExpertDetail(expert=_public(e, names, n), records=recs)

    out = await run_db(st.db, q)
    if out is None:
        raise ApiError(404, "err.expert_not_found")
    return out


@router.patch("/api/experts/{code}", response_model=ExpertPublic)
async def update_expert(
    st: State,
    request: Request,
    code: str,
    body: ExpertUpdate,
    me: Annotated[Principal, Depends(allow(*ADMINS))],
) -> ExpertPublic:
    """Change an expert's name, ID number (re-hashed), phone, photo or active flag."""
    fields = body.model_dump(exclude_unset=True)
    probe = {
        "code": code,
        "name": body.name or "x",
        "id_number": body.id_number or "",
        "phone": body.phone or "",
    }
    checked = check_row(probe)
    if isinstance(checked, str):
        raise ApiError(422, "err.invalid_input", checked)

    def go(s: Session) -> ExpertPublic | None:
        e = s.scalars(select(Expert).where(Expert.code == code)).first()
        if e is None:
            return None
        if body.name is not None:
            e.name = body.name
        if body.id_number:
            e.id_hash = hash_id_number(body.id_number)
        if "phone" in fields:
            e.phone = body.phone or None
        if "photo_key" in fields:
            e.photo_key = body.photo_key or None
        if body.active is not None:
            e.active = body.active
        e.updated_at, e.updated_by = utcnow(), me.username
        audit.add(
            s,
            me.username,
            "expert_update",
            role=me.role,
            target=f"expert:{code}",
            ip=client_ip(request),
            details={"fields": sorted(fields)},
        )
        s.flush()
        return _public(e, True, _violations(s).get(code, 0))

    out = await run_db(st.db, go)
    if out is None:
        raise ApiError(404, "err.expert_not_found")
    return out


PHOTO_TYPES = {b"\xff\xd8\xff": ("jpg", "image/jpeg"), b"\x89PNG": ("png", "image/png")}


@router.put("/api/experts/{code}/photo", response_model=ExpertPublic)
async def put_photo(
    st: State, request: Request, code: str, me: Annotated[Principal, Depends(allow(*ADMINS))]
) -> ExpertPublic:
    """Store the expert's photo (the request body, JPEG or PNG) and record its object key."""
    data = await request.body()
    kind = next((v for magic, v in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ApiError(422, "err.invalid_input", "the photo must be a JPEG or PNG file (the request body)")
    exists = await run_db(st.db, lambda s: s.scalars(select(Expert.id).where(Expert.code == code)).first())
    if exists is None:
        raise ApiError(404, "err.expert_not_found")
    key = f"experts/{code}.{kind[0]}"
    objects = st.services.objects
    if objects is None:
        raise ApiError(503, "err.storage_unavailable")
    try:
        await objects.put_bytes(st.cfg.storage.s3.bucket_snapshots, key, data, kind[1])
    except Exception as e:
        raise ApiError(502, "err.storage_unavailable") from e

    def go(s: Session) -> ExpertPublic:
        e = s.scalars(select(Expert).where(Expert.code == code)).one()
        e.photo_key, e.updated_at, e.updated_by = key, utcnow(), me.username
        audit.add(
            s,
            me.username,
            "expert_photo",
            role=me.role,
            target=f"expert:{code}",
            ip=client_ip(request),
            details={"key": key, "bytes": len(data)},
        )
        return _public(e, True, _violations(s).get(code, 0))

    return await run_db(st.db, go)


@router.get("/api/experts/{code}/photo", **media("image/jpeg", "image/png"))
async def get_photo(
    st: State, code: str, me: Annotated[Principal, Depends(allow(*FEED_READERS))]
) -> Response:
    """The expert's photo (404 when there is none)."""
    key = await run_db(
        st.db, lambda s: s.scalars(select(Expert.photo_key).where(Expert.code == code)).first()
    )
    if not key:
        raise ApiError(404, "err.not_found")
    data = await fetch_object(st, st.cfg.storage.s3.bucket_snapshots, key, "expert_photo")
    ctype = "image/png" if key.endswith(".png") else "image/jpeg"
    return Response(data, media_type=ctype, headers={"Cache-Control": "private, max-age=60"})


# ------------------------------------------------------------------------------ credit records


def _credit_error(e: credit.CreditError) -> ApiError:
    return ApiError(e.status, e.code, str(e))


@router.post("/api/events/{event_id}/credit", response_model=credit.CreditRecordOut)
async def judge_event(
    st: State,
    request: Request,
    event_id: int,
    body: CreditJudge,
    me: Annotated[Principal, Depends(allow(*JUDGES))],
) -> credit.CreditRecordOut:
    """Confirm the incident as a violation (with a category) or dismiss it; a second judgement
    of the same incident is a new revision of its record."""
    cats = list(st.cfg.credit.categories)

    def go(s: Session) -> credit.CreditRecordOut:
        rec = credit.judge(
            s,
            event_id,
            decision=body.decision,
            category=body.category,
            note=body.note.strip(),
            categories=cats,
            actor=me.username,
            role=me.role,
            ip=client_ip(request),
        )
        return credit.records(s, ids=[rec.id], names=True)[0]

    try:
        return await run_db(st.db, go)
    except credit.CreditError as e:
        raise _credit_error(e) from None


@router.get("/api/credit", response_model=CreditList)
async def list_credit(
    auditor: Audit,
    st: State,
    me: Annotated[Principal, Depends(allow(*ROLES))],
    expert: Annotated[str | None, Query(max_length=64)] = None,
    decision: Literal["violation", "dismissed"] | None = None,
    session: int | None = None,
) -> CreditList:
    """Credit records in their current state (oldest incident first), with their revisions."""
    await auditor.observer("credit_list")
    names = names_allowed(me.role)
    recs = await run_db(
        st.db,
        lambda s: credit.records(s, expert_code=expert, decision=decision, session_id=session, names=names),
    )
    return CreditList(records=recs)


@router.get("/api/credit/categories", response_model=CreditCategories)
async def categories(st: State, me: Annotated[Principal, Depends(allow(*ROLES))]) -> CreditCategories:
    """The configured violation categories (``credit.categories``)."""
    return CreditCategories(categories=list(st.cfg.credit.categories))


@router.get("/api/credit/export", **media("text/csv", XLSX))
async def export_credit(
    auditor: Audit,
    st: State,
    me: Annotated[Principal, Depends(allow(*ROLES))],
    format: Literal["csv", "xlsx"] = "csv",
    expert: Annotated[str | None, Query(max_length=64)] = None,
    decision: Literal["violation", "dismissed"] | None = None,
) -> Response:
    """The records as CSV (UTF-8 with BOM) or XLSX; observers' files have no name column."""
    names = names_allowed(me.role)
    recs = await run_db(
        st.db, lambda s: credit.records(s, expert_code=expert, decision=decision, names=names)
    )
    await auditor(
        "credit_export",
        details={
            "format": format,
            "records": len(recs),
            "names": names,
            "expert": expert,
            "decision": decision,
        },
    )
    if format == "csv":
        data, ctype = credit.to_csv(recs, names=names), "text/csv; charset=utf-8"
    else:
        data, ctype = await asyncio.to_thread(credit.to_xlsx, recs, names=names), XLSX
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        data,
        media_type=ctype,
        headers={"Content-Disposition": f'attachment; filename="credit_{stamp}.{format}"'},
    )


@router.get("/api/credit/feed", response_model=CreditFeed)
async def credit_feed(
    auditor: Audit,
    st: State,
    me: Annotated[Principal, Depends(allow(*FEED_READERS))],
    decision: Literal["violation", "dismissed"] | None = "violation",
) -> CreditFeed:
    """The signed JSON feed for the city's credit platform (confirmed violations by default)."""
    from sessions.signing import HubKey

    key = await asyncio.to_thread(HubKey.load_or_create, st.cfg.storage.data_dir)
    recs = await run_db(st.db, lambda s: credit.records(s, decision=decision, names=True))
    await auditor("credit_export", details={"format": "feed", "records": len(recs), "key_id": key.key_id})
    return CreditFeed.model_validate(credit.signed_feed(recs, key, names=True))


@router.get("/api/credit/{record_id}", response_model=credit.CreditRecordOut)
async def credit_record(
    auditor: Audit, st: State, record_id: int, me: Annotated[Principal, Depends(allow(*ROLES))]
) -> credit.CreditRecordOut:
    """One record with its whole revision trail."""
    await auditor.observer("credit_view", f"credit:{record_id}")
    names = names_allowed(me.role)
    out = await run_db(st.db, lambda s: credit.records(s, ids=[record_id], names=names))
    if not out:
        raise ApiError(404, "err.credit_not_found")
    return out[0]


@router.post("/api/credit/{record_id}/revise", response_model=credit.CreditRecordOut)
async def revise_record(
    st: State,
    request: Request,
    record_id: int,
    body: CreditRevise,
    me: Annotated[Principal, Depends(allow(*JUDGES))],
) -> credit.CreditRecordOut:
    """Append a revision: new decision/category/note, the expert's statement, an appeal or its
    outcome.  409 when it changes nothing or the appeal step does not fit."""
    cats = list(st.cfg.credit.categories)

    def go(s: Session) -> credit.CreditRecordOut:
        credit.revise(
            s,
            record_id,
            actor=me.username,
            role=me.role,
            decision=body.decision,
            category=body.category,
            note=body.note,
            statement=body.statement,
            appeal=body.appeal,
            reason=body.reason.strip(),
            categories=cats,
            ip=client_ip(request),
        )
        return credit.records(s, ids=[record_id], names=True)[0]

    try:
        return await run_db(st.db, go)
    except credit.CreditError as e:
        raise _credit_error(e) from None


__all__ = ["ExpertIn", "router"]
