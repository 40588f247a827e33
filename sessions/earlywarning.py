"""Early warnings (预警, docs/statistics.md): four rules over the recent history, evaluated on a
schedule (the dashboard's ``WarningJob``), stored in the ``warnings`` table
(migration ``0009_warnings``) and pushed to every dashboard as a :class:`WarningMessage`.

Rules (thresholds in ``cfg.warnings``, :class:`config.models.WarningsConfig`):

==================== ================================= =============================================
kind                 subject                           fires when
==================== ================================= =============================================
``expert_violations`` the expert code                  >= ``expert_violations`` confirmed violations
                                                       (credit records, current decision) within
                                                       ``expert_days``
``site_offline``     the site                          its cameras were offline more than
                                                       ``site_offline_percent`` % of their session
                                                       time within ``site_offline_days``
``false_alarm_rate`` the rule                          dismissed / judged > ``false_alarm_percent``
                                                       % within ``false_alarm_days`` (at least
                                                       ``false_alarm_min_judged`` judged)
``concurrent_flags`` ``SESSION:BID:A+B``               two experts A, B of bid BID of one session, in
                                                       different rooms, had incidents within
                                                       ``concurrent_seconds`` of each other at least
                                                       ``concurrent_times`` times within
                                                       ``concurrent_days``
==================== ================================= =============================================

Deduplication: a candidate is ``(kind, subject, fingerprint)``; the fingerprint names the newest
piece of evidence (the newest violation record, session, dismissed incident, or co-occurring
incident).  While a warning of the same kind and subject is ``open`` it is updated in place
(value, details, ``last_seen_at``; nothing is pushed).  Once acknowledged, the same evidence
never raises it again (unique ``(kind, subject, fingerprint)``, also between hub nodes racing on
one database); new evidence raises a new warning.

Warnings name experts by code only (``expert_codes``): the push reaches observers too.  The API
adds names for roles that may see them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import JSON

from config.models import WarningsConfig
from sessions import stats
from sessions.credit_models import Expert
from sessions.models import EvalSession, SessionSeat
from storage.common import utcnow
from storage.incident import IsoTime
from storage.models import Base, EventRow, UTCDateTime

log = logging.getLogger("evalwatch.warnings")

Kind = Literal["expert_violations", "site_offline", "false_alarm_rate", "concurrent_flags"]
KINDS: tuple[str, ...] = ("expert_violations", "site_offline", "false_alarm_rate", "concurrent_flags")
Status = Literal["open", "acknowledged"]


class EarlyWarning(Base):
    """One raised warning (see the module docstring)."""

    __tablename__ = "warnings"
    __table_args__ = (
        UniqueConstraint("kind", "subject", "fingerprint", name="uq_warning_evidence"),
        Index("ix_warnings_subject", "kind", "subject", "status"),
        Index("ix_warnings_raised", "raised_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    site: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String(32))
    bid: Mapped[str | None] = mapped_column(String(64))
    expert_codes: Mapped[list[str]] = mapped_column(JSON)
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    window_days: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="open")
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WarningOut(BaseModel):
    """A warning as the API and the push carry it."""

    id: int
    kind: Kind = Field(description="expert_violations | site_offline | false_alarm_rate | concurrent_flags")
    subject: str = Field(description="expert code, site id, rule, or SESSION:BID:A+B")
    site: str | None = Field(description="the site concerned, when one is")
    rule: str | None = Field(description="the incident rule (false_alarm_rate)")
    bid: str | None = Field(description="the bid (concurrent_flags)")
    expert_codes: list[str] = Field(description="experts concerned, by register code (or seat when none)")
    expert_names: dict[str, str] | None = Field(
        default=None, description="code -> name; REST only, never for observers, never in the push"
    )
    value: float = Field(description="the measured value: violations, percent, or times")
    threshold: float = Field(description="the configured threshold it crossed")
    unit: Literal["violations", "percent", "times"]
    window_days: int
    message: str = Field(description="one English sentence (the UI words it from kind and the numbers)")
    details: dict[str, Any] | None
    raised_at: IsoTime
    last_seen_at: IsoTime
    status: Status
    acknowledged_by: str | None
    acknowledged_at: IsoTime | None


class WarningMessage(WarningOut):
    """The alert-hub / WebSocket message of a newly raised warning (``/ws/events``): the
    warning's fields at the top level beside ``type`` and ``text`` (docs/statistics.md)."""

    type: Literal["warning"] = "warning"
    text: str = Field(description="the warning as one sentence in the UI's default language (zh-CN)")


