"""Supervision report of a session (``evalwatch report``, :mod:`evalwatch.report`).

Contents (Chinese by default, ``--lang en`` for English; times in ``hub.timezone``, default
Asia/Shanghai): the session (project, bids, planned and actual hours, who started/closed it),
rooms with their cameras and experts per seat, recording coverage per camera (percent of the
session window archived and every gap longer than ``GAP_TOLERANCE_S``), every event with its
snapshot, resolution and who resolved it, the hash-chain verification per camera (from object
storage, the DB is not trusted; the chain must reach the sealed head and the link at the sealed
seq must carry the sealed hash) and the Ed25519 seal signatures with the public key.

Coverage contract (:func:`coverage`): the window is ``[start, end)`` of the session (actual start
→ close; a running session up to now; a scheduled one its planned hours).  Archived time is the
length of the union of segment intervals clipped to the window, so overlaps never count twice;
``percent = 100 * archived / window``.  Gaps are the uncovered intervals longer than the
tolerance (segment boundaries jitter by a few ms); shorter ones still lower the percentage.

The HTML is self-contained (snapshots inline as data URIs, template
``sessions/templates/report.html.j2``); the PDF is built with ReportLab and embeds a subset of
the TrueType font WenQuanYi Micro Hei shipped in ``sessions/fonts/`` (see its PROVENANCE.md),
so it renders the same on a machine without CJK fonts (:func:`report_font`).
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from sessions.credit import CreditRecordOut, records
from sessions.experts import dump_events
from sessions.export import session_events
from sessions.lifecycle import SessionInfo, get_session, seal_key, verify_seal
from sessions.signing import hub_trusted_pems
from storage.chain import chain_key
from storage.common import CameraId
from storage.models import Segment
from storage.objects import ObjectMissing, StorageError

TEMPLATES = Path(__file__).resolve().parent / "templates"
FONTS = Path(__file__).resolve().parent / "fonts"
#: Where the report font is looked for, in order: the copy shipped with evalwatch, then the
#: Debian package ``fonts-wqy-microhei``.  Face 0 of the collection is "WenQuanYi Micro Hei".
FONT_FILES = (FONTS / "wqy-microhei.ttc", Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"))
FONT_NAME = "WenQuanYiMicroHei"
FALLBACK_FONT = "STSong-Light"
log = logging.getLogger("evalwatch.report")
GAP_TOLERANCE_S = 0.5
LANGS = ("zh", "en")


@cache
def strings(lang: str) -> dict[str, str]:
    """The report's strings in ``lang`` (``zh`` or ``en``)."""
    data: dict[str, dict[str, str]] = json.loads((TEMPLATES / "report_strings.json").read_text("utf-8"))
    return data[lang]


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass
class Coverage:
    """Coverage and verification of one camera over the session window."""

    camera: str
    expected_s: float
    archived_s: float
    segments: int
    gaps: list[Gap]
    chain_ok: bool = False
    chain_message: str = ""
    head_seq: int | None = None
    head_hash: str | None = None
    head_ok: bool | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.archived_s / self.expected_s if self.expected_s > 0 else 0.0


def coverage(
    intervals: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    tolerance_s: float = GAP_TOLERANCE_S,
) -> tuple[float, list[Gap]]:
    """Archived seconds of ``[start, end)`` covered by ``intervals`` and the gaps longer than
    ``tolerance_s`` (see module docstring)."""
    covered = 0.0
    gaps: list[Gap] = []
    cursor = start
    for a, b in sorted(intervals):
        a, b = max(a, start), min(b, end)
        if b <= a or b <= cursor:
            continue
        if a > cursor:
            if (a - cursor).total_seconds() > tolerance_s:
                gaps.append(Gap(cursor, a))
            cursor = a
        covered += (b - cursor).total_seconds()
        cursor = b
    if end > cursor and (end - cursor).total_seconds() > tolerance_s:
        gaps.append(Gap(cursor, end))
    return covered, gaps


@dataclass
class ReportData:
    """Everything the report shows; ``local()`` formats a UTC time in the report's time zone."""

    session: SessionInfo
    tz: str
    generated_at: datetime
    window: tuple[datetime, datetime]
    rooms: list[dict[str, Any]]
    coverage: list[Coverage]
    events: list[dict[str, Any]]
    seal_problems: list[str] = field(default_factory=list)
    seal_public_pem: str | None = None  # the trusted key (key file) that sealed it
    #: Confirmed violations of the session (credit records, experts by code; docs/credit.md).
    violations: list[CreditRecordOut] = field(default_factory=list)

    def local(self, t: datetime | str | None) -> str:
        if t is None:
            return "-"
        if isinstance(t, str):
            t = datetime.fromisoformat(t)
        return t.astimezone(ZoneInfo(self.tz)).strftime("%Y-%m-%d %H:%M:%S")


