"""Cross-node alert push: every hub node's WebSocket clients see every node's incidents.

With several hub nodes on one PostgreSQL database (issue #14), an incident stored by node A
must reach the supervisors connected to node B.  :class:`EventRelay` carries the two kinds of
``/ws/events`` messages between nodes over the PostgreSQL channel ``evalwatch_events``
(``storage.pgnotify.PgChannel``, ``LISTEN``/``NOTIFY``):

* ``live`` — an analysis update (:class:`storage.incident.EventLive`) the node's
  ``analysis.store.EventStore`` stored and put on its bus;
* ``workflow`` — an alert acknowledged / resolved through the node's API
  (:class:`storage.incident.EventWorkflow`).

The payload is ``{"v": 1, "kind", "event": {...}, "node"}`` — the message itself, which is what
the other nodes push to their browsers.  When it would not fit a notification (PostgreSQL's
8000-byte limit: an incident with large ``details``), only ``{"v": 1, "kind", "id", "phase"}``
is sent and the receiving nodes load the row (``storage.models.EventRow``) — nothing is stored
again.  A node skips its own notifications (it has pushed them locally already), so each
browser gets each message once.  When the listener's connection dropped and came back, the
node sends its browsers ``{"type": "resync"}``: they reload the alert list over REST, which
covers whatever was notified meanwhile.

The same channel carries ``revoked`` — ``{"v": 1, "kind": "revoked", "sessions": [digest],
"user_id": id | null}``: login sessions revoked on a node (logout, password change,
deactivation; ``dashboard.users.LoginSessions``), so that the other nodes close the connections
they serve for them (a live stream forwarded to the node ingesting the camera).  Sessions go as
``dashboard.users.session_digest`` (a hash; never the key), at most ``REVOKED_PER_MESSAGE`` per
notification.  After a reconnect, ``on_resync`` (``LoginSessions.recheck``) asks the database.

SQLite has no such channel: :meth:`EventRelay.for_config` returns ``None`` and a single node
runs as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from dashboard.dbutil import run_db
from storage.incident import EventItem, EventLive, EventWorkflow
from storage.pgnotify import PayloadTooLarge, PgChannel, default_node_id, pg_conninfo

log = logging.getLogger("evalwatch.dashboard.notify")

CHANNEL = "evalwatch_events"
VERSION = 1
#: Session digests per ``revoked`` notification (32 hex characters each: well under the limit).
REVOKED_PER_MESSAGE = 100

Kind = Literal["live", "workflow"]


class RelaySink(Protocol):
    """Where a node delivers what other nodes sent (``dashboard.alerts.AlertHub``)."""

    def publish_remote(self, ev: EventLive | EventWorkflow) -> None: ...

    def resync(self) -> None: ...


def _kind(ev: EventLive | EventWorkflow) -> Kind:
    return "workflow" if isinstance(ev, EventWorkflow) else "live"


class EventRelay:
    """One node's end of the cross-node alert channel."""

    def __init__(self, conninfo: str, node_id: str, db: Any, **channel_options: Any) -> None:
        self.db = db
        self.node_id = node_id
        self.channel = PgChannel(
            conninfo, CHANNEL, node_id, on_message=self._on_message, on_reconnect=self._on_reconnect,
            **channel_options,
        )
        self._sink: RelaySink | None = None
        self.compact_sent = 0
        self.rows_loaded = 0
        #: Login sessions revoked on another node: ``(digests, user_id)`` (``LoginSessions.remote_revoked``).
        self.on_revoked: Callable[[list[str], int | None], Awaitable[object]] | None = None
        #: After a reconnect (``LoginSessions.recheck``).
        self.on_resync: Callable[[], Awaitable[object]] | None = None

    @classmethod
    def for_config(cls, cfg: Any, db: Any, **channel_options: Any) -> EventRelay | None:
        """The relay of a node of ``cfg`` on ``db`` (``storage.db.Database``); ``None`` unless
        the database is PostgreSQL.  Node id: ``hub.node_id``, else ``<hostname>-<pid>``."""
        conninfo = pg_conninfo(db.url)
        if conninfo is None:
            return None
        return cls(conninfo, cfg.hub.node_id or default_node_id(), db, **channel_options)

    async def start(self, sink: RelaySink) -> None:
        self._sink = sink
        await self.channel.start()

    async def stop(self) -> None:
        await self.channel.stop()
        self._sink = None

    # -- out --

    def send(self, ev: EventLive | EventWorkflow) -> None:
        """Tell the other nodes (never blocks; see :class:`storage.pgnotify.PgChannel`)."""
        kind = _kind(ev)
        try:
            self.channel.send({"v": VERSION, "kind": kind, "event": ev.model_dump(mode="json")})
        except PayloadTooLarge:
            self.compact_sent += 1
            self.channel.send({"v": VERSION, "kind": kind, "id": ev.id, "phase": ev.phase})

    def send_revoked(self, digests: list[str], user_id: int | None) -> None:
        """Tell the other nodes these login sessions (``session_digest``s) — or every session of
        ``user_id`` — were revoked (never blocks)."""
        for i in range(0, max(1, len(digests)), REVOKED_PER_MESSAGE):
            self.channel.send({"v": VERSION, "kind": "revoked",
                               "sessions": digests[i : i + REVOKED_PER_MESSAGE], "user_id": user_id})

    # -- in --

    async def _on_message(self, doc: dict[str, Any]) -> None:
        if doc.get("kind") == "revoked" and doc.get("v") == VERSION:
            await self._revoked(doc)
            return
        ev = await self.event_of(doc)
        if ev is not None and self._sink is not None:
            self._sink.publish_remote(ev)

    async def _revoked(self, doc: dict[str, Any]) -> None:
        sessions, uid = doc.get("sessions"), doc.get("user_id")
        if not isinstance(sessions, list) or not all(isinstance(x, str) for x in sessions) or not (
            uid is None or (isinstance(uid, int) and not isinstance(uid, bool))
        ):
            log.warning("ignored a malformed 'revoked' notification from node=%s", doc.get("node"))
            return
        if self.on_revoked is not None:
            await self.on_revoked(sessions, uid)

    async def _on_reconnect(self) -> None:
        if self._sink is not None:
            self._sink.resync()
        if self.on_resync is not None:
            try:
                await self.on_resync()
            except Exception:
                log.exception("re-checking the watched login sessions after a reconnect failed")

    async def event_of(self, doc: dict[str, Any]) -> EventLive | EventWorkflow | None:
        """The message a notification stands for (``None``, logged, when it makes no sense)."""
        kind = doc.get("kind")
        if doc.get("v") != VERSION or kind not in ("live", "workflow"):
            log.warning("ignored a notification of unknown version/kind from node=%s", doc.get("node"))
            return None
        try:
            if isinstance(doc.get("event"), dict):
                model = EventWorkflow if kind == "workflow" else EventLive
                return model.model_validate(doc["event"])
            phase = doc.get("phase")
            if phase not in ("opened", "updated", "closed", "workflow"):
                raise ValueError(f"phase {phase!r}")
            return await self._from_row(kind, int(doc["id"]), phase)
        except (ValidationError, KeyError, TypeError, ValueError) as e:
            log.warning("ignored a malformed notification from node=%s: %s", doc.get("node"),
                        str(e).splitlines()[0])
            return None

    async def _from_row(self, kind: str, event_id: int, phase: Any) -> EventLive | EventWorkflow | None:
        from storage.models import EventRow

        row_item = await run_db(self.db, lambda s: _item(s.get(EventRow, event_id)))
        if row_item is None:
            log.warning("notified event id=%s is not in the database", event_id)
            return None
        item, uid, details = row_item
        self.rows_loaded += 1
        if kind == "workflow":
            return EventWorkflow(**item.model_dump())
        return EventLive(
            **item.model_dump(include=set(EventLive.model_fields) - {"phase", "uid", "status", "details"}),
            phase=phase, uid=uid, status="new" if phase == "opened" else None,
            details=details,
        )


def _item(row: Any) -> tuple[EventItem, str, dict[str, Any]] | None:
    if row is None:
        return None
    item = EventItem.from_row(row)
    details = {k: v for k, v in (row.details or {}).items() if k != "uid"}
    return item, str(row.uid or (row.details or {}).get("uid") or ""), details
