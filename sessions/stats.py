"""Statistics over incidents, judgements, recording and camera availability (docs/statistics.md).

Every function takes a SQLAlchemy session and a UTC range ``[start, end)`` (the API turns local
dates in ``hub.timezone`` into it, :func:`day_range`) and optionally one site.

* :func:`incidents` — incidents (``events`` rows) started in the range, per local day (every day
  of the range, zeros included), per site, per room (``site/room``) and per rule.
* :func:`judgements` — per rule: incidents judged a violation (credit record, current decision
  ``violation``) and dismissed (current decision ``dismissed``, or the alert closed as
  ``false_alarm`` without a credit record); ``false_alarm_rate = dismissed / (confirmed +
  dismissed)`` in percent, null when nothing was judged.
* :func:`ack_times` — per rule: seconds from an incident's start to its acknowledgement (count,
  mean, median, 90th percentile, max) and how many were never acknowledged.
* :func:`camera_stats` — per camera of a running or closed session overlapping the range: the
  session seconds (the union of the camera's session windows, clipped to the range),
  the archived seconds inside them (union of segment intervals, as the session report's
  coverage), and the offline seconds inside them (union of its ``camera_offline`` incidents; an
  open one counts up to ``now``).  Coverage = archived / session, offline = offline / session.
* :func:`expert_violations` — confirmed violations per expert code in the range.

Seconds overlap nowhere twice: intervals are merged before they are measured.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sessions.credit_models import CreditRecord, CreditRevision, Expert
from sessions.models import EvalSession, SessionCamera
from storage.common import CameraId, utcnow
from storage.models import EventRow, Segment

Interval = tuple[datetime, datetime]
#: The longest range the statistics accept (days).
MAX_DAYS = 366


# ---------------------------------------------------------------------------- models


class Count(BaseModel):
    key: str = Field(description="the day (YYYY-MM-DD, hub time zone), site, site/room or rule")
    count: int


class IncidentStats(BaseModel):
    total: int
    by_day: list[Count]
    by_site: list[Count]
    by_room: list[Count]
    by_rule: list[Count]


class RuleJudgement(BaseModel):
    rule: str
    confirmed: int = Field(description="judged a violation (credit record)")
    dismissed: int = Field(description="dismissed, or closed as a false alarm without a record")
    judged: int
    false_alarm_rate: float | None = Field(description="dismissed / judged in percent; null: none judged")


class AckStat(BaseModel):
    rule: str
    acknowledged: int
    unacknowledged: int
    mean_s: float | None
    median_s: float | None
    p90_s: float | None
    max_s: float | None


class CameraStat(BaseModel):
    camera: str = Field(description="site/room/camera")
    site: str
    room: str
    session_s: float = Field(description="seconds of session time of this camera in the range")
    archived_s: float = Field(description="archived seconds inside its session time")
    coverage_percent: float | None = Field(description="archived / session in percent")
    offline_s: float = Field(description="seconds offline (camera_offline incidents) inside its session time")
    offline_percent: float | None = Field(description="offline / session in percent")


class ExpertCount(BaseModel):
    code: str
    name: str | None = Field(default=None, description="absent for observers")
    violations: int


# ---------------------------------------------------------------------------- ranges


class RangeError(ValueError):
    """A date range the statistics refuse (the message names the problem)."""


def day_range(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """``[first 00:00, last+1 00:00)`` in ``tz``, as UTC.  Raises :class:`RangeError`."""
    if last < first:
        raise RangeError(f"to ({last.isoformat()}) is before from ({first.isoformat()})")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise RangeError(f"the range has {days} days; at most {MAX_DAYS}")
    z = ZoneInfo(tz)
    a = datetime.combine(first, time(0), z)
    b = datetime.combine(last + timedelta(days=1), time(0), z)
    return a.astimezone(ZoneInfo("UTC")), b.astimezone(ZoneInfo("UTC"))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``intervals`` as sorted, disjoint intervals (empty ones dropped)."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def seconds(intervals: list[Interval]) -> float:
    return sum((b - a).total_seconds() for a, b in intervals)


def overlap(xs: list[Interval], ys: list[Interval]) -> float:
    """Seconds of the intersection of two merged interval lists."""
    i = j = 0
    total = 0.0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if b > a:
            total += (b - a).total_seconds()
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


# ---------------------------------------------------------------------------- incidents


def incidents(s: Session, start: datetime, end: datetime, tz: str, site: str | None = None) -> IncidentStats:
    q = select(EventRow.site, EventRow.room, EventRow.rule, EventRow.started_at).where(
        EventRow.started_at >= start, EventRow.started_at < end
    )
    if site is not None:
        q = q.where(EventRow.site == site)
    z = ZoneInfo(tz)
    days: Counter[str] = Counter()
    sites: Counter[str] = Counter()
    rooms: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    n = 0
    for ev_site, room, rule, at in s.execute(q):
        n += 1
        days[at.astimezone(z).date().isoformat()] += 1
        sites[ev_site] += 1
        rooms[f"{ev_site}/{room}"] += 1
        rules[rule] += 1
    first = start.astimezone(z).date()
    last = (end - timedelta(microseconds=1)).astimezone(z).date()
    all_days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]

    def counts(c: Counter[str], keys: list[str] | None = None) -> list[Count]:
        return [Count(key=k, count=c.get(k, 0)) for k in (keys if keys is not None else sorted(c))]

    return IncidentStats(
        total=n,
        by_day=counts(days, all_days),
        by_site=counts(sites),
        by_room=counts(rooms),
        by_rule=counts(rules),
    )


# ---------------------------------------------------------------------------- judgements


def current_decisions(
    s: Session, start: datetime, end: datetime, site: str | None = None
) -> list[tuple[CreditRecord, str]]:
    """Credit records of incidents in ``[start, end)`` with their current decision."""
    newest = (
        select(CreditRevision.record_id, func.max(CreditRevision.rev).label("rev"))
        .group_by(CreditRevision.record_id)
        .subquery()
    )
    q = (
        select(CreditRecord, CreditRevision.decision)
        .join(newest, newest.c.record_id == CreditRecord.id)
        .join(
            CreditRevision,
            (CreditRevision.record_id == newest.c.record_id) & (CreditRevision.rev == newest.c.rev),
        )
        .where(CreditRecord.occurred_at >= start, CreditRecord.occurred_at < end)
    )
    if site is not None:
        q = q.where(CreditRecord.site == site)
    return [(r, str(d)) for r, d in s.execute(q)]


def judged_events(
    s: Session, start: datetime, end: datetime, site: str | None = None
) -> list[tuple[int, str, str]]:
    """``(event id, rule, "violation" | "dismissed")`` of every judged incident in the range: the
    credit record's current decision, else ``dismissed`` for an alert closed as a false alarm."""
    out: dict[int, tuple[int, str, str]] = {}
    for r, d in current_decisions(s, start, end, site):
        out[r.event_id] = (r.event_id, r.rule, d)
    q = select(EventRow.id, EventRow.rule).where(
        EventRow.status == "false_alarm", EventRow.started_at >= start, EventRow.started_at < end
    )
    if site is not None:
        q = q.where(EventRow.site == site)
    for eid, rule in s.execute(q):
        out.setdefault(int(eid), (int(eid), str(rule), "dismissed"))
    return sorted(out.values())


