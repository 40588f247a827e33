"""Scheduled jobs on exactly one hub node at a time (storage/joblock.py, issue #14).

Two nodes on one PostgreSQL database, each with the real early-warning job (``warnings.cron``)
and the real retention purge (``storage.purge_cron``) scheduled by APScheduler; their fire
times are moved to "now" on both nodes at once, the way a cron time fires on every node.
Only the node holding the jobs lock runs them; when that node's database session dies, one node
(never both) runs the next fire time; when it stops, the other takes over.  SQLite (one node):
every scheduled run runs, as before.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard.alerts import AlertHub
from dashboard.earlywarn import WarningJob
from evalwatch.retention import RetentionJob
from storage.db import Database
from storage.joblock import JobLeader
from testkit.dashboard import MemoryObjects, make_config

#: A fire time that never comes during a test (the test fires the jobs itself: ``_fire``).
YEARLY = "0 3 1 1 *"


def _cfg(**hub: Any) -> Any:
    cfg = make_config(**hub)
    return cfg.model_copy(update={
        "warnings": cfg.warnings.model_copy(update={"cron": YEARLY}),
        "storage": cfg.storage.model_copy(update={"purge_cron": YEARLY}),
    })


async def _fire(jobs: list[Any], job_id: str) -> None:
    """Make every node's scheduler fire ``job_id`` now (as a cron time does on every node)."""
    now = datetime.now(UTC)
    for j in jobs:
        j.scheduler.get_job(job_id).modify(next_run_time=now)


async def _settle(pred: Any, within: float = 15.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < within
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # and nothing more comes


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_scheduled_jobs_run_on_one_node(database: Database, db_url: str) -> None:
    nodes = ("a", "b")
    leaders = {n: JobLeader(db_url, f"node-{n}", retry_s=0.5) for n in nodes}
    for n in nodes:  # a starts first: it takes the lock
        await leaders[n].start()
    assert leaders["a"].leading and not leaders["b"].leading
    cfgs = {n: _cfg(node_id=f"node-{n}") for n in nodes}
    warn = {n: WarningJob(cfgs[n], database, AlertHub(None), leaders[n]) for n in nodes}
    purge = {n: RetentionJob(cfgs[n], database, MemoryObjects(), leaders[n]) for n in nodes}
    for n in nodes:
        warn[n].start()
        purge[n].start()
    try:
        # One cron minute on both nodes: each job runs once, on a.
        await _fire(list(warn.values()), "early-warnings")
        await _fire(list(purge.values()), "retention-purge")
        await _settle(lambda: warn["a"].runs == 1 and purge["a"].runs == 1)
        assert (warn["b"].runs, purge["b"].runs) == (0, 0)
        assert leaders["b"].skipped == {"early-warnings": 1, "retention-purge": 1}

        # a's database session dies (a partition, a killed backend): at the next fire time the
        # lock is free and exactly one node runs — never a on its stale belief plus b.
        import psycopg

        from storage.pgnotify import pg_conninfo

        with psycopg.connect(pg_conninfo(db_url) or "", autocommit=True) as c:
            pids = [r[0] for r in c.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
                (0x65776A62,))]
            assert len(pids) == 1
            c.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
        before = sum(w.runs for w in warn.values())
        await _fire(list(warn.values()), "early-warnings")
        await _settle(lambda: sum(w.runs for w in warn.values()) == before + 1)
        assert sum(w.runs for w in warn.values()) == before + 1
        assert sum(1 for ld in leaders.values() if ld.leading) == 1

        # The jobs node stops (a graceful stop, or kill -9: its session ends): the other runs.
        holder = next(n for n in nodes if leaders[n].leading)
        other = "b" if holder == "a" else "a"
        await warn[holder].stop()
        await leaders[holder].stop()
        runs = warn[other].runs
        await _fire([warn[other]], "early-warnings")
        await _settle(lambda: warn[other].runs == runs + 1)
        assert leaders[other].leading
    finally:
        for n in nodes:
            await warn[n].stop()
            await purge[n].stop()
            await leaders[n].stop()


async def test_single_node_on_sqlite_runs_every_scheduled_job(tmp_path: Path) -> None:
    from testkit.dashboard import make_database

    db = make_database(tmp_path / "one.db")
    leader = JobLeader(db.url, "only")
    await leader.start()
    assert leader.exclusive and leader.leading
    job = WarningJob(_cfg(), db, AlertHub(None), leader)
    job.start()
    try:
        for i in range(2):
            await _fire([job], "early-warnings")
            await _settle(lambda i=i: job.runs == i + 1)
        assert leader.ran == {"early-warnings": 2} and not leader.skipped
    finally:
        await job.stop()
        await leader.stop()
        db.dispose()
