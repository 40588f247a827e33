"""HTTP API of the statistics view, the early warnings and the monthly report
(docs/statistics.md; queries in :mod:`sessions.stats`, rules in :mod:`sessions.earlywarning`,
the report in :mod:`sessions.monthly`).

=================================================  ===================================  ==========
``GET  /api/stats/incidents?from=&to=&site=``      every role                           per day,
                                                                                        site, room,
                                                                                        rule
``GET  /api/stats/judgements?from=&to=&site=``     every role                           confirmed /
                                                                                        dismissed
``GET  /api/stats/ack?from=&to=&site=``            every role                           time to ack
``GET  /api/stats/cameras?from=&to=&site=``        every role                           coverage,
                                                                                        offline
``GET  /api/stats/experts?from=&to=&site=``        every role (observers: codes only)   per expert
``GET  /api/warnings?status=&kind=&limit=``        every role (observers: codes only)   list
``POST /api/warnings/run``                         admin, supervisor                    evaluate
``POST /api/warnings/{id}/ack``                    admin, supervisor                    acknowledge
``GET  /api/reports/monthly?site=&month=&format=`` admin, supervisor, auditor           HTML / PDF
=================================================  ===================================  ==========

``from`` / ``to`` are dates (``YYYY-MM-DD``) in ``hub.timezone``, both included; without them the
last 30 days up to today.  A malformed date is a 422 naming the parameter; ``to`` before ``from``
or a range over 366 days is a 400 ``err.bad_stats_range`` saying which; an unknown site a 400
``err.unknown_site``.  Observers' views are audit-logged (``stats_view``, ``warning_list``), and
so are acknowledgements (``warning_ack``), on-demand runs (``warnings_run``) and reports
(``monthly_report``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from dashboard.api.stats import (
    AckStatsOut,
    CameraStatsOut,
    ExpertStatsOut,
    IncidentStatsOut,
    JudgementStatsOut,
    StatsRange,
    WarningList,
    WarningRun,
)
from dashboard.dbutil import run_db
from dashboard.defs import RowId, media
from dashboard.deps import Audit, State
from dashboard.errors import ApiError
from dashboard.experts import names_allowed
from dashboard.policy import ROLES, Principal, allow
from dashboard.state import DashState
from sessions import earlywarning as ew
from sessions import stats
from sessions.earlywarning import KINDS, WarningOut
from sessions.monthly import LANGS, MonthlyError, build_monthly, render_monthly_html, render_monthly_pdf

router = APIRouter(tags=["statistics"])

MANAGERS = ("admin", "supervisor")
READERS = ("admin", "supervisor", "auditor")
DEFAULT_DAYS = 30

DateFrom = Annotated[date | None, Query(alias="from", description="first day (YYYY-MM-DD, hub time zone)")]
DateTo = Annotated[date | None, Query(alias="to", description="last day, included (YYYY-MM-DD)")]
SiteQ = Annotated[str | None, Query(max_length=64, description="one site id; all sites without")]


class Window:
    """The validated range of a statistics request."""

    def __init__(self, st: DashState, first: date | None, last: date | None, site: str | None) -> None:
        tz = st.cfg.hub.timezone
        today = datetime.now(ZoneInfo(tz)).date()
        last = last or (today if first is None else min(today, first + timedelta(days=DEFAULT_DAYS - 1)))
        first = first or (last - timedelta(days=DEFAULT_DAYS - 1))
        if site is not None and site not in {s.id for s in st.cfg.sites}:
            raise ApiError(400, "err.unknown_site", f"unknown site {site!r}")
        try:
            self.start, self.end = stats.day_range(first, last, tz)
        except stats.RangeError as e:
            raise ApiError(400, "err.bad_stats_range", str(e)) from None
        self.site, self.tz = site, tz
        self.out = StatsRange(date_from=first, date_to=last, tz=tz, site=site)


async def _window(
    st: State, auditor: Audit, first: DateFrom = None, last: DateTo = None, site: SiteQ = None
) -> Window:
    w = Window(st, first, last, site)
    await auditor.observer("stats_view", target=site)
    return w


Win = Annotated[Window, Depends(_window)]
Reader = Depends(allow(*ROLES))


@router.get("/api/stats/incidents", response_model=IncidentStatsOut, dependencies=[Reader])
async def incident_stats(st: State, w: Win) -> IncidentStatsOut:
    """Incidents started in the range per day (every day, zeros included), site, room and rule."""
    data = await run_db(st.db, lambda s: stats.incidents(s, w.start, w.end, w.tz, w.site))
    return IncidentStatsOut(range=w.out, incidents=data)


@router.get("/api/stats/judgements", response_model=JudgementStatsOut, dependencies=[Reader])
async def judgement_stats(st: State, w: Win) -> JudgementStatsOut:
    """Per rule: incidents confirmed as violations vs dismissed, and the false-alarm rate."""
    return JudgementStatsOut(
        range=w.out, rules=await run_db(st.db, lambda s: stats.judgements(s, w.start, w.end, w.site))
    )


@router.get("/api/stats/ack", response_model=AckStatsOut, dependencies=[Reader])
async def ack_stats(st: State, w: Win) -> AckStatsOut:
    """Per rule: seconds from an incident's start to its acknowledgement."""
    return AckStatsOut(
        range=w.out, rules=await run_db(st.db, lambda s: stats.ack_times(s, w.start, w.end, w.site))
    )