def judgements(s: Session, start: datetime, end: datetime, site: str | None = None) -> list[RuleJudgement]:
    conf: Counter[str] = Counter()
    dism: Counter[str] = Counter()
    for _eid, rule, d in judged_events(s, start, end, site):
        (conf if d == "violation" else dism)[rule] += 1
    out = []
    for rule in sorted(set(conf) | set(dism)):
        c, x = conf[rule], dism[rule]
        out.append(
            RuleJudgement(rule=rule, confirmed=c, dismissed=x, judged=c + x, false_alarm_rate=_pct(x, c + x))
        )
    return out


# ---------------------------------------------------------------------------- acknowledgement


def _p90(xs: list[float]) -> float:
    ys = sorted(xs)
    k = max(0, min(len(ys) - 1, round(0.9 * (len(ys) - 1))))
    return ys[k]


def ack_times(s: Session, start: datetime, end: datetime, site: str | None = None) -> list[AckStat]:
    q = select(EventRow.rule, EventRow.started_at, EventRow.acknowledged_at).where(
        EventRow.started_at >= start, EventRow.started_at < end
    )
    if site is not None:
        q = q.where(EventRow.site == site)
    waits: dict[str, list[float]] = {}
    never: Counter[str] = Counter()
    for rule, at, ack in s.execute(q):
        waits.setdefault(rule, [])
        if ack is None:
            never[rule] += 1
        else:
            waits[rule].append(max(0.0, (ack - at).total_seconds()))
    out = []
    for rule in sorted(waits):
        xs = waits[rule]
        out.append(
            AckStat(
                rule=rule,
                acknowledged=len(xs),
                unacknowledged=never[rule],
                mean_s=round(statistics.fmean(xs), 1) if xs else None,
                median_s=round(statistics.median(xs), 1) if xs else None,
                p90_s=round(_p90(xs), 1) if xs else None,
                max_s=round(max(xs), 1) if xs else None,
            )
        )
    return out


