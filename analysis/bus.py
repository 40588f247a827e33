"""In-process asyncio pub/sub for incident updates: ``analysis.store.EventStore`` publishes a
:class:`storage.incident.EventLive` per update once its row is written; the dashboard's WebSocket
fan-out subscribes here.

Contract:

* :meth:`EventBus.publish` never blocks and never raises because of a subscriber: every
  subscriber has a bounded queue; when it is full the *oldest* message is dropped and the
  subscription's ``dropped`` counter grows, so a slow subscriber only loses its own backlog.
* :meth:`EventBus.subscribe` returns a :class:`Subscription`, usable as an async iterator and an
  (async) context manager that unsubscribes on exit.  Messages are delivered in publish order.
* ``publish`` must be called on the bus's event loop thread; other threads use
  :meth:`EventBus.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

from storage.incident import EventLive


class Subscription:
    """One subscriber's bounded queue.  Iterate it, or ``await get()``."""

    def __init__(self, bus: EventBus, maxsize: int):
        self._bus = bus
        self.queue: asyncio.Queue[EventLive] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        self.closed = False

    def _offer(self, message: EventLive) -> None:
        while True:
            try:
                self.queue.put_nowait(message)
                return
            except asyncio.QueueFull:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except asyncio.QueueEmpty:  # pragma: no cover - maxsize >= 1
                    pass

    async def get(self) -> EventLive:
        """The next message (waits)."""
        return await self.queue.get()

    def get_nowait(self) -> EventLive:
        """The next message or ``asyncio.QueueEmpty``."""
        return self.queue.get_nowait()

    def close(self) -> None:
        """Unsubscribe; later publishes are not delivered here."""
        self.closed = True
        self._bus._remove(self)

    def __aiter__(self) -> AsyncIterator[EventLive]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[EventLive]:
        while not self.closed:
            yield await self.queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of incident updates to any number of subscribers with bounded queues."""

    def __init__(self, maxsize: int = 256):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._subs: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def subscribe(self, maxsize: int | None = None) -> Subscription:
        """A new subscription receiving every message published from now on."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        sub = Subscription(self, maxsize or self.maxsize)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, message: EventLive) -> None:
        """Deliver ``message`` to every subscriber without waiting (see module contract)."""
        self.published += 1
        for sub in list(self._subs):
            sub._offer(message)

    def publish_threadsafe(self, message: EventLive) -> None:
        """``publish`` from a thread other than the loop's (falls back to direct publish)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.publish(message)
        else:
            loop.call_soon_threadsafe(self.publish, message)