UNITS: dict[str, Literal["violations", "percent", "times"]] = {
    "expert_violations": "violations",
    "site_offline": "percent",
    "false_alarm_rate": "percent",
    "concurrent_flags": "times",
}


def to_out(w: EarlyWarning, names: dict[str, str] | None = None) -> WarningOut:
    return WarningOut(
        id=w.id,
        kind=w.kind,  # type: ignore[arg-type]
        subject=w.subject,
        site=w.site,
        rule=w.rule,
        bid=w.bid,
        expert_codes=list(w.expert_codes or []),
        expert_names={c: names[c] for c in w.expert_codes or [] if c in names} if names is not None else None,
        value=w.value,
        threshold=w.threshold,
        unit=UNITS[w.kind],
        window_days=w.window_days,
        message=w.message,
        details=w.details,
        raised_at=w.raised_at,
        last_seen_at=w.last_seen_at,
        status=w.status,  # type: ignore[arg-type]
        acknowledged_by=w.acknowledged_by,
        acknowledged_at=w.acknowledged_at,
    )


@dataclass
class Candidate:
    kind: str
    subject: str
    fingerprint: str
    value: float
    threshold: float
    window_days: int
    message: str
    site: str | None = None
    rule: str | None = None
    bid: str | None = None
    expert_codes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the rules


def expert_rule(s: Session, cfg: WarningsConfig, now: datetime) -> list[Candidate]:
    since = now - timedelta(days=cfg.expert_days)
    by_code: dict[str, list[Any]] = {}
    for r, d in stats.current_decisions(s, since, now + timedelta(seconds=1)):
        if d == "violation" and r.expert_code:
            by_code.setdefault(r.expert_code, []).append(r)
    out = []
    for code, recs in sorted(by_code.items()):
        if len(recs) >= cfg.expert_violations:
            out.append(
                Candidate(
                    kind="expert_violations",
                    subject=code,
                    fingerprint=f"r{max(r.id for r in recs)}",
                    value=len(recs),
                    threshold=cfg.expert_violations,
                    window_days=cfg.expert_days,
                    message=f"expert {code} has {len(recs)} confirmed violations in {cfg.expert_days} days",
                    site=recs[-1].site if len({r.site for r in recs}) == 1 else None,
                    expert_codes=[code],
                    details={
                        "records": sorted(r.id for r in recs),
                        "events": sorted(r.event_id for r in recs),
                    },
                )
            )
    return out


def _ran_within(since: datetime, now: datetime) -> tuple[Any, ...]:
    """``where`` conditions: sessions that were running at some time in ``[since, now)``."""
    return (
        EvalSession.status.in_(("running", "closed")),
        EvalSession.started_at.is_not(None),
        EvalSession.started_at < now,
        EvalSession.closed_at.is_(None) | (EvalSession.closed_at > since),
    )


def site_offline_rule(s: Session, cfg: WarningsConfig, now: datetime) -> list[Candidate]:
    since = now - timedelta(days=cfg.site_offline_days)
    cams = stats.camera_stats(s, since, now, now=now)
    sessions = {int(x) for x in s.scalars(select(EvalSession.id).where(*_ran_within(since, now)))}
    out = []
    for site in sorted({c.site for c in cams}):
        mine = [c for c in cams if c.site == site]
        sess_s = sum(c.session_s for c in mine)
        off_s = sum(c.offline_s for c in mine)
        if sess_s <= 0:
            continue
        pct = 100.0 * off_s / sess_s
        if pct > cfg.site_offline_percent:
            out.append(
                Candidate(
                    kind="site_offline",
                    subject=site,
                    fingerprint=f"s{max(sessions) if sessions else 0}",
                    value=round(pct, 2),
                    threshold=cfg.site_offline_percent,
                    window_days=cfg.site_offline_days,
                    message=(
                        f"site {site}: cameras offline {pct:.1f}% of session time "
                        f"({off_s:.0f} of {sess_s:.0f} s) in {cfg.site_offline_days} days"
                    ),
                    site=site,
                    details={
                        "offline_s": round(off_s, 1),
                        "session_s": round(sess_s, 1),
                        "cameras": {c.camera: c.offline_s for c in mine if c.offline_s > 0},
                    },
                )
            )
    return out


