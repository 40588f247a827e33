"""Response models of the statistics, early-warning and monthly-report routes
(``dashboard/routes/stats.py``, docs/statistics.md).  The per-item models live beside the queries
(:mod:`sessions.stats`, :mod:`sessions.earlywarning`)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from sessions.earlywarning import WarningOut
from sessions.stats import AckStat, CameraStat, ExpertCount, IncidentStats, RuleJudgement


class StatsRange(BaseModel):
    """The range a statistics answer covers: local dates in ``tz`` (both included)."""

    date_from: date = Field(serialization_alias="from")
    date_to: date = Field(serialization_alias="to")
    tz: str
    site: str | None


class IncidentStatsOut(BaseModel):
    range: StatsRange
    incidents: IncidentStats


class JudgementStatsOut(BaseModel):
    range: StatsRange
    rules: list[RuleJudgement]


class AckStatsOut(BaseModel):
    range: StatsRange
    rules: list[AckStat]


class CameraStatsOut(BaseModel):
    range: StatsRange
    cameras: list[CameraStat]


class ExpertStatsOut(BaseModel):
    range: StatsRange
    experts: list[ExpertCount] = Field(
        description="confirmed violations per expert; names absent for observers"
    )


class WarningList(BaseModel):
    warnings: list[WarningOut]


class WarningRun(BaseModel):
    raised: list[WarningOut] = Field(description="warnings newly raised by this run (already pushed)")
