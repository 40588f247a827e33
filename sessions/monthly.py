"""Monthly supervision report of one site (``evalwatch report monthly --site S --month YYYY-MM``,
``GET /api/reports/monthly``; docs/statistics.md).

Contents (Chinese by default, ``en`` on request; the month and every time in ``hub.timezone``):
the sessions of the month that involved the site's cameras (code, project, bids, hours, status,
incidents on the site), incidents by rule with confirmed / dismissed counts and the false-alarm
rate (:func:`sessions.stats.judgements`), confirmed violations by category and by expert code
(codes only: the report is a document that travels), and per camera the recording coverage and
offline time within session time (:func:`sessions.stats.camera_stats`).

The HTML is self-contained (template ``sessions/templates/monthly.html.j2``); the PDF is built with
ReportLab and embeds a subset of the same TrueType font as the session report
(:func:`sessions.report.report_font`), so ``pdffonts`` lists every font as embedded.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig
from sessions import stats
from sessions.credit_models import CreditRevision
from sessions.models import EvalSession, SessionCamera
from sessions.report import TEMPLATES, build_pdf, report_font
from storage.models import EventRow

LANGS = ("zh", "en")
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class MonthlyError(ValueError):
    """Bad input (unknown site, malformed month): the message names the problem; ``code`` is the
    dashboard's error code."""

    def __init__(self, message: str, code: str = "err.invalid_input") -> None:
        super().__init__(message)
        self.code = code


@cache
def strings(lang: str) -> dict[str, str]:
    data: dict[str, dict[str, str]] = json.loads((TEMPLATES / "monthly_strings.json").read_text("utf-8"))
    return data[lang]


