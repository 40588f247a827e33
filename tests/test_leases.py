"""Site leases and the one-writer-per-camera fence (storage/leases.py, issue #14 item 2), on a
real SeaweedFS and both databases (SQLite: the one hub holds every lease; PostgreSQL: several
nodes share the sites and take a dead node's after its lease expires)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.leases import LeaseLost, LeaseManager, db_now
from storage.models import Segment, SiteLease
from storage.objects import ObjectStore
from storage.segments import SegmentMeta, SegmentStore
from storage.verify import verify_chain

T0 = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)


def meta(site: str, i: int) -> SegmentMeta:
    start = T0 + timedelta(seconds=10 * i)
    return SegmentMeta(site=site, room="room1", camera="cam1", start=start, end=start + timedelta(seconds=10))


def blob(i: int) -> bytes:
    return (f"segment-{i}-".encode() * 400)[:4000]


async def _until_holds(mgr: LeaseManager, site: str, limit_s: float = 10.0) -> float:
    """Renew ``mgr`` until it holds ``site``; seconds it took."""
    t0 = time.monotonic()
    while not (await mgr.renew()).get(site):
        if time.monotonic() - t0 > limit_s:
            raise AssertionError(f"{mgr.node_id} did not get {site} within {limit_s}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def test_stale_node_cannot_append(
    database: Database, object_store: ObjectStore, tmp_path: Path, unique_site: str
) -> None:
    """Node A archives, stops renewing (paused, partitioned); node B takes the site; A's next
    append is refused by the database although A's store still 'believes' nothing changed, and
    B continues the same chain linearly with a higher epoch."""
    site, bucket = unique_site, object_store.cfg.bucket_segments
    a = LeaseManager(database, "node-a", "http://127.0.0.1:1/", [site], ttl_s=4.0, renew_s=2.0)
    b = LeaseManager(database, "node-b", "http://127.0.0.1:2", [site], ttl_s=4.0, renew_s=2.0)
    assert (await a.renew()) == {site: 1}
    store_a = SegmentStore(object_store, database, tmp_path / "wal-a", bucket, fence=a.fence)
    store_b = SegmentStore(object_store, database, tmp_path / "wal-b", bucket, fence=b.fence)
    async with store_a, store_b:
        recs = [await store_a.put(meta(site, i), blob(i)) for i in range(3)]
        assert [(r.seq, r.node_id, r.epoch) for r in recs] == [(1, "node-a", 1), (2, "node-a", 1),
                                                              (3, "node-a", 1)]
        # B is refused while A's lease runs (on PostgreSQL; SQLite's single hub takes every site).
        if database.dialect == "postgresql":
            with pytest.raises(LeaseLost, match=r"node-b does not hold the lease .*node-a \(http://127\.0\.0\.1:1\)"):
                await store_b.put(meta(site, 3), blob(3))
        # A stops renewing; B takes the site once A's lease expired (database clock).
        a_until = (await database.run(lambda s: s.get(SiteLease, site))).expires_at  # type: ignore[union-attr]
        await _until_holds(b, site)
        if database.dialect == "postgresql":
            assert await database.run(db_now) >= a_until  # not before A's lease ran out
        assert b.held()[site] == 2  # the fencing token moved on
        # The stale writer: refused by the database, nothing archived, nothing in its WAL.
        with pytest.raises(LeaseLost, match=r"node-a does not hold the lease .*node-b \(http://127\.0\.0\.1:2\)"):
            await store_a.put(meta(site, 3), blob(3))
        assert not list((tmp_path / "wal-a").rglob("*.seg"))
        # B continues the chain.
        r4 = await store_b.put(meta(site, 3), blob(3))
        assert (r4.seq, r4.prev_hash, r4.node_id, r4.epoch) == (4, recs[-1].link_hash, "node-b", 2)
        # A again, with a later segment: still refused (no fork of the chain).
        with pytest.raises(LeaseLost):
            await store_a.put(meta(site, 4), blob(4))
        await store_b.wait_uploaded(20)
    rows = await database.run(lambda s: list(s.scalars(select(Segment).where(Segment.site == site)
                                                       .order_by(Segment.seq))))
    assert [(r.seq, r.node_id, r.epoch) for r in rows] == [
        (1, "node-a", 1), (2, "node-a", 1), (3, "node-a", 1), (4, "node-b", 2)]
    res = await verify_chain(object_store, site, "room1", "cam1", bucket=bucket, expected_head=4)
    assert res.ok, str(res)


async def test_takeover_waits_for_an_append_in_flight(
    database: Database, object_store: ObjectStore, tmp_path: Path, unique_site: str
) -> None:
    """The fence holds the lease row FOR SHARE: a takeover that starts while A's append
    transaction is open (A's lease already expired meanwhile) waits for it, so A's link commits
    before the site changes hands and B's chain continues after it."""
    if database.dialect != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite has one hub)")
    from storage.leases import fence

    site = unique_site
    a = LeaseManager(database, "node-a", "http://a", [site], ttl_s=4.0, renew_s=2.0)
    b = LeaseManager(database, "node-b", "http://b", [site], ttl_s=4.0, renew_s=2.0)
    await a.renew()
    s = database.session()
    tx = s.begin()
    assert fence(s, site, "node-a") == 1  # A's append transaction: lease checked and locked
    await asyncio.sleep(4.3)  # A's lease expires while its transaction is still open
    take = asyncio.create_task(b.renew())
    await asyncio.sleep(1.0)
    assert not take.done()  # the takeover waits for A's append
    tx.commit()
    s.close()
    held = await asyncio.wait_for(take, 10)
    # B took it after A committed (or, if B's 'now' was read first, at the next renewal).
    if not held:
        await _until_holds(b, site)
    row = await database.run(lambda s: s.get(SiteLease, site))
    assert row is not None and (row.node_id, row.epoch) == ("node-b", 2)


