"""Messages between hub nodes through PostgreSQL ``LISTEN``/``NOTIFY`` (no other broker).

Several hub nodes share one PostgreSQL database (issue #14).  A :class:`PgChannel` gives each
node a way to tell the others something happened (an incident stored, an alert acknowledged)
and to hear what they said:

* ``send(doc)`` (non-blocking) queues a JSON document; a background task sends it with
  ``SELECT pg_notify(channel, json)`` on its own autocommit connection.  The node id is added
  as ``"node"``.  A payload must stay under PostgreSQL's 8000-byte limit: ``send`` refuses a
  bigger one with :class:`PayloadTooLarge` (callers send a reference instead) — see
  ``MAX_PAYLOAD``.  The queue is bounded (oldest dropped, ``dropped`` counts them); a send that
  fails reconnects once and otherwise drops the message with a warning (``send_errors``): the
  data itself is in the database, peers see it on their next reload.
* A listener task holds one more connection that ``LISTEN``\\s on the channel and hands every
  document *from another node* to ``on_message`` (its own are skipped — the node already
  delivered them locally).  When that connection drops (database restart, failover, a killed
  backend, a dead network — TCP keepalives and a periodic ping notice the silent cases) it
  reconnects with exponential backoff (``backoff_min_s`` → ``backoff_max_s``) and calls
  ``on_reconnect`` once it listens again: what was sent meanwhile is lost for this node, so the
  caller tells its clients to reload.
* Nothing here logs the connection string or its password.

Only PostgreSQL has it: :func:`pg_conninfo` returns ``None`` for any other database URL, and the
caller runs without a channel (a single node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("evalwatch.storage.pgnotify")

#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; keep a margin.
MAX_PAYLOAD = 7900

_KEEPALIVE = "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 connect_timeout=10"


class PayloadTooLarge(ValueError):
    """A document whose JSON is ``MAX_PAYLOAD`` bytes or more (send a reference instead)."""


def default_node_id() -> str:
    """``<hostname>-<pid>``: unique among the nodes running now."""
    return f"{socket.gethostname()}-{os.getpid()}"


def pg_conninfo(database_url: str) -> str | None:
    """The libpq connection string of a PostgreSQL SQLAlchemy URL (``postgresql+psycopg://...``,
    also with several hosts: ``...@/db?host=pg1:5432&host=pg2:5432&target_session_attrs=read-write``)
    plus TCP keepalives; ``None`` for any other database."""
    from psycopg.conninfo import make_conninfo
    from sqlalchemy.engine import make_url

    u = make_url(database_url)
    if u.get_backend_name() != "postgresql":
        return None
    u = u.set(drivername="postgresql+psycopg")
    # The dialect's own translation: the same parameters the database engine connects with.
    _args, params = u.get_dialect()().create_connect_args(u)
    return f"{make_conninfo('', **params)} {_KEEPALIVE}"


def encode(doc: dict[str, Any]) -> str:
    """The payload of ``doc``: compact JSON; :class:`PayloadTooLarge` at ``MAX_PAYLOAD`` bytes."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str)
    if len(text.encode()) >= MAX_PAYLOAD:
        raise PayloadTooLarge(f"notification of {len(text.encode())} bytes (limit {MAX_PAYLOAD})")
    return text


