"""EventStore: incidents become DB rows + snapshots in real S3, then bus messages with the DB id.

Nothing is lost while S3 is down: the snapshot waits on disk and is uploaded when S3 returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from analysis.bus import EventBus
from analysis.events import Event, EventUpdate
from analysis.store import EventStore
from storage.db import Database
from storage.models import EventRow as Row
from storage.objects import ObjectStore

T0 = 1_700_000_000.0


def incident(**kw: object) -> Event:
    base: dict[str, object] = dict(rule="phone", camera="cam1", seat="S1", start_s=T0, confidence=0.5,
                                   room="r1", site="s1", snapshot=b"\xff\xd8jpeg-bytes")
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


async def test_rows_snapshots_and_bus_messages(tmp_path: Path, database: Database,
                                               object_store: ObjectStore) -> None:
    bus = EventBus()
    sub = bus.subscribe()
    store = EventStore(database, object_store, "evalwatch-snapshots", bus, tmp_path / "spool")
    await store.start()
    try:
        ev = incident()
        await store.handle(EventUpdate("opened", ev))
        ev.end_s, ev.confidence, ev.footage_end_s = T0 + 30, 0.8, T0 + 35
        await store.handle(EventUpdate("closed", ev))
    finally:
        await store.close()
    # the alert goes out first; the snapshot follows in an "updated" message; then the close
    opened, updated, closed = sub.get_nowait(), sub.get_nowait(), sub.get_nowait()
    assert opened.snapshot_url is None and updated.phase == "updated"
    assert updated.snapshot_url and updated.id == opened.id
    with database.session() as s:
        rows = s.query(Row).filter(Row.site == "s1").all()
    assert len(rows) == 1
    row = rows[0]
    assert opened.id == closed.id == row.id and opened.phase == "opened"
    assert (row.rule, row.seat, row.confidence, row.status) == ("phone", "S1", 0.8, "new")
    assert row.ended_at is not None and (row.ended_at - row.started_at).total_seconds() == 30
    assert row.snapshot_key and row.snapshot_key.startswith("s1/r1/cam1/2023/11/14/")
    assert await object_store.get_bytes("evalwatch-snapshots", row.snapshot_key) == b"\xff\xd8jpeg-bytes"


async def test_snapshot_spooled_while_s3_down(tmp_path: Path, database: Database,
                                              s3_server_factory) -> None:
    env = s3_server_factory()
    objects = ObjectStore(env.cfg)
    await objects.ensure_buckets()
    store = EventStore(database, objects, "evalwatch-snapshots", EventBus(), tmp_path / "spool",
                       retry_seconds=0.5)
    await store.start()
    try:
        env.server.stop()
        ev = incident(site="s2", snapshot=b"\xff\xd8while-down")
        await asyncio.wait_for(store.handle(EventUpdate("opened", ev)), 60)
        await asyncio.wait_for(store.flush(), 60)
        # The event row exists even though the snapshot could not be uploaded.
        with database.session() as s:
            row = s.query(Row).filter(Row.site == "s2").one()
        assert row.snapshot_key == ev.snapshot_key
        assert ev.snapshot_key is not None  # set by the store when it took the event
        assert (tmp_path / "spool" / ev.snapshot_key).read_bytes() == b"\xff\xd8while-down"
        env.server.start()
        for _ in range(120):
            if not (tmp_path / "spool" / ev.snapshot_key).exists():
                break
            await asyncio.sleep(0.5)
        assert await objects.get_bytes("evalwatch-snapshots", ev.snapshot_key) == b"\xff\xd8while-down"
        assert not (tmp_path / "spool" / ev.snapshot_key).exists()
    finally:
        await store.close()