async def test_nodes_share_the_sites_and_take_a_dead_nodes(database: Database) -> None:
    """Two nodes, four sites: the first node takes them all, hands half over when the second
    appears; when the first stops renewing (killed) the second holds all four after the TTL.
    SQLite: the one node always holds every site."""
    sites = ["s1", "s2", "s3", "s4"]
    a = LeaseManager(database, "node-a", "http://a", sites, ttl_s=4.0, renew_s=2.0)
    b = LeaseManager(database, "node-b", "http://b", sites, ttl_s=4.0, renew_s=2.0)
    assert set(await a.renew()) == set(sites)
    if database.dialect != "postgresql":
        assert a.holds("s1") and await a.holder_url("s3") == "http://a"
        return
    assert await b.renew() == {}  # nothing free yet
    assert set(await a.renew()) == {"s1", "s2"}  # A sees two live nodes: releases its excess
    assert set(await b.renew()) == {"s3", "s4"}
    assert set(await a.renew()) == {"s1", "s2"} and set(await b.renew()) == {"s3", "s4"}  # stable
    assert await a.holder_url("s4") == "http://b"
    # A dies (no renewal): B holds everything once A's leases and its node row aged out.
    a_until = max(r.expires_at for r in await database.run(
        lambda s: list(s.scalars(select(SiteLease).where(SiteLease.node_id == "node-a")))))
    t0 = time.monotonic()
    while set(await b.renew()) != set(sites):
        assert time.monotonic() - t0 < 10, "B did not take A's sites"
        await asyncio.sleep(0.2)
    assert await database.run(db_now) >= a_until  # not before A's leases ran out
    epochs = {r.site_id: r.epoch for r in await database.run(lambda s: list(s.scalars(select(SiteLease))))}
    assert epochs == {"s1": 2, "s2": 2, "s3": 2, "s4": 2}  # each: A, then B
    # A graceful stop hands the sites over at once.
    await b.stop()
    assert set(await a.renew()) == {"s1", "s2", "s3", "s4"}


