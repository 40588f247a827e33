"""Anchoring wiring: the hub's :class:`AnchorJob` (APScheduler 3 on ``storage.anchor_cron``, as
the retention purge uses ``storage.purge_cron``) and :func:`anchorer_for` (also used by
``evalwatch session close``).  The anchor records themselves: :mod:`sessions.anchors`."""

from __future__ import annotations

import logging
from typing import Any

from config.models import EvalwatchConfig

log = logging.getLogger("evalwatch.anchors")


async def anchorer_for(cfg: EvalwatchConfig, db: Any, key: Any) -> Any:
    """A :class:`sessions.anchors.Anchorer` for ``cfg``: the anchor store of ``storage.anchor``
    (its bucket ensured; a store that cannot be reached is logged and retried at each anchor)."""
    from sessions.anchors import Anchorer, AnchorStore
    from storage.objects import StorageError

    store = None
    a = cfg.storage.anchor
    if a is not None:
        store = AnchorStore(a, cfg.storage.s3, cfg.storage.retention_days)
        try:
            await store.start()
        except StorageError as e:
            log.error("anchor store %s not ready (anchors still written to it): %s", store.describe(), e)
        else:
            log.info("anchor store ready %s endpoint=%s", store.describe(), store.objects.cfg.endpoint)
    return Anchorer(db, key, store)


class AnchorJob:
    """The hub's hourly anchor (``storage.anchor_cron``, ``AsyncIOScheduler``)."""

    def __init__(self, cfg: EvalwatchConfig, anchorer: Any, jobs: Any = None) -> None:
        self.cfg, self.anchorer = cfg, anchorer
        self.jobs = jobs  # storage.joblock.JobLeader: scheduled runs on one hub node only
        self.scheduler: Any = None

    async def run_once(self, reason: str = "hourly") -> Any:
        try:
            return await self.anchorer.anchor(reason)
        except Exception:  # logged; the next fire time tries again
            log.exception("anchoring the chain heads failed; next run as scheduled")
            return None

    def start(self) -> None:
        """Schedule the job (needs the running loop); a no-op when ``anchor_cron`` is null."""
        expr = self.cfg.storage.anchor_cron
        if expr is None:
            log.info("chain heads anchored only at session close (storage.anchor_cron is null)")
            return
        from evalwatch.retention import cron_scheduler

        self.scheduler = cron_scheduler(
            self.run_once, expr, self.cfg.hub.timezone, field="storage.anchor_cron",
            job_id="chain-anchor", name="chain anchor", grace_s=3600, jobs=self.jobs,
        )
        job = self.scheduler.get_job("chain-anchor")
        log.info(
            "chain anchor scheduled cron=%r next=%s",
            expr, job.next_run_time.isoformat() if job and job.next_run_time else None,
        )

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