class PgChannel:
    """One node's side of a NOTIFY channel: a sender task and a listener task."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        node_id: str,
        *,
        on_message: Callable[[dict[str, Any]], Awaitable[None]],
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 10.0,
        ping_s: float = 15.0,
        queue_size: int = 1000,
    ) -> None:
        if not channel.isidentifier() or not channel.islower():
            raise ValueError(f"channel {channel!r}: use a lower-case identifier")
        self._conninfo = conninfo
        self.channel = channel
        self.node_id = node_id
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.ping_s = ping_s
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._send_conn: Any = None
        #: Set while the listener is subscribed (tests wait on it).
        self.listening = asyncio.Event()
        #: The listener connection's backend pid (``pg_terminate_backend`` in tests).
        self.listener_pid: int | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.send_errors = 0
        self.reconnects = 0
        self.bad_messages = 0
        # Backend pids of our sender connections: a notification carrying our node id from any
        # other backend means a second node runs with the same id (it would miss our messages).
        self._own_pids: set[int] = set()
        self._twin_warned = False

    # -- lifecycle --

    async def start(self, timeout_s: float = 10.0) -> None:
        """Start both tasks and wait (up to ``timeout_s``) until the listener listens; a
        database that is down at start is not fatal: the listener keeps retrying."""
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name=f"pg-listen-{self.channel}"),
            asyncio.create_task(self._send_loop(), name=f"pg-notify-{self.channel}"),
        ]
        try:
            await asyncio.wait_for(self.listening.wait(), timeout_s)
        except TimeoutError:
            log.warning("channel %s: not listening after %.0fs; retrying in the background",
                        self.channel, timeout_s)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        await self._close_sender()
        self.listening.clear()

    # -- sending --

    def send(self, doc: dict[str, Any]) -> None:
        """Queue ``doc`` (plus ``"node"``) for the other nodes; never blocks.
        :class:`PayloadTooLarge` when its JSON is too big for a notification."""
        payload = encode({**doc, "node": self.node_id})
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()
                    self.dropped += 1

    async def _connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def _close_sender(self) -> None:
        conn, self._send_conn = self._send_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _send_loop(self) -> None:
        import psycopg

        while True:
            payload = await self._queue.get()
            for attempt in (1, 2):
                try:
                    if self._send_conn is None or self._send_conn.closed:
                        self._send_conn = await self._connect()
                        self._own_pids.add(self._send_conn.info.backend_pid)
                    await self._send_conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                    self.sent += 1
                    break
                except (psycopg.Error, OSError) as e:
                    await self._close_sender()
                    if attempt == 2:
                        self.send_errors += 1
                        log.warning("channel %s: notification not sent (database: %s); peers see it on "
                                    "their next reload", self.channel, type(e).__name__)

    # -- listening --

    async def _listen_loop(self) -> None:
        import psycopg
        from psycopg import sql

        backoff = self.backoff_min_s
        connected_before = False
        while True:
            try:
                conn = await self._connect()
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listener_pid = conn.info.backend_pid
                    self.listening.set()
                    backoff = self.backoff_min_s
                    if connected_before:
                        self.reconnects += 1
                        log.info("channel %s: listening again after a lost connection", self.channel)
                        if self._on_reconnect is not None:
                            await self._on_reconnect()
                    else:
                        log.info("channel %s: listening node=%s", self.channel, self.node_id)
                    connected_before = True
                    await self._receive(conn)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as e:
                self.listening.clear()
                log.warning("channel %s: database connection lost (%s); reconnecting in %.1fs",
                            self.channel, type(e).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    async def _receive(self, conn: Any) -> None:
        while True:
            got = False
            async for n in conn.notifies(timeout=self.ping_s):
                got = True
                await self._deliver(n.payload, n.pid)
            if not got:  # quiet for ping_s: make sure the connection is still there
                await conn.execute("SELECT 1")

    async def _deliver(self, payload: str, sender_pid: int | None = None) -> None:
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            self.bad_messages += 1
            log.warning("channel %s: ignored a notification that is not a JSON object", self.channel)
            return
        if doc.get("node") == self.node_id:
            if sender_pid is not None and sender_pid not in self._own_pids and not self._twin_warned:
                self._twin_warned = True
                log.error("channel %s: another node runs with node id %s; give every node its own "
                          "hub.node_id (neither sees the other's alerts)", self.channel, self.node_id)
            return
        self.received += 1
        try:
            await self._on_message(doc)
        except Exception:  # one bad message must not stop the listener
            self.bad_messages += 1
            log.exception("channel %s: notification from node=%s could not be handled",
                          self.channel, doc.get("node"))
