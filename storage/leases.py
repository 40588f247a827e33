"""Site leases: which hub node ingests which site, decided by the database (issue #14 item 2).

Several hub nodes share one PostgreSQL database.  Each site is held by at most one node at a
time, through a row of ``site_leases(site_id, node_id, epoch, expires_at)``; every live node
has a row in ``hub_nodes(node_id, url, seen_at)``.  Times are the **database's** clock
(``clock_timestamp()`` on PostgreSQL), never a node's.

Contract:

* :class:`LeaseManager` renews every ``hub.lease_renew_seconds`` (5 s) in one transaction:
  registers the node, seeds missing lease rows, extends the leases it holds to now + TTL
  (``hub.lease_ttl_seconds``, 15 s), releases those above its share (``ceil(sites / live
  nodes)``; a node that starts later gets its share this way) and takes free or expired ones up to its share.
  Taking a site another node held (or nobody held) increments ``epoch``: the fencing token.
* :meth:`LeaseManager.holds` is the node's *belief*, used to answer agents quickly (421 and
  the holder's URL when it does not hold the site); it turns false on its own when renewals
  fail for ``TTL - renew`` seconds, before any other node may take the site.
* :func:`fence` is the *guarantee*: called inside the transaction that appends a chain link
  (``storage.segments.SegmentStore``), it reads this node's unexpired lease row ``FOR SHARE``
  and raises :class:`LeaseLost` otherwise.  A takeover (``UPDATE … WHERE expires_at < now``)
  waits for that lock, so an append commits either before the site changes hands or not at
  all — a stale node (paused, partitioned, its lease expired) cannot append, whatever the
  timing of its own clock.
* SQLite (the single-hub default): one node holds every lease — it takes each site whatever
  the row says (a restarted hub has a new node id and must not wait for its previous lease
  to expire), and neither its belief nor the fence looks at the expiry (a renewal delayed by a
  loaded machine must not stop the only hub's archive).  The fence still checks the node, so
  ``make run`` behaves as before.
* :meth:`LeaseManager.stop` releases the node's leases (a graceful stop hands the sites over at
  once; a killed node's expire after the TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from storage.db import Database
from storage.models import HubNode, SiteLease
from storage.objects import StorageError

log = logging.getLogger("evalwatch.storage.leases")


class LeaseLost(StorageError):
    """This node does not hold the site's lease (never had it, another node took it, or it
    expired): the write is refused.  ``holder`` is the URL of the node holding it, if any."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def db_now(s: Session) -> datetime:
    """The database's clock (PostgreSQL ``clock_timestamp()``); SQLite (one node): this one."""
    if s.get_bind().dialect.name == "postgresql":
        t = s.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(t, datetime)
        return t.astimezone(UTC)
    return datetime.now(UTC)


def holder_of(s: Session, site: str, now: datetime | None = None) -> tuple[str, str] | None:
    """``(node_id, url)`` of the node holding ``site`` now, or None (free or expired)."""
    now = now or db_now(s)
    row = s.execute(
        select(SiteLease.node_id, HubNode.url)
        .join(HubNode, HubNode.node_id == SiteLease.node_id)
        .where(SiteLease.site_id == site, SiteLease.expires_at > now)
    ).first()
    return (str(row[0]), str(row[1])) if row else None


def fence(s: Session, site: str, node_id: str) -> int:
    """In the caller's transaction: the epoch of ``node_id``'s unexpired lease of ``site``, the
    row locked ``FOR SHARE`` until the transaction ends; :class:`LeaseLost` otherwise."""
    now = db_now(s)
    cond = [SiteLease.site_id == site, SiteLease.node_id == node_id]
    if s.get_bind().dialect.name == "postgresql":
        # SQLite has one hub: a renewal delayed by a loaded machine must not stop its archive.
        cond.append(SiteLease.expires_at > now)
    epoch = s.scalar(select(SiteLease.epoch).where(*cond).with_for_update(read=True))
    if epoch is None:
        h = holder_of(s, site, now)
        who = f"node {h[0]} ({h[1]})" if h else "no node (it is being reassigned)"
        raise LeaseLost(
            f"hub node {node_id} does not hold the lease of site {site!r}: {who} holds it",
            h[1] if h else None,
        )
    return int(epoch)