def false_alarm_rule(s: Session, cfg: WarningsConfig, now: datetime) -> list[Candidate]:
    since = now - timedelta(days=cfg.false_alarm_days)
    judged = stats.judged_events(s, since, now + timedelta(seconds=1))
    out = []
    for rule in sorted({r for _e, r, _d in judged}):
        mine = [(e, d) for e, r, d in judged if r == rule]
        dismissed = [e for e, d in mine if d == "dismissed"]
        pct = 100.0 * len(dismissed) / len(mine)
        if len(mine) >= cfg.false_alarm_min_judged and pct > cfg.false_alarm_percent:
            out.append(
                Candidate(
                    kind="false_alarm_rate",
                    subject=rule,
                    fingerprint=f"e{max(dismissed)}",
                    value=round(pct, 2),
                    threshold=cfg.false_alarm_percent,
                    window_days=cfg.false_alarm_days,
                    message=(
                        f"rule {rule}: {len(dismissed)} of {len(mine)} judged incidents dismissed "
                        f"({pct:.1f}%) in {cfg.false_alarm_days} days"
                    ),
                    rule=rule,
                    details={"judged": len(mine), "dismissed": len(dismissed)},
                )
            )
    return out


def concurrent_rule(s: Session, cfg: WarningsConfig, now: datetime) -> list[Candidate]:
    since = now - timedelta(days=cfg.concurrent_days)
    sess_rows = s.scalars(select(EvalSession).where(*_ran_within(since, now))).all()
    gap = cfg.concurrent_seconds
    out = []
    for sess in sess_rows:
        seats = s.scalars(select(SessionSeat).where(SessionSeat.session_id == sess.id)).all()
        who = {
            (x.site, x.room, x.seat): (x.expert_code or f"{x.site}/{x.room}/{x.seat}", x.bid) for x in seats
        }
        if not who:
            continue
        a = max(sess.started_at or since, since)
        b = min(sess.closed_at or now, now)
        evs = s.execute(
            select(EventRow.id, EventRow.site, EventRow.room, EventRow.seat, EventRow.started_at)
            .where(EventRow.seat.is_not(None), EventRow.started_at >= a, EventRow.started_at < b)
            .where(EventRow.site.in_({k[0] for k in who}), EventRow.room.in_({k[1] for k in who}))
            .order_by(EventRow.started_at, EventRow.id)
        ).all()
        by_bid: dict[str, list[tuple[datetime, str, str, int]]] = {}
        for eid, site, room, seat, at in evs:
            hit = who.get((site, room, seat or ""))
            if hit is not None:
                by_bid.setdefault(hit[1], []).append((at, hit[0], f"{site}/{room}", int(eid)))
        for bid, flags in sorted(by_bid.items()):
            pairs: dict[tuple[str, str], list[tuple[int, int]]] = {}
            used: set[int] = set()
            for i, (t1, x1, r1, e1) in enumerate(flags):
                for t2, x2, r2, e2 in flags[i + 1 :]:
                    if (t2 - t1).total_seconds() > gap:
                        break
                    if x1 == x2 or r1 == r2 or e1 in used or e2 in used:
                        continue
                    used.update((e1, e2))
                    key = (min(x1, x2), max(x1, x2))
                    pairs.setdefault(key, []).append((e1, e2) if key[0] == x1 else (e2, e1))
                    break
            for (x, y), hits in sorted(pairs.items()):
                if len(hits) >= cfg.concurrent_times:
                    out.append(
                        Candidate(
                            kind="concurrent_flags",
                            subject=f"{sess.code}:{bid}:{x}+{y}",
                            fingerprint=f"e{max(max(h) for h in hits)}",
                            value=len(hits),
                            threshold=cfg.concurrent_times,
                            window_days=cfg.concurrent_days,
                            message=(
                                f"session {sess.code}, bid {bid}: experts {x} and {y} were flagged at the "
                                f"same time (within {gap:.0f} s) in different rooms {len(hits)} times"
                            ),
                            bid=bid,
                            expert_codes=[x, y],
                            details={"session": sess.code, "events": [list(h) for h in hits]},
                        )
                    )
    return out