# ---------------------------------------------------------------------------- cameras


def session_windows(
    s: Session, start: datetime, end: datetime, site: str | None = None, now: datetime | None = None
) -> dict[tuple[str, str, str], list[Interval]]:
    """``{(site, room, camera): merged session windows clipped to [start, end)}`` of every running
    or closed session (a running one up to ``now``)."""
    now = now or utcnow()
    q = (
        select(EvalSession, SessionCamera)
        .join(SessionCamera, SessionCamera.session_id == EvalSession.id)
        .where(EvalSession.status.in_(("running", "closed")), EvalSession.started_at.is_not(None))
        .where(EvalSession.started_at < end)
    )
    if site is not None:
        q = q.where(SessionCamera.site == site)
    raw: dict[tuple[str, str, str], list[Interval]] = {}
    for sess, cam in s.execute(q):
        a = sess.started_at
        if a is None:
            continue
        b = sess.closed_at if sess.closed_at is not None else max(now, a)
        a, b = max(a, start), min(b, end)
        if b > a:
            raw.setdefault((cam.site, cam.room, cam.camera), []).append((a, b))
    return {k: merge(v) for k, v in raw.items()}


def camera_stats(
    s: Session, start: datetime, end: datetime, site: str | None = None, now: datetime | None = None
) -> list[CameraStat]:
    now = now or utcnow()
    out = []
    for (cs, room, cam), win in sorted(session_windows(s, start, end, site, now).items()):
        lo, hi = win[0][0], win[-1][1]
        segs = s.execute(
            select(Segment.start, Segment.end)
            .where(Segment.site == cs, Segment.room == room, Segment.camera == cam)
            .where(Segment.start < hi, Segment.end > lo)
        ).all()
        offs = s.execute(
            select(EventRow.started_at, EventRow.ended_at)
            .where(EventRow.site == cs, EventRow.room == room, EventRow.camera == cam)
            .where(EventRow.rule == "camera_offline", EventRow.started_at < hi)
            .where(EventRow.ended_at.is_(None) | (EventRow.ended_at > lo))
        ).all()
        session_s = seconds(win)
        archived = overlap(win, merge((a, b) for a, b in segs))
        offline = overlap(win, merge((a, b if b is not None else max(now, a)) for a, b in offs))
        out.append(
            CameraStat(
                camera=CameraId(cs, room, cam).path,
                site=cs,
                room=room,
                session_s=round(session_s, 1),
                archived_s=round(archived, 1),
                coverage_percent=_pct(archived, session_s),
                offline_s=round(offline, 1),
                offline_percent=_pct(offline, session_s),
            )
        )
    return out


# ---------------------------------------------------------------------------- experts


def expert_violations(
    s: Session, start: datetime, end: datetime, site: str | None = None, *, names: bool
) -> list[ExpertCount]:
    """Confirmed violations per expert code in the range, most first (names only when allowed)."""
    counts: Counter[str] = Counter(
        r.expert_code for r, d in current_decisions(s, start, end, site) if d == "violation" and r.expert_code
    )
    who: dict[str, Any] = (
        dict(s.execute(select(Expert.code, Expert.name).where(Expert.code.in_(list(counts)))).all())
        if names and counts
        else {}
    )
    return [
        ExpertCount(code=c, name=who.get(c) if names else None, violations=n)
        for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