class Fence:
    """What :class:`storage.segments.SegmentStore` checks in each append's transaction."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def epoch(self, s: Session, site: str) -> int:
        return fence(s, site, self.node_id)


class LeaseManager:
    """This node's leases (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        node_id: str,
        url: str,
        sites: list[str],
        *,
        ttl_s: float = 15.0,
        renew_s: float = 5.0,
    ) -> None:
        if not renew_s * 2 <= ttl_s:
            raise ValueError(f"lease renewal every {renew_s}s must be at most half the TTL ({ttl_s}s)")
        self.db = db
        self.node_id = node_id
        self.url = url.rstrip("/")
        self.sites = sorted(set(sites))
        self.ttl = timedelta(seconds=ttl_s)
        self.renew_s = renew_s
        self.exclusive = db.dialect == "sqlite"
        self.fence = Fence(node_id)
        self._held: dict[str, int] = {}
        self._valid_until = 0.0  # monotonic: self-fencing when renewals fail
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        self.renew_errors = 0

    # --- belief ---------------------------------------------------------------------------

    def holds(self, site: str) -> bool:
        return site in self._held and (self.exclusive or time.monotonic() < self._valid_until)

    def held(self) -> dict[str, int]:
        """Site → epoch of the leases this node believes it holds now."""
        return dict(self._held) if self.exclusive or time.monotonic() < self._valid_until else {}

    async def holder_url(self, site: str) -> str | None:
        """URL of the node holding ``site`` now (None: nobody; being reassigned)."""
        h = await self.db.run(lambda s: holder_of(s, site))
        return h[1] if h else None

    # --- renewal --------------------------------------------------------------------------

    def _seed(self, s: Session, now: datetime) -> None:
        present = set(s.scalars(select(SiteLease.site_id).where(SiteLease.site_id.in_(self.sites))))
        missing = [x for x in self.sites if x not in present]
        if not missing:
            return
        rows = [{"site_id": x, "node_id": None, "epoch": 0, "expires_at": now} for x in missing]
        if s.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            s.execute(pg_insert(SiteLease).values(rows).on_conflict_do_nothing())
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            s.execute(sqlite_insert(SiteLease).values(rows).on_conflict_do_nothing())

    def _register(self, s: Session, now: datetime) -> None:
        node = s.get(HubNode, self.node_id)
        if node is None:
            s.add(HubNode(node_id=self.node_id, url=self.url, seen_at=now))
        else:
            node.url, node.seen_at = self.url, now

    def renew_once(self, s: Session) -> dict[str, int]:
        """One renewal in the caller's transaction; the leases held afterwards (site → epoch)."""
        now = db_now(s)
        until = now + self.ttl
        self._register(s, now)
        self._seed(s, now)
        s.flush()
        me = SiteLease.node_id == self.node_id
        # Extend what is still ours.
        s.execute(
            update(SiteLease)
            .where(me, SiteLease.expires_at > now, SiteLease.site_id.in_(self.sites))
            .values(expires_at=until)
            .execution_options(synchronize_session=False)
        )
        held = {
            r.site_id: int(r.epoch)
            for r in s.scalars(select(SiteLease).where(me, SiteLease.expires_at > now,
                                                       SiteLease.site_id.in_(self.sites)))
        }
        if self.exclusive:
            quota = len(self.sites)
        else:
            live = s.scalar(
                select(func.count()).select_from(HubNode).where(HubNode.seen_at > now - self.ttl)
            ) or 1
            quota = math.ceil(len(self.sites) / max(1, int(live)))
        # Above my share (a node joined): release the last ones; another node takes them.
        for site in sorted(held)[quota:]:
            s.execute(
                update(SiteLease)
                .where(SiteLease.site_id == site, me)
                .values(expires_at=now)
                .execution_options(synchronize_session=False)
            )
            del held[site]
            log.info("lease released site=%s node=%s (above this node's share of %d)",
                     site, self.node_id, quota)
        # Below my share: take free or expired sites (all of them on SQLite: one node).
        for site in self.sites:
            if len(held) >= quota:
                break
            if site in held:
                continue
            cond = [SiteLease.site_id == site]
            if not self.exclusive:
                cond.append(or_(SiteLease.node_id.is_(None), SiteLease.expires_at <= now))
            res = s.execute(
                update(SiteLease)
                .where(*cond)
                .values(node_id=self.node_id, epoch=SiteLease.epoch + 1, expires_at=until)
                .execution_options(synchronize_session=False)
            )
            if getattr(res, "rowcount", 0) == 1:
                epoch = s.scalar(select(SiteLease.epoch).where(SiteLease.site_id == site))
                held[site] = int(epoch or 0)
                log.info("lease taken site=%s node=%s epoch=%s", site, self.node_id, held[site])
        return held

    async def renew(self) -> dict[str, int]:
        """Renew now; the leases held.  A failure leaves the previous belief to expire."""
        started = time.monotonic()
        held = await self.db.run(self.renew_once)
        lost = set(self._held) - set(held)
        for site in sorted(lost):
            log.warning("lease lost site=%s node=%s (another node holds it now)", site, self.node_id)
        self._held = held
        # Self-fencing: trust the leases until TTL - one renewal period after this renewal began
        # (before any other node may take them: they expire TTL after the database's now).
        self._valid_until = started + self.ttl.total_seconds() - self.renew_s
        self.renewals += 1
        return held

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.renew_errors += 1
                log.error("lease renewal failed node=%s: %s: %s", self.node_id, type(e).__name__, e)

    async def start(self) -> None:
        """First renewal (takes this node's share at once), then renew in the background."""
        await self.renew()
        log.info("leases node=%s url=%s held=%s", self.node_id, self.url, sorted(self._held))
        self._task = asyncio.create_task(self._run(), name="site-leases")

    async def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release`` hand the node's sites over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        held, self._held = self._held, {}
        if release:

            def rel(s: Session) -> None:
                now = db_now(s)
                s.execute(
                    update(SiteLease)
                    .where(SiteLease.node_id == self.node_id, SiteLease.site_id.in_(list(held)))
                    .values(expires_at=now)
                    .execution_options(synchronize_session=False)
                )
                # No longer a live node: the others' shares grow at once.
                s.execute(delete(HubNode).where(HubNode.node_id == self.node_id))

            try:
                await self.db.run(rel)
                log.info("leases released node=%s sites=%s", self.node_id, sorted(held))
            except Exception as e:
                log.warning("could not release the leases node=%s: %s", self.node_id, e)

    def status(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "url": self.url, "held": self.held(), "renewals": self.renewals,
                "renew_errors": self.renew_errors}