async def build_report(
    db: Any, objects: Any, cfg: EvalwatchConfig, ident: int | str, *, now: datetime | None = None
) -> ReportData:
    """Collect the report of session ``ident`` (DB for the record, object storage for the
    chain verification, events' snapshots).  Raises ``SessionNotFound``; storage problems are
    reported inside the report, not raised."""
    from storage.verify import verify_chain

    info = await get_session(db, ident)
    trusted = await asyncio.to_thread(hub_trusted_pems, cfg.storage.data_dir)
    start, end = info.window(now)

    def q(
        s: Session,
    ) -> tuple[dict[str, list[tuple[datetime, datetime]]], list[dict[str, Any]], list[CreditRecordOut]]:
        segs: dict[str, list[tuple[datetime, datetime]]] = {}
        for c in info.cameras:
            rows = s.execute(
                select(Segment.start, Segment.end)
                .where(Segment.site == c.site, Segment.room == c.room, Segment.camera == c.camera)
                .where(Segment.start < end, Segment.end > start)
                .order_by(Segment.start)
            ).all()
            segs[c.path] = [(a, b) for a, b in rows]
        evs = dump_events(s, session_events(s, info, start, end))
        ids = [int(e["id"]) for e in evs]
        viol = [
            r
            for r in records(s, decision="violation", names=False, history=False)
            if r.session_id == info.id or r.event_id in ids
        ]
        return segs, evs, viol

    segs, events, violations = await db.run(q)
    covs: list[Coverage] = []
    for c in info.cameras:
        archived, gaps = coverage(segs[c.path], start, end)
        cov = Coverage(c.path, (end - start).total_seconds(), archived, len(segs[c.path]), gaps)
        head = info.head(c.site, c.room, c.camera)
        if head is not None:
            cov.head_seq, cov.head_hash = head.head_seq, head.head_hash
        try:
            res = await verify_chain(
                objects,
                c.site,
                c.room,
                c.camera,
                start,
                end,
                bucket=cfg.storage.s3.bucket_segments,
                expected_head=head.head_seq if head is not None else None,
            )
            cov.chain_ok = res.ok
            cov.chain_message = (
                f"{res.links_checked} links, {res.segments_checked} segments" if res.ok else str(res.message)
            )
            if res.ok and res.purged_links:
                cov.chain_message += f"; {res.purged_links} older links purged by retention"
            purged = next(
                (r for r in res.purged_ranges if head is not None and r[0] <= head.head_seq <= r[1]), None
            )
            if head is not None and head.head_seq > 0 and purged is not None:
                # The sealed head's link went with the retention purge: its record keeps the anchor.
                cov.head_ok = purged[1] != head.head_seq or purged[2] == head.head_hash
            elif head is not None and head.head_seq > 0:
                try:
                    link = json.loads(
                        await objects.get_bytes(
                            cfg.storage.s3.bucket_segments, chain_key(c.site, c.room, c.camera, head.head_seq)
                        )
                    )
                    cov.head_ok = link.get("link_hash") == head.head_hash
                except ObjectMissing:
                    cov.head_ok = False
            elif head is not None:
                cov.head_ok = res.ok and res.links_checked == 0
        except StorageError as e:
            cov.chain_ok = False
            cov.chain_message = f"object storage unavailable: {e}"
        covs.append(cov)
    for ev in events:
        ev["snapshot_b64"] = None
        if ev.get("snapshot_key"):
            try:
                data = await objects.get_bytes(cfg.storage.s3.bucket_snapshots, ev["snapshot_key"])
                ev["snapshot_b64"] = base64.b64encode(data).decode("ascii")
            except StorageError:
                pass
    rooms = []
    for site, room in info.rooms():
        try:
            name = cfg.room(site, room).name
        except KeyError:
            name = None
        rooms.append(
            {
                "site": site,
                "room": room,
                "name": name,
                "cameras": [c.camera for c in info.cameras if (c.site, c.room) == (site, room)],
                "seats": [x for x in info.seats if (x.site, x.room) == (site, room)],
            }
        )
    return ReportData(
        session=info,
        tz=cfg.hub.timezone,
        generated_at=now or datetime.now(UTC),
        window=(start, end),
        rooms=rooms,
        coverage=covs,
        events=events,
        seal_problems=verify_seal(info, trusted) if info.status == "closed" else [],
        seal_public_pem=seal_key(info, trusted) if info.status == "closed" else None,
        violations=violations,
    )