@router.get("/api/stats/cameras", response_model=CameraStatsOut, dependencies=[Reader])
async def camera_stats(st: State, w: Win) -> CameraStatsOut:
    """Per camera in session time: archived seconds (coverage) and offline seconds."""
    return CameraStatsOut(
        range=w.out, cameras=await run_db(st.db, lambda s: stats.camera_stats(s, w.start, w.end, w.site))
    )


@router.get("/api/stats/experts", response_model=ExpertStatsOut)
async def expert_stats(me: Annotated[Principal, Depends(allow(*ROLES))], st: State, w: Win) -> ExpertStatsOut:
    """Confirmed violations per expert in the range (names only for roles that may see them)."""
    names = names_allowed(me.role)
    return ExpertStatsOut(
        range=w.out,
        experts=await run_db(
            st.db, lambda s: stats.expert_violations(s, w.start, w.end, w.site, names=names)
        ),
    )


# ---------------------------------------------------------------------------- warnings


@router.get("/api/warnings", response_model=WarningList)
async def list_warnings(
    me: Annotated[Principal, Depends(allow(*ROLES))],
    st: State,
    auditor: Audit,
    status: Annotated[Literal["open", "acknowledged"] | None, Query()] = None,
    kind: Annotated[str | None, Query(description=" | ".join(KINDS))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> WarningList:
    """Raised early warnings, newest first (``expert_names`` only for roles that may see names)."""
    if kind is not None and kind not in KINDS:
        raise ApiError(422, "err.invalid_input", f"kind must be one of {list(KINDS)}, got {kind!r}")
    await auditor.observer("warning_list")
    names = names_allowed(me.role)
    rows = await run_db(st.db, lambda s: ew.listing(s, status=status, kind=kind, limit=limit, names=names))
    return WarningList(warnings=rows)


@router.post("/api/warnings/run", response_model=WarningRun, dependencies=[Depends(allow(*MANAGERS))])
async def run_warnings(st: State, auditor: Audit) -> WarningRun:
    """Evaluate the early-warning rules now (as the schedule does); new warnings are pushed."""
    job = st.warnings
    try:
        raised: list[WarningOut] = await job.run_once(raise_errors=True) if job is not None else []
    except Exception as e:
        raise ApiError(503, "err.warnings_failed", f"{type(e).__name__}: {e}") from None
    await auditor("warnings_run", details={"raised": [w.id for w in raised]})
    return WarningRun(raised=raised)


@router.post(
    "/api/warnings/{warning_id}/ack", response_model=WarningOut, dependencies=[Depends(allow(*MANAGERS))]
)
async def ack_warning(st: State, auditor: Audit, warning_id: RowId) -> WarningOut:
    """Acknowledge an open warning (409 when it is not open)."""
    actor = auditor.principal.username

    def go(s: object) -> WarningOut | None:
        w = ew.acknowledge(s, warning_id, actor)  # type: ignore[arg-type]
        return ew.to_out(w) if w is not None else None

    try:
        out = await run_db(st.db, go)
    except ew.WarningStateError as e:
        raise ApiError(409, "err.warning_not_open", str(e)) from None
    if out is None:
        raise ApiError(404, "err.warning_not_found")
    await auditor(
        "warning_ack", target=f"warning:{warning_id}", details={"kind": out.kind, "subject": out.subject}
    )
    return out


# ---------------------------------------------------------------------------- monthly report


@router.get("/api/reports/monthly", **media("text/html", "application/pdf"))
async def monthly_report(
    me: Annotated[Principal, Depends(allow(*READERS))],
    st: State,
    auditor: Audit,
    site: Annotated[str, Query(max_length=64)],
    month: Annotated[str, Query(description="YYYY-MM")],
    fmt: Annotated[str, Query(alias="format", pattern="^(html|pdf)$")] = "html",
    lang: Annotated[str, Query(pattern="^(" + "|".join(LANGS) + ")$")] = "zh",
) -> Response:
    """The monthly supervision report of a site as HTML or PDF."""
    try:
        data = await build_monthly(st.db, st.cfg, site, month)
    except MonthlyError as e:
        raise ApiError(400, e.code, str(e)) from None
    await auditor("monthly_report", target=f"site:{site}", details={"month": month, "format": fmt})
    name = f"evalwatch-monthly-{site}-{month}.{fmt}"
    if fmt == "pdf":
        import asyncio

        body = await asyncio.to_thread(render_monthly_pdf, data, lang)
        return Response(
            body, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'}
        )
    return Response(render_monthly_html(data, lang), media_type="text/html; charset=utf-8")
