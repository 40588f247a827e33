"""Scheduled jobs on exactly one hub node at a time (issue #14).

Every hub node schedules the same jobs (the retention purge on ``storage.purge_cron``, the chain
anchor on ``storage.anchor_cron``, the early warnings on ``warnings.cron``).  With several nodes
on one PostgreSQL database each would run them: a purge twice at once, every warning pushed
twice, two anchors an hour.  :class:`JobLeader` makes one node *the jobs node*:

* it holds the PostgreSQL **session advisory lock** :data:`JOBS_LOCK_KEY` on a connection of its
  own (``pg_try_advisory_lock``; libpq TCP keepalives, ``storage.pgnotify.pg_conninfo``), taken
  at start when free and retried every ``retry_s`` (5 s) by the others;
* :meth:`JobLeader.run` wraps each *scheduled* run: it runs the job only after asking the
  database, on that very connection, that this session still holds the lock (``pg_locks``);
  otherwise it tries to take the lock, and skips the run (logged, counted in ``skipped``) when
  another node holds it.  Two nodes firing at the same moment: one runs.  A node that died
  (``kill -9``, its connection closed) frees the lock at once; one whose connection silently
  died loses it when PostgreSQL drops the session (keepalives), and its next run finds its
  connection dead and does not run on a belief;
* a fire time that comes while the jobs node is down is not run by another node (APScheduler
  coalesces only a node's own misfires): the next fire time runs on the new jobs node.

Runs asked for by a user (``POST /api/warnings/run``, ``evalwatch storage purge``) are not
wrapped: they run where they are asked.  SQLite (the single-hub default): one node, every
scheduled run runs, as before.  Nothing here logs the connection string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from storage.pgnotify import pg_conninfo

log = logging.getLogger("evalwatch.storage.joblock")

#: The advisory lock's key ("ewjb"): below 2**31, so ``pg_locks`` shows it as classid 0, objid KEY.
JOBS_LOCK_KEY = 0x65776A62

T = TypeVar("T")


class JobLeader:
    """This node's claim to run the scheduled jobs (see the module docstring)."""

    def __init__(self, database_url: str, node_id: str, *, retry_s: float = 5.0) -> None:
        self.conninfo = pg_conninfo(database_url)
        self.node_id = node_id
        self.retry_s = retry_s
        self._conn: Any = None
        self._mutex = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.ran: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    @property
    def exclusive(self) -> bool:
        """SQLite: the only node runs every job."""
        return self.conninfo is None

    @property
    def leading(self) -> bool:
        """This node's belief (for status pages); :meth:`check` asks the database."""
        return self.exclusive or self._conn is not None

    async def start(self) -> None:
        """Take the lock if it is free, then retry in the background every ``retry_s``."""
        if self.exclusive:
            return
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="jobs-lock")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never stop trying
                log.warning("jobs lock check failed node=%s: %s", self.node_id, type(e).__name__)

    async def check(self) -> bool:
        """Whether this node holds the jobs lock now, asked of the database; takes it when free."""
        if self.exclusive:
            return True
        async with self._mutex:
            if self._conn is not None:
                try:
                    if await self._holds(self._conn):
                        return True
                    log.warning("jobs lock lost node=%s (its session no longer holds it)", self.node_id)
                except Exception as e:
                    log.warning("jobs lock connection lost node=%s: %s", self.node_id, type(e).__name__)
                await self._drop()
            return await self._take()

    async def _holds(self, conn: Any) -> bool:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND granted AND classid = 0 AND objid = %s AND objsubid = 1",
            (JOBS_LOCK_KEY,),
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _take(self) -> bool:
        import psycopg

        assert self.conninfo is not None
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except Exception as e:
            log.warning("jobs lock: database unreachable node=%s: %s", self.node_id, type(e).__name__)
            return False
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (JOBS_LOCK_KEY,))
            row = await cur.fetchone()
        except Exception:
            await conn.close()
            raise
        if row and row[0]:
            self._conn = conn
            log.info("jobs node: node=%s runs the scheduled jobs", self.node_id)
            return True
        await conn.close()
        return False

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # closing the session releases the lock

    async def run(self, job: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """A scheduled run of ``job``: ``fn()`` when this node is the jobs node, else None."""
        if not await self.check():
            self.skipped[job] = self.skipped.get(job, 0) + 1
            log.info("scheduled job %s skipped on node=%s: another node runs the scheduled jobs",
                     job, self.node_id)
            return None
        self.ran[job] = self.ran.get(job, 0) + 1
        return await fn()

    async def stop(self) -> None:
        """Stop retrying and release the lock (another node takes it at its next check)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._mutex:
            await self._drop()
