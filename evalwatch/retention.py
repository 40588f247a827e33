"""Retention wiring: the hub's scheduled purge job and ``evalwatch storage purge``.

``RetentionJob`` runs :func:`run_purge` on ``storage.purge_cron`` (crontab, in ``hub.timezone``)
with APScheduler 3's ``AsyncIOScheduler`` in the hub's event loop: one run at a time, missed runs
coalesced (a hub that was down at 03:30 purges once when it is back, within the grace time).

``evalwatch storage purge --config FILE [--dry-run] [--json]`` runs the same purge once; with
``--dry-run`` it lists what would go (object locks checked) and deletes nothing.  Exit 0 done,
1 some deletions failed (listed) or storage/DB unreachable, 2 bad arguments.

It lives in the wiring layer because it joins the storage stage (the purge) with the sessions
stage (legal holds and exports in progress: ``sessions.holds``).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from config.models import EvalwatchConfig
from evalwatch.clitools import CliError, cli_actor, load_cfg, open_db, open_objects, parse_args, run_cli

log = logging.getLogger("evalwatch.retention")


async def run_purge(
    cfg: EvalwatchConfig, db: Any, objects: Any, *, dry_run: bool = False, actor: str = "system"
) -> Any:
    """One purge with the open holds; returns the ``storage.retention.PurgeReport``."""
    from sessions.holds import hold_windows
    from storage.retention import purge

    holds = await hold_windows(db)
    return await purge(
        db,
        objects,
        bucket_segments=cfg.storage.s3.bucket_segments,
        bucket_snapshots=cfg.storage.s3.bucket_snapshots,
        retention_days=cfg.storage.retention_days,
        holds=holds,
        actor=actor,
        dry_run=dry_run,
        holds_now=lambda: hold_windows(db),
    )


def cron_scheduler(
    fn: Any, expr: str, timezone: str, *, field: str, job_id: str, name: str, grace_s: int,
    jobs: Any = None,
) -> Any:
    """A started APScheduler 3 ``AsyncIOScheduler`` (needs the running loop) running ``fn`` on
    crontab ``expr`` in ``timezone``: one run at a time, missed runs coalesced into one within
    ``grace_s``.  With ``jobs`` (a ``storage.joblock.JobLeader``) a run happens only on the node
    that holds the jobs lock (several hub nodes: one runs it).  ``ValueError`` naming ``field``
    for a bad expression."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    if jobs is not None:
        run = fn

        async def fn() -> Any:
            return await jobs.run(job_id, run)

    try:
        trigger = CronTrigger.from_crontab(expr, timezone=timezone)
    except ValueError as e:
        raise ValueError(f"{field} {expr!r}: {e}") from None
    scheduler = AsyncIOScheduler(timezone=timezone)
    scheduler.add_job(
        fn, trigger, id=job_id, name=name, max_instances=1, coalesce=True, misfire_grace_time=grace_s
    )
    scheduler.start()
    return scheduler


class RetentionJob:
    """The hub's scheduled purge (APScheduler 3, ``AsyncIOScheduler``)."""

    def __init__(self, cfg: EvalwatchConfig, db: Any, objects: Any, jobs: Any = None) -> None:
        self.cfg, self.db, self.objects = cfg, db, objects
        self.jobs = jobs  # storage.joblock.JobLeader: scheduled runs on one hub node only
        self.scheduler: Any = None
        self.last_report: Any = None
        self.last_error: str | None = None
        self.runs = 0

    async def run_once(self) -> Any:
        try:
            report = await run_purge(self.cfg, self.db, self.objects)
        except Exception as e:  # a failed run is logged and retried at the next fire time
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("retention purge failed; next run as scheduled")
            return None
        self.runs += 1
        self.last_report = report
        self.last_error = "; ".join(report.failures[:3]) or None
        return report

    def start(self) -> None:
        """Schedule the job (needs the running loop); a no-op when ``purge_cron`` is null."""
        expr = self.cfg.storage.purge_cron
        if expr is None:
            log.info("retention purge not scheduled (storage.purge_cron is null)")
            return
        self.scheduler = cron_scheduler(
            self.run_once, expr, self.cfg.hub.timezone, field="storage.purge_cron",
            job_id="retention-purge", name="retention purge", grace_s=6 * 3600, jobs=self.jobs,
        )
        job = self.scheduler.get_job("retention-purge")
        log.info(
            "retention purge scheduled cron=%r next=%s retention_days=%d",
            expr,
            job.next_run_time.isoformat() if job and job.next_run_time else None,
            self.cfg.storage.retention_days,
        )

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None


def cli(argv: list[str]) -> int:
    """``evalwatch storage purge``: see the module docstring."""
    p = argparse.ArgumentParser(prog="evalwatch storage", description="archive maintenance")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("purge", help="delete footage, chain links and snapshots past their retention")
    sp.add_argument("--config", required=True, help="evalwatch YAML config file")
    sp.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    return run_cli("evalwatch storage purge", lambda: _purge(args))


async def _purge(args: argparse.Namespace) -> int:
    cfg = load_cfg(args.config)
    db = open_db(cfg)
    try:
        report = await run_purge(cfg, db, open_objects(cfg), dry_run=args.dry_run, actor=cli_actor())
    except ValueError as e:
        raise CliError(str(e), 2) from None
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(report.lines()))
    return 1 if report.failures else 0
