"""The scheduled early-warning run (``sessions.earlywarning``; docs/statistics.md).

``WarningJob`` evaluates the rules on ``warnings.cron`` (crontab, in ``hub.timezone``) with
APScheduler 3's ``AsyncIOScheduler`` in the hub's event loop, like the retention purge: one run
at a time, missed runs coalesced.  Each newly raised warning is published through the alert hub
(:meth:`dashboard.alerts.AlertHub.publish_warning`): every connected dashboard gets a
:class:`~sessions.earlywarning.WarningMessage` (``{"type": "warning", "id", "kind", "site", ...,
"text"}``) on ``/ws/events``, and whatever else listens to the hub's fan-out (notifications)
sees the same message.  The dashboard app starts the job in
its lifespan; ``POST /api/warnings/run`` runs it once on demand.  Several hub nodes: a scheduled
run happens only on the node holding the jobs lock (``storage.joblock.JobLeader``), so each
warning is raised and pushed once; an on-demand run runs where it is asked.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from dashboard.alerts import AlertHub
from dashboard.dbutil import run_db
from sessions.earlywarning import WarningMessage, WarningOut, evaluate

log = logging.getLogger("evalwatch.warnings")
I18N = Path(__file__).resolve().parent / "i18n"


@cache
def _strings(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def warning_text(w: WarningOut, lang: str = "zh-CN") -> str:
    """``w`` as the sentence the UI shows (i18n ``warning.<kind>``; the same words as stats.js)."""
    t = _strings(lang)

    def num(v: float) -> str:
        return f"{v:.1f}%" if w.unit == "percent" else f"{v:g}"

    who = w.subject
    if w.kind == "false_alarm_rate" and w.rule:
        who = t.get("rule." + w.rule, w.rule)
    elif w.kind in ("expert_violations", "concurrent_flags"):
        who = " + ".join(w.expert_codes)
        if w.bid:
            who += f" ({t.get('sessions.bid', 'bid')} {w.bid})"
    template = t.get("warning." + w.kind, w.message)
    return (
        template.replace("{who}", who)
        .replace("{value}", num(w.value))
        .replace("{threshold}", num(w.threshold))
        .replace("{days}", str(w.window_days))
    )


def warning_message(w: WarningOut) -> WarningMessage:
    """The push of ``w`` (fields at the top level, ``type: "warning"``, ``text`` in zh-CN)."""
    return WarningMessage(**w.model_dump(), text=warning_text(w))


class WarningJob:
    def __init__(self, cfg: Any, db: Any, hub: AlertHub, jobs: Any = None) -> None:
        self.cfg, self.db, self.hub = cfg, db, hub
        self.jobs = jobs  # storage.joblock.JobLeader: scheduled runs on one hub node only
        self.scheduler: Any = None
        self.runs = 0
        self.last_error: str | None = None

    async def run_once(self, *, raise_errors: bool = False) -> list[WarningOut]:
        """Evaluate every rule, store, push the new warnings; returns them ([] on failure, or
        the exception with ``raise_errors``)."""
        try:
            raised = await run_db(self.db, lambda s: evaluate(s, self.cfg.warnings))
        except Exception as e:  # logged; the next run tries again
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("early-warning run failed; next run as scheduled")
            if raise_errors:
                raise
            return []
        self.runs += 1
        self.last_error = None
        for w in raised:
            self.hub.publish_warning(warning_message(w))
        if raised:
            log.info("early warnings raised n=%d kinds=%s", len(raised), sorted({w.kind for w in raised}))
        return raised

    async def scheduled(self) -> list[WarningOut] | None:
        """What the scheduler runs: :meth:`run_once`, on the jobs node only (None elsewhere)."""
        if self.jobs is None:
            return await self.run_once()
        return await self.jobs.run("early-warnings", self.run_once)

    def start(self) -> None:
        """Schedule the job (needs the running loop); a no-op when ``warnings.cron`` is null."""
        expr = self.cfg.warnings.cron
        if expr is None:
            log.info("early warnings not scheduled (warnings.cron is null)")
            return
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(expr, timezone=self.cfg.hub.timezone)
        except ValueError as e:
            raise ValueError(f"warnings.cron {expr!r}: {e}") from None
        self.scheduler = AsyncIOScheduler(timezone=self.cfg.hub.timezone)
        self.scheduler.add_job(
            self.scheduled,
            trigger,
            id="early-warnings",
            name="early warnings",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
        self.scheduler.start()
        job = self.scheduler.get_job("early-warnings")
        log.info(
            "early warnings scheduled cron=%r next=%s",
            expr,
            job.next_run_time.isoformat() if job and job.next_run_time else None,
        )

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