def parse_month(v: str) -> tuple[date, date]:
    """``YYYY-MM`` → (first day, last day).  Raises :class:`MonthlyError`."""
    m = MONTH_RE.match(v or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
        raise MonthlyError(f"month must be YYYY-MM (e.g. 2026-11), got {v!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    first = date(y, mo, 1)
    nxt = date(y + (mo == 12), mo % 12 + 1, 1)
    return first, date.fromordinal(nxt.toordinal() - 1)


@dataclass
class SessionLine:
    code: str
    project: str
    bids: list[str]
    start: datetime | None
    end: datetime | None
    status: str
    incidents: int


@dataclass
class MonthlyData:
    site: str
    site_name: str | None
    month: str
    tz: str
    generated_at: datetime
    window: tuple[datetime, datetime]
    sessions: list[SessionLine]
    incidents: stats.IncidentStats
    judgements: list[stats.RuleJudgement]
    categories: list[tuple[str, int]]
    experts: list[stats.ExpertCount]
    cameras: list[stats.CameraStat]

    def local(self, t: datetime | None) -> str:
        return "-" if t is None else t.astimezone(ZoneInfo(self.tz)).strftime("%Y-%m-%d %H:%M")

    def rule_rows(self) -> list[tuple[str, int, int, int, float | None]]:
        """(rule, incidents, confirmed, dismissed, false-alarm %) for every rule seen."""
        inc = {c.key: c.count for c in self.incidents.by_rule}
        jud = {j.rule: j for j in self.judgements}
        out = []
        for rule in sorted(set(inc) | set(jud)):
            j = jud.get(rule)
            out.append(
                (
                    rule,
                    inc.get(rule, 0),
                    j.confirmed if j else 0,
                    j.dismissed if j else 0,
                    j.false_alarm_rate if j else None,
                )
            )
        return out

    def totals(self) -> tuple[float, float, float]:
        """(session s, archived s, offline s) over the site's cameras."""
        return (
            sum(c.session_s for c in self.cameras),
            sum(c.archived_s for c in self.cameras),
            sum(c.offline_s for c in self.cameras),
        )


def _collect(
    s: Session, site: str, start: datetime, end: datetime, tz: str, now: datetime
) -> tuple[
    list[SessionLine],
    stats.IncidentStats,
    list[stats.RuleJudgement],
    list[tuple[str, int]],
    list[stats.ExpertCount],
    list[stats.CameraStat],
]:
    ids = sorted(
        {int(x) for x in s.scalars(select(SessionCamera.session_id).where(SessionCamera.site == site))}
    )
    lines: list[SessionLine] = []
    if ids:
        for row in s.scalars(
            select(EvalSession).where(EvalSession.id.in_(ids)).order_by(EvalSession.planned_start)
        ):
            a = row.started_at or row.planned_start
            b = row.closed_at or (max(now, a) if row.started_at else row.planned_end)
            if not (a < end and b > start):
                continue
            n = len(
                s.execute(
                    select(EventRow.id).where(
                        EventRow.site == site,
                        (
                            (EventRow.session_id == row.id)
                            | ((EventRow.started_at >= a) & (EventRow.started_at < b))
                        ),
                    )
                ).all()
            )
            lines.append(
                SessionLine(
                    row.code, row.project, list(row.bids or []), row.started_at, row.closed_at, row.status, n
                )
            )
    cats: Counter[str] = Counter()
    for rec, d in stats.current_decisions(s, start, end, site):
        if d == "violation":
            cur = s.scalars(
                select(CreditRevision.category)
                .where(CreditRevision.record_id == rec.id)
                .order_by(CreditRevision.rev.desc())
            ).first()
            cats[cur or "-"] += 1
    return (
        lines,
        stats.incidents(s, start, end, tz, site),
        stats.judgements(s, start, end, site),
        sorted(cats.items(), key=lambda kv: (-kv[1], kv[0])),
        stats.expert_violations(s, start, end, site, names=False),
        stats.camera_stats(s, start, end, site, now),
    )


async def build_monthly(
    db: Any, cfg: EvalwatchConfig, site: str, month: str, *, now: datetime | None = None
) -> MonthlyData:
    """Collect the monthly report of ``site`` for ``month`` (``YYYY-MM``).  Raises
    :class:`MonthlyError` for an unknown site or a malformed month."""
    try:
        site_cfg = cfg.site(site)
    except KeyError:
        raise MonthlyError(
            f"unknown site {site!r}; one of {[x.id for x in cfg.sites]}", "err.unknown_site"
        ) from None
    first, last = parse_month(month)
    tz = cfg.hub.timezone
    start, end = stats.day_range(first, last, tz)
    now = now or datetime.now(UTC)
    got = await db.run(lambda s: _collect(s, site, start, end, tz, now))
    return MonthlyData(site, site_cfg.name, month, tz, now, (start, end), *got)


def render_monthly_html(r: MonthlyData, lang: str = "zh") -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("monthly.html.j2").render(r=r, t=strings(lang), lang=lang)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def render_monthly_pdf(r: MonthlyData, lang: str = "zh") -> bytes:
    """The monthly report as a PDF with the report font's used glyphs embedded."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Table, TableStyle

    font = report_font()
    t = strings(lang)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12, wordWrap="CJK")
    h1 = ParagraphStyle("h1", parent=body, fontSize=16, leading=22, spaceAfter=6)
    h2 = ParagraphStyle("h2", parent=body, fontSize=12, leading=16, spaceBefore=10, spaceAfter=4)

    def P(text: Any, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(html.escape(str(text)), style)

    def table(rows: list[list[Any]], widths: list[float] | None = None) -> Table:
        tb = Table([[P(c) for c in row] for row in rows], colWidths=widths, repeatRows=1)
        tb.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, -1), font),
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return tb

    def rule(x: str) -> str:
        return t.get("rule_" + x, x)

    story: list[Any] = [P(t["title"], h1)]
    story.append(
        table(
            [
                [t["site"], f"{r.site} {r.site_name or ''}"],
                [t["month"], r.month],
                [t["generated"], f"{r.local(r.generated_at)} ({t['timezone']} {r.tz})"],
            ],
            [40 * mm, 130 * mm],
        )
    )
    story.append(P(t["sessions"], h2))
    if not r.sessions:
        story.append(P(t["no_sessions"]))
    else:
        rows: list[list[Any]] = [
            [t["code"], t["project"], t["bids"], t["start"], t["end"], t["status"], t["incidents"]]
        ]
        rows += [
            [
                x.code,
                x.project,
                ", ".join(x.bids),
                r.local(x.start),
                r.local(x.end),
                t.get("status_" + x.status, x.status),
                str(x.incidents),
            ]
            for x in r.sessions
        ]
        story.append(table(rows, [25 * mm, 40 * mm, 20 * mm, 26 * mm, 26 * mm, 16 * mm, 16 * mm]))
    story.append(P(t["by_rule"], h2))
    if not r.rule_rows():
        story.append(P(t["no_incidents"]))
    else:
        rows = [[t["rule"], t["incidents"], t["confirmed"], t["dismissed"], t["false_alarm_rate"]]]
        rows += [[f"{rule(k)} ({k})", str(n), str(c), str(d), _pct(p)] for k, n, c, d, p in r.rule_rows()]
        rows.append([t["total"], str(r.incidents.total), "", "", ""])
        story.append(table(rows))
    story.append(P(t["violations"], h2))
    if not r.categories:
        story.append(P(t["no_violations"]))
    else:
        story.append(
            table([[t["category"], t["count"]], *[[c, str(n)] for c, n in r.categories]], [80 * mm, 30 * mm])
        )
        story.append(P(t["by_expert"], h2))
        story.append(
            table(
                [[t["expert_code"], t["count"]], *[[e.code, str(e.violations)] for e in r.experts]],
                [80 * mm, 30 * mm],
            )
        )
    story.append(P(t["cameras"], h2))
    if not r.cameras:
        story.append(P(t["no_cameras"]))
    else:
        sec = t["seconds"]
        rows = [[t["camera"], t["session_s"], t["archived_s"], t["coverage"], t["offline_s"], t["offline"]]]
        for c in r.cameras:
            rows.append(
                [
                    c.camera,
                    f"{c.session_s:.0f} {sec}",
                    f"{c.archived_s:.0f} {sec}",
                    _pct(c.coverage_percent),
                    f"{c.offline_s:.0f} {sec}",
                    _pct(c.offline_percent),
                ]
            )
        ss, aa, oo = r.totals()
        rows.append(
            [
                t["total"],
                f"{ss:.0f} {sec}",
                f"{aa:.0f} {sec}",
                _pct(stats._pct(aa, ss)),
                f"{oo:.0f} {sec}",
                _pct(stats._pct(oo, ss)),
            ]
        )
        story.append(table(rows))

    return build_pdf(story, font, title=f"{t['title']} {r.site} {r.month}",
                     footer=f"{t['title']} · {r.site} · {r.month}", page=t["page"])
