"""Fan-out of alert updates to the browsers connected on ``/ws/events``.

One subscription to the analysis bus feeds every WebSocket client; workflow changes made through
the REST API (acknowledge / resolve / false alarm) are published here too, so every wall sees them.
With several hub nodes (PostgreSQL), an optional ``relay`` (``dashboard.notify.EventRelay``)
sends both to the other nodes and brings theirs here (``publish_remote``, never sent on again).
Each client has a bounded queue: when it overflows, the backlog is replaced by one
``{"type": "resync"}`` message and the UI reloads the alert list over REST (a stalled browser never
slows the others or the bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dashboard.services import EventBusLike
from sessions.earlywarning import WarningMessage
from storage.incident import EventLive, EventMessage, EventWorkflow

if TYPE_CHECKING:
    from dashboard.notify import EventRelay

log = logging.getLogger("evalwatch.dashboard")

CLIENT_QUEUE = 256


def jsonable(v: Any) -> Any:
    """``v`` with datetimes as ISO-8601 strings (recursively)."""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def event_message(ev: EventLive | EventWorkflow) -> dict[str, Any]:
    """The WebSocket message (:class:`storage.incident.EventMessage`) for one incident update;
    ``hub_sent_at`` is the fan-out time (epoch s) of live updates."""
    hub_sent_at = time.time() if isinstance(ev, EventLive) else None
    return EventMessage(event=ev, hub_sent_at=hub_sent_at).model_dump(mode="json")


def without_name(msg: dict[str, Any]) -> dict[str, Any]:
    """``msg`` without the incident's ``expert_name`` (what observers get)."""
    ev = msg.get("event")
    if isinstance(ev, dict) and "expert_name" in ev:
        return {**msg, "event": {k: v for k, v in ev.items() if k != "expert_name"}}
    return msg


class Client:
    def __init__(self, username: str, role: str | None = None) -> None:
        self.username = username
        self.role = role
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self.overflows = 0

    def offer(self, msg: dict[str, Any]) -> None:
        if self.role == "observer":  # observers see expert codes, never names
            msg = without_name(msg)
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.overflows += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait({"type": "resync"})


class AlertHub:
    """Owns the bus subscription and the set of connected clients."""

    def __init__(self, bus: EventBusLike | None, relay: EventRelay | None = None) -> None:
        self.bus = bus
        self.relay = relay
        self.clients: set[Client] = set()
        self.pushed = 0
        self.remote = 0
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._relay_started = False
        #: Called on every bus update before the fan-out (the app sets the expert tagger).
        self.enrich: Callable[[EventLive], Awaitable[None]] | None = None
        #: Called with every message this node publishes (not other nodes' nor ``resync``): the
        #: notifications to people on site (``dashboard.notifications.Notifier.offer``).  A
        #: listener must return at once; one that raises is logged and skipped.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    @property
    def bus_queue_depth(self) -> int:
        q = getattr(self._sub, "queue", None)
        return q.qsize() if q is not None else 0

    @property
    def bus_dropped(self) -> int:
        return int(getattr(self._sub, "dropped", 0) or 0)

    async def start(self) -> None:
        if self.relay is not None and not self._relay_started:
            self._relay_started = True
            await self.relay.start(self)
        if self.bus is None or self._task is not None:
            return
        self._sub = self.bus.subscribe()
        self._task = asyncio.create_task(self._pump(), name="dashboard-alert-pump")

    async def stop(self) -> None:
        if self.relay is not None and self._relay_started:
            self._relay_started = False
            await self.relay.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._sub is not None and hasattr(self._sub, "close"):
            self._sub.close()
        self._sub = None

    async def _pump(self) -> None:
        async for ev in self._sub:
            try:
                if self.enrich is not None and isinstance(ev, EventLive):
                    try:  # before the relay too: other nodes get the expert with the update
                        await self.enrich(ev)
                    except Exception:  # a DB hiccup must not hold the push back
                        log.exception("tagging the expert of an event failed")
                self.publish_event(ev)
            except Exception:  # a malformed event must not stop the pump
                log.exception("bad event on the bus")

    def publish_event(self, ev: EventLive | EventWorkflow) -> None:
        """An update of this node: to its browsers and (relay) to the other nodes."""
        self.publish(event_message(ev))
        if self.relay is not None:
            self.relay.send(ev)

    def publish_remote(self, ev: EventLive | EventWorkflow) -> None:
        """An update another node made: to this node's browsers only."""
        self.remote += 1
        self.publish(event_message(ev), local=False)

    def resync(self) -> None:
        """Tell every browser to reload the alert list (messages may have been missed)."""
        for c in list(self.clients):
            c.offer({"type": "resync"})

    def publish_warning(self, msg: WarningMessage) -> None:
        """A newly raised early warning (``sessions.earlywarning``): to every browser as
        ``{"type": "warning", "id", "kind", "subject", "site", ..., "text"}`` (codes only, no
        names: observers get it too), through :meth:`publish` like every alert."""
        self.publish(msg.model_dump(mode="json"))

    def publish(self, msg: dict[str, Any], *, local: bool = True) -> None:
        """Push ``msg`` to every browser: an incident update (``type: "event"``), an early
        warning (``{"type": "warning", "kind", "site", "text", "details", ...}``) or a room
        notice's status (``type: "notice"``).  ``local``: made on this node (the listeners get it)."""
        self.pushed += 1
        for c in list(self.clients):
            c.offer(msg)
        if local:
            for fn in self.listeners:
                try:
                    fn(msg)
                except Exception:  # a listener must never hold the push back
                    log.exception("alert listener failed")

    def connect(self, username: str, role: str | None = None) -> Client:
        c = Client(username, role)
        self.clients.add(c)
        return c

    def disconnect(self, c: Client) -> None:
        self.clients.discard(c)

    def queue_depth(self) -> int:
        return sum(c.queue.qsize() for c in self.clients)