RULES = (expert_rule, site_offline_rule, false_alarm_rule, concurrent_rule)


def candidates(s: Session, cfg: WarningsConfig, now: datetime) -> list[Candidate]:
    """Every warning the history supports now (before deduplication)."""
    return [c for rule in RULES for c in rule(s, cfg, now)]


# ---------------------------------------------------------------------------- raising


def store(s: Session, found: list[Candidate], now: datetime) -> list[EarlyWarning]:
    """Store ``found`` with deduplication (module docstring); returns the newly raised rows."""
    new: list[EarlyWarning] = []
    for c in found:
        open_row = s.scalars(
            select(EarlyWarning).where(
                EarlyWarning.kind == c.kind, EarlyWarning.subject == c.subject, EarlyWarning.status == "open"
            )
        ).first()
        if open_row is not None:
            open_row.value, open_row.details, open_row.message = c.value, c.details, c.message
            open_row.last_seen_at = now
            continue
        seen = s.scalars(
            select(EarlyWarning.id).where(
                EarlyWarning.kind == c.kind,
                EarlyWarning.subject == c.subject,
                EarlyWarning.fingerprint == c.fingerprint,
            )
        ).first()
        if seen is not None:
            continue
        row = EarlyWarning(
            kind=c.kind,
            subject=c.subject,
            fingerprint=c.fingerprint,
            site=c.site,
            rule=c.rule,
            bid=c.bid,
            expert_codes=c.expert_codes,
            value=c.value,
            threshold=c.threshold,
            window_days=c.window_days,
            message=c.message,
            details=c.details,
            raised_at=now,
            last_seen_at=now,
            status="open",
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # another hub node raised it a moment ago
            continue
        new.append(row)
        log.warning(
            "early warning raised kind=%s subject=%s site=%s value=%s threshold=%s",
            c.kind,
            c.subject,
            c.site,
            c.value,
            c.threshold,
        )
    return new


def evaluate(s: Session, cfg: WarningsConfig, now: datetime | None = None) -> list[WarningOut]:
    """Run every rule and store the results; the newly raised warnings (codes only)."""
    now = now or utcnow()
    return [to_out(w) for w in store(s, candidates(s, cfg, now), now)]


def names_of(s: Session, rows: list[EarlyWarning]) -> dict[str, str]:
    codes = {c for w in rows for c in (w.expert_codes or [])}
    if not codes:
        return {}
    return {
        str(c): str(n) for c, n in s.execute(select(Expert.code, Expert.name).where(Expert.code.in_(codes)))
    }


def listing(
    s: Session, *, status: str | None = None, kind: str | None = None, limit: int = 200, names: bool
) -> list[WarningOut]:
    q = select(EarlyWarning)
    if status is not None:
        q = q.where(EarlyWarning.status == status)
    if kind is not None:
        q = q.where(EarlyWarning.kind == kind)
    rows = list(s.scalars(q.order_by(EarlyWarning.raised_at.desc(), EarlyWarning.id.desc()).limit(limit)))
    who = names_of(s, rows) if names else None
    return [to_out(w, who) for w in rows]


class WarningStateError(ValueError):
    pass


def acknowledge(s: Session, warning_id: int, actor: str, now: datetime | None = None) -> EarlyWarning | None:
    """Acknowledge an open warning (None: no such warning; WarningStateError: not open)."""
    w = s.get(EarlyWarning, warning_id)
    if w is None:
        return None
    if w.status != "open":
        raise WarningStateError(f"warning {warning_id} is already {w.status}")
    w.status, w.acknowledged_by, w.acknowledged_at = "acknowledged", actor[:64], now or utcnow()
    return w