@pytest.mark.postgres
@pytest.mark.timeout(150)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_agent_follows_the_holder_and_fails_over(db_url: str, s3_server: Any, tmp_path: Path) -> None:
    """A real agent that knows two hub nodes (ingest API, real segment stores with the fence,
    one PostgreSQL database, one S3 server) is pointed at the node that does not hold its
    site: the 421 sends it to the holder.  The holder dies (its leases stop being renewed, its
    server is gone): the other node takes the site after the TTL, the agent goes there and sends
    what it spooled meanwhile.  Every spooled segment is archived once, the chain is linear
    across the two writers and verifies."""
    from capture.agent import Agent
    from storage.s3server import free_port
    from testkit.capture import build_app, make_clip, one_camera_config, serve_app

    clip = make_clip(tmp_path / "room.mp4", seconds=3)
    ports = {"a": free_port(), "b": free_port()}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    cfg = one_camera_config(tmp_path, clip, ports["a"], capture={
        "heartbeat_seconds": 0.5, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0})
    site = cfg.sites[0].model_copy(update={"hub_urls": [urls["a"], urls["b"]]})
    cfg = cfg.model_copy(update={"sites": [site]})
    Database(db_url).upgrade()
    dbs = {n: Database(db_url) for n in urls}
    mgrs = {n: LeaseManager(dbs[n], f"node-{n}", urls[n], ["s1"], ttl_s=6.0, renew_s=1.5) for n in urls}
    await mgrs["b"].start()  # B holds s1
    await mgrs["a"].start()
    assert mgrs["b"].holds("s1") and not mgrs["a"].holds("s1")
    objects = ObjectStore(s3_server.cfg)
    stores = {n: SegmentStore(objects, dbs[n], tmp_path / f"wal-{n}", s3_server.cfg.bucket_segments,
                              retry_min_s=0.2, retry_max_s=1.0, fence=mgrs[n].fence) for n in urls}
    servers = {}
    for n in urls:
        app, _rec = build_app(cfg, stores[n], leases=mgrs[n])
        servers[n] = await serve_app(app, ports[n])
    agent = Agent(cfg, "s1", hub_url=urls["a"], live=False)  # pointed at the node without the site
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))

    def rows() -> list[Segment]:
        with dbs["a"].session() as s:
            return list(s.scalars(select(Segment).where(Segment.site == "s1").order_by(Segment.seq)))

    async def until(pred: Any, what: str, within: float) -> float:
        t0 = time.monotonic()
        while not pred():
            assert not run.done(), run
            assert time.monotonic() - t0 < within, f"{what}: {[(r.seq, r.node_id) for r in rows()]}"
            await asyncio.sleep(0.2)
        return time.monotonic() - t0

    try:
        await until(lambda: sum(r.node_id == "node-b" for r in rows()) >= 3, "segments through B", 60)
        assert agent.hub_url == urls["b"] and agent.hub_switches >= 1
        # B dies: no more renewals, its server gone.
        await mgrs["b"].stop(release=False)
        servers["b"][0].should_exit = True
        await servers["b"][1]
        await stores["b"].stop()
        killed = time.monotonic()
        await until(lambda: any(r.node_id == "node-a" for r in rows()), "a segment through A", 40)
        failover_s = time.monotonic() - killed
        assert agent.hub_url == urls["a"]
        before = len(rows())
        await until(lambda: len(rows()) >= before + 2, "more segments through A", 30)
    finally:
        stop.set()
        await asyncio.wait_for(run, 40)
        await stores["a"].wait_uploaded(30)
        for server, task in servers.values():
            if not task.done():
                server.should_exit = True
                await task
        await mgrs["a"].stop()
    got = rows()
    spool = sorted((tmp_path / "spool" / "s1" / "r1" / "c1").glob("*.mp4"))
    assert spool and all(p.with_name(p.name + ".done").exists() for p in spool), "segments left unsent"
    # every spooled file is the row of its start time (the clip loops: two segments can hold the
    # same bytes, so the start, unique per camera, is what tells them apart), and no other row
    from capture.spool import parse_stamp

    by_start = {r.start.astimezone(UTC): r.sha256 for r in got}
    lost = [p.name for p in spool
            if by_start.get(parse_stamp(p.stem.split("_")[0])) != hashlib.sha256(p.read_bytes()).hexdigest()]
    assert not lost and len(got) == len(by_start) == len(spool)  # nothing lost, nothing twice
    assert [r.seq for r in got] == list(range(1, len(got) + 1))
    assert all(b.start >= a.end - timedelta(seconds=0.5) for a, b in itertools.pairwise(got))
    writers = [(r.node_id, r.epoch) for r in got]
    assert writers == sorted(writers, key=lambda w: w[1] or 0)  # B's links, then A's (a newer epoch)
    assert {w[0] for w in writers} == {"node-a", "node-b"}
    assert failover_s < 15, failover_s
    res = await verify_chain(objects, "s1", "r1", "c1", expected_head=len(got))
    assert res.ok, str(res)
    for db in dbs.values():
        db.dispose()


def test_lease_and_hub_list_settings_are_checked() -> None:
    """``hub.lease_*`` and ``sites[].hub_urls``: a wrong value names the field."""
    from pydantic import ValidationError

    from config.models import SiteConfig
    from testkit.dashboard import make_config

    assert make_config().hub.lease_ttl_seconds == 15 and make_config().hub.lease_renew_seconds == 5
    with pytest.raises(ValidationError, match=r"hub.lease_renew_seconds \(8.0\) must be at most half"):
        make_config(lease_ttl_seconds=15, lease_renew_seconds=8)
    with pytest.raises(ValidationError, match=r"lease_ttl_seconds\n  Input should be greater than or equal"):
        make_config(lease_ttl_seconds=0)
    room = {"id": "r1", "cameras": [{"id": "c1", "source": "x.mp4"}]}
    site = SiteConfig.model_validate({"id": "s1", "rooms": [room],
                                      "hub_urls": ["https://hub1:8443/", "https://hub2:8443", "https://hub1:8443"]})
    assert site.hub_urls == ["https://hub1:8443", "https://hub2:8443"]
    with pytest.raises(ValidationError, match=r"hub_urls\n.*'ftp://hub1' is not an http\(s\):// URL"):
        SiteConfig.model_validate({"id": "s1", "rooms": [room], "hub_urls": ["ftp://hub1"]})
