"""The expert register (docs/credit.md): import from the drawing system's export, edits, and
which expert sat on the seat of an event.

* :func:`parse_file` reads a CSV (UTF-8, with or without BOM, or GB18030 as Chinese Excel
  writes it) or an XLSX (first sheet, openpyxl) export into rows keyed by the header: the columns
  are recognised by their Chinese or English names (:data:`COLUMNS`); ``code`` and ``name`` are
  required, ``id_number``, ``phone`` and ``photo`` optional.
* :func:`check_row` validates one row and answers an :class:`ExpertIn` or a problem naming the
  field; :func:`import_experts` imports the good rows (insert or update by code), reports every
  bad row by its line number (the spreadsheet's row; the header is line 1), and never raises for
  bad content.
* The ID number is stored only as a salted PBKDF2-SHA256 hash (:func:`hash_id_number`,
  :func:`id_matches`); the number itself is never stored, logged or returned.
* :func:`event_experts` answers, for incidents, the expert on the incident's seat in the
  session running then (``expert_code`` and the name): the contract's ``expert_code`` /
  ``expert_name`` (``storage.incident``).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from sessions.credit_models import Expert
from sessions.models import EvalSession, SessionSeat
from storage.common import utcnow
from storage.models import AuditLog

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 -]{5,19}$")
PBKDF2_ITERATIONS = 20_000
MAX_ROWS = 20_000
HEADER_SEARCH = 10  # rows (non-empty) searched for the header

#: Column names of the drawing system's export → field (lower-cased, spaces removed).
COLUMNS: dict[str, str] = {
    "code": "code",
    "expert_code": "code",
    "专家编号": "code",
    "专家代码": "code",
    "编号": "code",
    "name": "name",
    "姓名": "name",
    "专家姓名": "name",
    "id_number": "id_number",
    "id": "id_number",
    "身份证号": "id_number",
    "身份证号码": "id_number",
    "证件号码": "id_number",
    "phone": "phone",
    "mobile": "phone",
    "手机": "phone",
    "手机号": "phone",
    "手机号码": "phone",
    "联系电话": "phone",
    "电话": "phone",
    "photo": "photo",
    "照片": "photo",
}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


class ImportFileError(ValueError):
    """The file as a whole cannot be read (format, header): the message says why."""


class ExpertIn(BaseModel):
    """One valid expert (from a file row, the API or the CLI)."""

    code: str = Field(pattern=CODE_RE.pattern)
    name: str = Field(min_length=1, max_length=200)
    id_number: str | None = None
    phone: str | None = None
    photo: str | None = Field(default=None, max_length=512)


def normalise_id_number(v: str) -> str:
    """The ID number in its stored form (spaces out, ``x`` upper-cased); ValueError naming the
    problem when it is not a Chinese resident ID number (18 characters with a valid check
    character, or the old 15 digits)."""
    s = re.sub(r"\s+", "", v).upper()
    if re.fullmatch(r"[0-9]{15}", s):
        return s
    if not re.fullmatch(r"[0-9]{17}[0-9X]", s):
        return _raise(
            f"id_number must be 18 characters (17 digits and a digit or X) or 15 digits, got {len(s)}"
        )
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != s[17]:
        return _raise("id_number check character does not match (mistyped number?)")
    return s


def _raise(msg: str) -> str:
    raise ValueError(msg)


def hash_id_number(number: str, *, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`` of the normalised number."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", normalise_id_number(number).encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def id_matches(number: str, stored: str | None) -> bool:
    """True when ``number`` is the ID number whose hash is ``stored``."""
    if not stored:
        return False
    try:
        algo, iters, salt, digest = stored.split("$")
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac(
            "sha256", normalise_id_number(number).encode(), base64.b64decode(salt), int(iters)
        )
    except ValueError:
        return False
    return algo == "pbkdf2_sha256" and hmac.compare_digest(want, got)


# ------------------------------------------------------------------------------ reading files


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _is_header(cells: list[str]) -> bool:
    fields = {COLUMNS.get(re.sub(r"\s+", "", c).lower()) for c in cells}
    return {"code", "name"} <= fields


def _header(cells: list[str], line: int = 1) -> list[str | None]:
    fields = [COLUMNS.get(re.sub(r"\s+", "", c).lower()) for c in cells]
    missing = [f for f in ("code", "name") if f not in fields]
    if missing:
        raise ImportFileError(
            f"line {line}: the header has no {' / '.join(missing)} column (found {cells}; "
            f"expected e.g. 专家编号,姓名,身份证号,手机 or code,name,id_number,phone)"
        )
    dup = {f for f in fields if f and fields.count(f) > 1}
    if dup:
        raise ImportFileError(f"line {line}: the header names {', '.join(sorted(dup))} twice")
    return fields


def parse_file(filename: str, data: bytes) -> list[tuple[int, dict[str, str]]]:
    """``(line, {field: text})`` for every non-empty data row of a CSV or XLSX export.

    The format comes from the content (XLSX is a zip), not only the name.  Raises
    :class:`ImportFileError` for an unreadable file or a header without code/name."""
    if data[:2] == b"PK" or filename.lower().endswith((".xlsx", ".xlsm")):
        rows = _xlsx_rows(data)
    else:
        rows = _csv_rows(data)
    filled = [k for k, (_line, cells) in enumerate(rows) if any(cells)]
    if not filled:
        raise ImportFileError("the file is empty")
    # the header: the first row naming the code and name columns (exports often put a title above)
    first = next((k for k in filled[:HEADER_SEARCH] if _is_header(rows[k][1])), filled[0])
    fields = _header(rows[first][1], rows[first][0])
    out: list[tuple[int, dict[str, str]]] = []
    for line, cells in rows[first + 1 :]:
        if not any(cells):
            continue
        rec = {f: (cells[i] if i < len(cells) else "") for i, f in enumerate(fields) if f}
        if len(cells) > len(fields) and any(cells[len(fields) :]):
            rec["_extra"] = "x"
        out.append((line, rec))
        if len(out) > MAX_ROWS:
            raise ImportFileError(f"more than {MAX_ROWS} rows; split the file")
    return out


def _csv_rows(data: bytes) -> list[tuple[int, list[str]]]:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise ImportFileError("the CSV is neither UTF-8 nor GB18030 text")
    if "\x00" in text:
        raise ImportFileError("not a CSV text file (binary content); export CSV or XLSX")
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    try:
        for cells in reader:
            out.append((reader.line_num, [_cell(c) for c in cells]))
    except csv.Error as e:
        raise ImportFileError(f"line {reader.line_num}: unreadable CSV ({e})") from None
    return out


def _xlsx_rows(data: bytes) -> list[tuple[int, list[str]]]:
    import zipfile

    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise ImportFileError(f"not a readable XLSX workbook ({type(e).__name__}: {e})") from None
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(min_row=1, values_only=True)  # from row 1: line numbers are the sheet's
        return [(i, [_cell(c) for c in row]) for i, row in enumerate(rows, start=1)]
    finally:
        wb.close()


def check_row(rec: dict[str, str]) -> ExpertIn | str:
    """The row as an :class:`ExpertIn`, or what is wrong with it (one sentence per problem)."""
    problems = []
    code, name = rec.get("code", ""), rec.get("name", "")
    if not code:
        problems.append("code is empty")
    elif not CODE_RE.match(code):
        problems.append(f"code {code!r} must be letters, digits, . _ - (at most 64)")
    if not name:
        problems.append("name is empty")
    elif len(name) > 200:
        problems.append("name is longer than 200 characters")
    id_number = rec.get("id_number") or None
    if id_number:
        try:
            id_number = normalise_id_number(id_number)
        except ValueError as e:
            problems.append(str(e))
    phone = rec.get("phone") or None
    if phone and not PHONE_RE.match(phone):
        problems.append(f"phone {phone!r} is not a phone number (digits, optional +, 6-20)")
    if rec.get("_extra"):
        problems.append("more cells than header columns")
    if problems:
        return "; ".join(problems)
    return ExpertIn(code=code, name=name, id_number=id_number, phone=phone, photo=rec.get("photo") or None)


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated


def upsert(s: Session, e: ExpertIn, actor: str, source: str) -> bool:
    """Insert or update expert ``e.code``; True when it was new."""
    row = s.scalars(select(Expert).where(Expert.code == e.code)).first()
    new = row is None
    if row is None:
        row = Expert(code=e.code, active=True, created_at=utcnow())
        s.add(row)
    row.name = e.name
    if e.id_number:
        row.id_hash = hash_id_number(e.id_number)
    if e.phone is not None:
        row.phone = e.phone
    if e.photo is not None:
        row.photo_key = e.photo
    row.source = source[:200]
    row.updated_at, row.updated_by = utcnow(), actor[:64]
    return new


async def import_experts(
    db: Any, filename: str, data: bytes, actor: str, *, role: str | None = None, ip: str | None = None
) -> ImportResult:
    """Import the good rows of ``data`` (CSV/XLSX) and report the bad ones by line (see module
    docstring).  Raises :class:`ImportFileError` only when the file as a whole is unreadable."""
    import asyncio

    rows = await asyncio.to_thread(parse_file, filename, data)
    result = ImportResult()
    good: list[ExpertIn] = []
    seen: dict[str, int] = {}
    for line, rec in rows:
        checked = check_row(rec)
        if isinstance(checked, str):
            result.errors.append((line, checked))
        elif checked.code in seen:
            result.errors.append((line, f"code {checked.code!r} already on line {seen[checked.code]}"))
        else:
            seen[checked.code] = line
            good.append(checked)

    def go(s: Session) -> None:
        for e in good:
            if upsert(s, e, actor, f"import:{filename}"):
                result.created += 1
            else:
                result.updated += 1
        s.add(
            AuditLog(
                actor=actor[:64],
                role=role,
                action="experts_import",
                target=filename[:512],
                ip=ip,
                details={
                    "created": result.created,
                    "updated": result.updated,
                    "errors": [f"line {n}: {m}" for n, m in result.errors[:50]],
                },
            )
        )

    await db.run(go)
    return result


# ------------------------------------------------------------------------------ events → experts


@dataclass(frozen=True)
class SeatExpert:
    code: str | None
    name: str | None


def event_experts(s: Session, events: Iterable[Any]) -> dict[int, SeatExpert]:
    """``{event id: SeatExpert}`` for the events that happened on an assigned seat of a running or
    closed session (by ``session_id`` when the event has one, else by the session's time window
    and rooms).  The name is the register's for a seat with a code, else the seat's own."""
    evs = [e for e in events if getattr(e, "seat", None)]
    if not evs:
        return {}
    rooms = {(e.site, e.room) for e in evs}
    seats = s.execute(
        select(SessionSeat, EvalSession.started_at, EvalSession.closed_at)
        .join(EvalSession, EvalSession.id == SessionSeat.session_id)
        .where(EvalSession.status.in_(("running", "closed")))
        .where(SessionSeat.site.in_({r[0] for r in rooms}), SessionSeat.room.in_({r[1] for r in rooms}))
    ).all()
    if not seats:
        return {}
    codes = {x.expert_code for x, _a, _b in seats if x.expert_code}
    names = (
        dict(s.execute(select(Expert.code, Expert.name).where(Expert.code.in_(codes))).all()) if codes else {}
    )
    by_seat: dict[tuple[str, str, str], list[tuple[SessionSeat, datetime | None, datetime | None]]] = {}
    for x, a, b in seats:
        by_seat.setdefault((x.site, x.room, x.seat), []).append((x, a, b))
    out: dict[int, SeatExpert] = {}
    for e in evs:
        for x, a, b in by_seat.get((e.site, e.room, e.seat), []):
            sid = getattr(e, "session_id", None)
            hit = (
                x.session_id == sid
                if sid is not None
                else a is not None and a <= e.started_at and (b is None or e.started_at < b)
            )
            if hit:
                code = x.expert_code
                out[e.id] = SeatExpert(code, names.get(code, x.expert) if code else x.expert)
                break
    return out


def dump_events(s: Session, rows: list[Any]) -> list[dict[str, Any]]:
    """``storage.incident.ExportedEvent`` dicts of ``rows`` with the ``expert_code`` of each
    incident's seat (codes only: an archive never carries names)."""
    from storage.incident import ExportedEvent

    found = event_experts(s, rows)
    out = []
    for e in rows:
        d = ExportedEvent.dump(e)
        who = found.get(e.id)
        d["expert_code"] = who.code if who else None
        out.append(d)
    return out
