"""The scheduled early-warning run (``sessions.earlywarning``; docs/statistics.md).

``WarningJob`` evaluates the rules on ``warnings.cron`` (crontab, in ``hub.timezone``) with
APScheduler 3's ``AsyncIOScheduler`` in the hub's event loop, like the retention purge: one run
at a time, missed runs coalesced.  Each newly raised warning is published through the alert hub
(:meth:`dashboard.alerts.AlertHub.publish_warning`): every connected dashboard gets
``{"type": "warning", "warning": WarningOut}`` on ``/ws/events``, and whatever else listens to
the hub's fan-out (notifications) sees the same message.  The dashboard app starts the job in
its lifespan; ``POST /api/warnings/run`` runs it once on demand.
"""

from __future__ import annotations

import logging
from typing import Any

from dashboard.alerts import AlertHub
from dashboard.dbutil import run_db
from sessions.earlywarning import WarningOut, evaluate

log = logging.getLogger("evalwatch.warnings")


class WarningJob:
    def __init__(self, cfg: Any, db: Any, hub: AlertHub) -> None:
        self.cfg, self.db, self.hub = cfg, db, hub
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
            self.hub.publish_warning(w)
        if raised:
            log.info("early warnings raised n=%d kinds=%s", len(raised), sorted({w.kind for w in raised}))
        return raised

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
            self.run_once,
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