def render_html(r: ReportData, lang: str = "zh") -> str:
    """The report as one self-contained HTML page (autoescaped Jinja2 template)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(r=r, t=strings(lang), lang=lang)


def report_font() -> str:
    """Register the PDF font and return its ReportLab name.

    The TrueType collection in ``FONT_FILES`` (glyf outlines: ReportLab embeds a subset of the
    glyphs used, so Chinese renders on any machine).  Without it, the CID font ``STSong-Light``,
    which PDF viewers must supply themselves (``pdffonts``: ``emb no``) — logged as a warning.
    """
    from reportlab.pdfbase import pdfmetrics

    registered = pdfmetrics.getRegisteredFontNames()
    if FONT_NAME in registered:
        return FONT_NAME
    for path in FONT_FILES:
        if path.is_file():
            from reportlab.pdfbase.ttfonts import TTFont

            pdfmetrics.registerFont(TTFont(FONT_NAME, str(path), subfontIndex=0))
            return FONT_NAME
    log.warning(
        "report font %s not found (%s); the PDF uses the non-embedded CID font %s: install the "
        "Debian package fonts-wqy-microhei", FONT_NAME, ", ".join(map(str, FONT_FILES)), FALLBACK_FONT,
    )
    if FALLBACK_FONT not in registered:
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_FONT))
    return FALLBACK_FONT


def render_pdf(r: ReportData, lang: str = "zh") -> bytes:
    """The report as a PDF (ReportLab; the font's used glyphs embedded, :func:`report_font`)."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, Spacer, Table, TableStyle

    font = report_font()
    t = strings(lang)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12, wordWrap="CJK")
    small = ParagraphStyle("small", parent=body, fontSize=7, leading=9)
    h1 = ParagraphStyle("h1", parent=body, fontSize=16, leading=22, spaceAfter=6)
    h2 = ParagraphStyle("h2", parent=body, fontSize=12, leading=16, spaceBefore=10, spaceAfter=4)

    def P(text: Any, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(html.escape(str(text)), style)

    def table(rows: list[list[Any]], widths: list[float] | None = None) -> Table:
        cells = [[c if not isinstance(c, str | int | float) else P(c) for c in row] for row in rows]
        tb = Table(cells, colWidths=widths, repeatRows=1)
        tb.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, -1), font),  # the cell font, else Helvetica
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return tb

    s = r.session
    story: list[Any] = [P(t["title"], h1)]
    story.append(
        table(
            [
                [t["session"], f"{s.code} (#{s.id})"],
                [t["project"], s.project],
                [t["bids"], ", ".join(s.bids)],
                [t["status"], t["status_" + s.status]],
                [t["planned"], f"{r.local(s.planned_start)} – {r.local(s.planned_end)}"],
                [t["actual"], f"{r.local(s.started_at)} – {r.local(s.closed_at)}"],
                [f"{t['started_by']} / {t['closed_by']}", f"{s.started_by or '-'} / {s.closed_by or '-'}"],
                [t["generated"], f"{r.local(r.generated_at)} ({t['timezone']} {r.tz})"],
            ],
            [40 * mm, 130 * mm],
        )
    )
    story.append(P(t["rooms_experts"], h2))
    for room in r.rooms:
        story.append(
            P(
                f"{room['site']}/{room['room']} {room['name'] or ''} — "
                f"{t['cameras']}: {', '.join(room['cameras'])}"
            )
        )
        rows: list[list[Any]] = [[t["seat"], t["expert_code"], t["expert"], t["bid"]]]
        rows += [[x.seat, x.expert_code or "-", x.expert, x.bid] for x in room["seats"]]
        story += [table(rows, [25 * mm, 35 * mm, 60 * mm, 40 * mm]), Spacer(1, 4)]
    story.append(P(t["coverage"], h2))
    rows = [[t["camera"], t["expected"], t["archived"], t["percent"], t["segments"]]]
    for c in r.coverage:
        rows.append(
            [
                c.camera,
                f"{c.expected_s:.0f} {t['seconds']}",
                f"{c.archived_s:.1f} {t['seconds']}",
                f"{c.percent:.1f}%",
                str(c.segments),
            ]
        )
    story.append(table(rows))
    for c in r.coverage:
        story.append(P(f"{t['gaps']}: {c.camera}"))
        if c.gaps:
            rows = [[t["gap_from"], t["gap_to"], t["duration"]]]
            rows += [[r.local(g.start), r.local(g.end), f"{g.seconds:.1f} {t['seconds']}"] for g in c.gaps]
            story.append(table(rows))
        else:
            story.append(P(t["no_gaps"], small))
    story.append(P(t["events"], h2))
    if not r.events:
        story.append(P(t["no_events"]))
    for e in r.events:
        rule = f"{t.get('rule_' + e['rule'], e['rule'])} ({e['rule']}{': ' + e['kind'] if e['kind'] else ''})"
        info_rows = [
            ["#", str(e["id"])],
            [t["time"], f"{r.local(e['started_at'])} – {r.local(e['ended_at'])}"],
            [t["camera"], CameraId(e["site"], e["room"], e["camera"]).path],
            [t["seat"], e["seat"] or "-"],
            [t["rule"], rule],
            [t["confidence"], f"{e['confidence']:.2f}"],
            [t["resolution"], t.get("ev_" + e["status"], e["status"])],
            [t["resolved_by"], e["resolved_by"] or e["acknowledged_by"] or "-"],
            [t["note"], e["note"] or ""],
        ]
        left = table(info_rows, [22 * mm, 68 * mm])
        snap: Any = P(t["no_snapshot"], small)
        if e.get("snapshot_b64"):
            try:
                img = Image(io.BytesIO(base64.b64decode(e["snapshot_b64"])))
                scale = min(75 * mm / img.imageWidth, 56 * mm / img.imageHeight)
                img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
                snap = img
            except Exception:  # an undecodable snapshot must not break the report
                snap = P(t["no_snapshot"], small)
        outer = Table([[left, snap]], colWidths=[92 * mm, 80 * mm])
        outer.setStyle(
            TableStyle([("FONTNAME", (0, 0), (-1, -1), font), ("VALIGN", (0, 0), (-1, -1), "TOP")])
        )
        story += [outer, Spacer(1, 6)]
    story.append(P(t["violations"], h2))
    if not r.violations:
        story.append(P(t["no_violations"]))
    else:
        rows = [[t["time"], t["expert_code"], t["seat"], t["rule"], t["category"], t["note"], t["appeal"]]]
        for v in r.violations:
            rows.append(
                [
                    r.local(v.occurred_at),
                    v.expert_code or "-",
                    f"{v.site}/{v.room}/{v.seat or '-'}",
                    t.get("rule_" + v.rule, v.rule),
                    v.category or "",
                    " ".join(x for x in (v.note, v.statement) if x),
                    t.get("appeal_" + (v.appeal or ""), "-"),
                ]
            )
        story.append(table(rows, [30 * mm, 22 * mm, 30 * mm, 20 * mm, 22 * mm, 36 * mm, 18 * mm]))
    story.append(P(t["chain"], h2))
    rows = [[t["camera"], t["result"], t["sealed_head"], t["head_match"]]]
    for c in r.coverage:
        head = f"seq {c.head_seq} {c.head_hash}" if c.head_seq is not None else "-"
        match = "-" if c.head_ok is None else (t["ok"] if c.head_ok else t["problem"])
        rows.append(
            [c.camera, f"{t['ok'] if c.chain_ok else t['problem']} {c.chain_message}", P(head, small), match]
        )
    story.append(table(rows, [35 * mm, 60 * mm, 55 * mm, 20 * mm]))
    story.append(P(t["signature"], h2))
    if s.status != "closed":
        story.append(P(t["not_sealed"]))
    else:
        verdict = (
            t["signature_ok"]
            if not r.seal_problems
            else f"{t['signature_bad']}: {'; '.join(r.seal_problems)}"
        )
        story.append(P(verdict))
        story.append(P(f"{t['key_id']}: {s.key_id}", small))
        for line in (r.seal_public_pem or "").splitlines():
            story.append(P(line, small))
        for h in s.heads:
            story.append(P(f"{h.path}: {h.signature}", small))
    story.append(P(t["retention"], h2))
    ret = s.retention or {}
    story.append(
        P(
            (t["retention_enforced"] if ret.get("enforced") else t["retention_not_enforced"])
            + (f" — {ret.get('note') or ret.get('mode')}" if ret else "")
        )
    )

    return build_pdf(story, font, title=f"{t['title']} {s.code}", footer=f"{t['title']} · {s.code}",
                     page=t["page"])


def build_pdf(story: list[Any], font: str, *, title: str, footer: str, page: str) -> bytes:
    """An A4 PDF of ``story`` in ``font`` (the embedded CJK font), each page footed with
    ``footer`` on the left and ``page`` (a ``{n}`` format) on the right: the session report's
    and the monthly report's layout."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    def foot(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.drawString(15 * mm, 10 * mm, footer)
        canvas.drawRightString(195 * mm, 10 * mm, page.format(n=doc.page))
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=title,
        author="evalwatch",
        initialFontName=font,  # else every page starts in the (not embedded) Helvetica
    )
    doc.build(story, onFirstPage=foot, onLaterPages=foot)
    return buf.getvalue()
