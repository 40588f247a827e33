"""Cross-node alert push (issue #14, item 1): two hub nodes on one PostgreSQL database and one
S3 server.  An incident node A stores reaches a supervisor's WebSocket on node B exactly once
(and A's own browsers exactly once — A skips its own notification), with its snapshot update;
an acknowledgement on A reaches B; an incident too big for a notification is sent by id and
loaded from the row on B; after node B's listener connection is killed it reconnects, tells
its browsers to resync and later incidents still arrive.  Nothing is stored twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from websockets.typing import Origin

from analysis.bus import EventBus
from analysis.events import Event, EventUpdate
from analysis.store import EventStore
from dashboard.app import create_app
from dashboard.notify import EventRelay
from dashboard.services import Services
from storage.db import Database
from storage.models import EventRow
from storage.objects import ObjectStore
from storage.s3server import free_port
from testkit.dashboard import ROLE_USERS, make_config, password_of


@dataclass
class Node:
    name: str
    url: str
    db: Database
    store: EventStore
    relay: EventRelay
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.store.close()
        self.server.should_exit = True
        await self.task
        self.db.dispose()


async def _node(name: str, db_url: str, s3: Any, tmp: Path) -> Node:
    cfg = make_config(node_id=f"node-{name}")
    db = Database(db_url)
    objects = ObjectStore(s3.cfg)
    bus = EventBus()
    store = EventStore(db, objects, s3.cfg.bucket_snapshots, bus, tmp / f"spool-{name}")
    await store.start()
    relay = EventRelay.for_config(cfg, db, backoff_min_s=0.1, backoff_max_s=1.0, ping_s=2.0)
    assert relay is not None and relay.node_id == f"node-{name}"
    app = create_app(Services(cfg=cfg, db=db, objects=objects, bus=bus, relay=relay))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, f"node {name} did not start"
        await asyncio.sleep(0.05)
    assert relay.channel.listening.is_set()
    return Node(name, f"127.0.0.1:{port}", db, store, relay, server, task)


async def _login(node: Node, role: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=f"http://{node.url}") as c:
        r = await c.post("/api/auth/login",
                         json={"username": ROLE_USERS[role], "password": password_of(role)})
        assert r.status_code == 200, r.text
        return f"evalwatch_session={c.cookies['evalwatch_session']}", str(r.json()["csrf"])


class Wall:
    """One browser's ``/ws/events``: every message it got, in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            self.messages.append(json.loads(raw))

    def events(self, **match: Any) -> list[dict[str, Any]]:
        return [m["event"] for m in self.messages
                if m.get("type") == "event" and all(m["event"].get(k) == v for k, v in match.items())]

    async def wait(self, pred: Callable[[], bool], what: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while not pred():
            assert time.monotonic() < deadline, f"{what}: got {self.messages}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _wall(node: Node) -> AsyncIterator[Wall]:
    cookie, _ = await _login(node, "supervisor")
    async with websockets.connect(f"ws://{node.url}/ws/events", additional_headers={"Cookie": cookie},
                                  origin=Origin(f"http://{node.url}")) as ws:
        wall = Wall(ws)
        await wall.wait(lambda: bool(wall.messages), "hello")
        assert wall.messages[0]["type"] == "hello"
        yield wall
        wall.task.cancel()


def _incident(rule: str = "phone", details: dict[str, Any] | None = None, snapshot: bool = True) -> Event:
    return Event(rule=rule, camera="cam1", seat="s1", start_s=time.time(), confidence=0.8, room="room1",
                 site="site1", snapshot=b"\xff\xd8 not really a jpeg \xff\xd9" if snapshot else None,
                 details=details or {"boxes": [[1, 2, 3, 4]]})


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_event_stored_on_one_node_reaches_the_others_once(db_url: str, s3_server: Any,
                                                                tmp_path: Path) -> None:
    import psycopg

    from storage.pgnotify import pg_conninfo

    await ObjectStore(s3_server.cfg).ensure_buckets()
    Database(db_url).upgrade()
    a = await _node("a", db_url, s3_server, tmp_path)
    b = await _node("b", db_url, s3_server, tmp_path)
    try:
        async with _wall(b) as wall_b, _wall(a) as wall_a:
            # 1. An incident stored on A: opened, then updated with its snapshot, on both walls.
            ev = _incident()
            db_id, _ = await a.store.upsert(EventUpdate("opened", ev))
            await a.store.flush()
            for wall in (wall_a, wall_b):
                def opened_and_updated(w: Wall = wall) -> bool:
                    return len(w.events(id=db_id)) >= 2

                await wall.wait(opened_and_updated, "opened + snapshot update")
            await asyncio.sleep(1.0)  # room for a duplicate to show up
            for wall in (wall_a, wall_b):
                got = wall.events(id=db_id)
                assert [e["phase"] for e in got] == ["opened", "updated"], got
                assert got[0]["uid"] == ev.id and got[0]["status"] == "new" and got[0]["rule"] == "phone"
                assert got[1]["snapshot_url"] == f"/api/events/{db_id}/snapshot"
            assert b.relay.channel.received >= 2 and a.relay.channel.sent >= 2

            # 2. A supervisor on A acknowledges it: B's wall shows the workflow change, once.
            cookie, csrf = await _login(a, "supervisor")
            async with httpx.AsyncClient(base_url=f"http://{a.url}") as c:
                r = await c.post(f"/api/events/{db_id}/ack",
                                 headers={"Cookie": cookie, "X-CSRF-Token": csrf})
                assert r.status_code == 200, r.text
            await wall_b.wait(lambda: bool(wall_b.events(id=db_id, phase="workflow")), "workflow")
            # B serves it from the shared database and S3: the row and A's snapshot.
            cookie_b, _ = await _login(b, "supervisor")
            async with httpx.AsyncClient(base_url=f"http://{b.url}") as c:
                r = await c.get(f"/api/events/{db_id}", headers={"Cookie": cookie_b})
                assert r.status_code == 200 and r.json()["status"] == "acknowledged", r.text
                r = await c.get(f"/api/events/{db_id}/snapshot", headers={"Cookie": cookie_b})
                assert r.status_code == 200 and r.content == ev.snapshot

            # 3. Too big for a notification (8000 bytes): sent by id, B loads the row.
            big = _incident("extra_person", details={"note": "x" * 9000}, snapshot=False)
            big_id, _ = await a.store.upsert(EventUpdate("opened", big))
            await wall_b.wait(lambda: bool(wall_b.events(id=big_id)), "big incident")
            got_big = wall_b.events(id=big_id)[0]
            assert got_big["phase"] == "opened" and got_big["uid"] == big.id
            assert got_big["details"] == {"note": "x" * 9000}
            assert a.relay.compact_sent == 1 and b.relay.rows_loaded == 1

            # 4. B's listener loses its database connection: it reconnects, tells its
            #    browsers to resync, and later incidents still arrive.
            pid = b.relay.channel.listener_pid
            conninfo = pg_conninfo(db_url)
            assert conninfo is not None and pid is not None
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await wall_b.wait(lambda: b.relay.channel.reconnects == 1, "listener reconnect")
            assert b.relay.channel.listener_pid != pid
            await wall_b.wait(lambda: any(m.get("type") == "resync" for m in wall_b.messages), "resync")
            later = _incident("seat_empty", snapshot=False)
            later_id, _ = await a.store.upsert(EventUpdate("opened", later))
            await wall_b.wait(lambda: bool(wall_b.events(id=later_id)), "incident after reconnect")
            await asyncio.sleep(0.5)
            assert len(wall_b.events(id=later_id)) == 1 and len(wall_a.events(id=later_id)) == 1
            assert not any(m.get("type") == "resync" for m in wall_a.messages)
            admin, _ = await _login(b, "admin")
            async with httpx.AsyncClient(base_url=f"http://{b.url}") as c:
                metrics = (await c.get("/metrics", headers={"Cookie": admin})).text
            assert "evalwatch_node_listener_reconnects_total 1.0" in metrics
            assert "evalwatch_node_listening 1.0" in metrics

        # Stored once each: B republished, never stored.
        with b.db.session() as s:
            assert s.query(EventRow).count() == 3
    finally:
        await b.stop()
        await a.stop()


def test_no_relay_without_postgresql(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'one.db'}")
    assert EventRelay.for_config(make_config(), db) is None
    db.dispose()


async def test_relay_ignores_malformed_notifications(tmp_path: Path) -> None:
    relay = EventRelay("host=127.0.0.1 port=1", "node-x", db=None)
    assert await relay.event_of({"v": 2, "kind": "live", "event": {}}) is None
    assert await relay.event_of({"v": 1, "kind": "nonsense"}) is None
    assert await relay.event_of({"v": 1, "kind": "live", "event": {"id": "not a number"}}) is None
    assert await relay.event_of({"v": 1, "kind": "live", "id": 3, "phase": "exploded"}) is None


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_two_nodes_with_one_id_are_reported(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from storage.pgnotify import PgChannel, pg_conninfo

    conninfo = pg_conninfo(db_url)
    assert conninfo is not None
    got: dict[str, list[dict[str, Any]]] = {"x": [], "y": [], "z": []}

    def channel(name: str, node: str) -> PgChannel:
        async def on_message(doc: dict[str, Any]) -> None:
            got[name].append(doc)

        return PgChannel(conninfo, "evalwatch_test", node, on_message=on_message)

    x, y, z = channel("x", "twin"), channel("y", "twin"), channel("z", "other")
    for ch in (x, y, z):
        await ch.start()
    try:
        x.send({"n": 1})
        deadline = time.monotonic() + 10
        while not got["z"] or "another node runs with node id twin" not in caplog.text:
            assert time.monotonic() < deadline, (got, caplog.text)
            await asyncio.sleep(0.05)
        assert got["z"] == [{"n": 1, "node": "twin"}] and got["x"] == [] and got["y"] == []
    finally:
        for ch in (x, y, z):
            await ch.stop()


def test_conninfo_of_database_urls() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from storage.pgnotify import pg_conninfo

    assert pg_conninfo("sqlite:///x.db") is None
    one_url = pg_conninfo("postgresql://ev:p%40ss%20w@db1:5433/evalwatch")
    assert one_url is not None
    one = conninfo_to_dict(one_url)
    assert (one["host"], one["port"], one["user"], one["password"], one["dbname"]) == (
        "db1", "5433", "ev", "p@ss w", "evalwatch")
    assert one["keepalives"] == "1"
    two_url = pg_conninfo(
        "postgresql+psycopg://ev:pw@/evalwatch?host=pg1:5432&host=pg2:5432&target_session_attrs=read-write")
    assert two_url is not None
    two = conninfo_to_dict(two_url)
    assert (two["host"], two["port"], two["target_session_attrs"]) == ("pg1,pg2", "5432,5432", "read-write")


def _start_hub(config: Path, log_path: Path, env: dict[str, str]) -> Any:
    import subprocess
    import sys

    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "evalwatch", "hub", "--config", str(config)],
                                cwd=log_path.parent, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.mark.postgres
@pytest.mark.timeout(180)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_two_hub_processes_share_alerts(db_url: str, s3_server: Any, tmp_path: Path) -> None:
    """The wiring of ``evalwatch hub``: two real hub processes on one PostgreSQL database and
    one S3 server; an edge incident an agent posts to hub A shows on a browser of hub B."""
    import base64
    import os
    import signal
    import uuid
    from datetime import UTC, datetime

    import yaml

    from config.loader import load_config
    from testkit.hub import system_config

    users = [{"username": "sup", "role": "supervisor", "password": "sup-cross-node-pw-1"}]
    token = "tok-cross-node-" + uuid.uuid4().hex
    paths = {}
    for name in ("a", "b"):
        doc = system_config(tmp_path / name, {"s01": ["room_a"]}, users=users, database_url=db_url)
        doc["hub"]["node_id"] = f"hub-{name}"
        doc["secrets_file"] = str(tmp_path / "secrets.yaml")  # one set of secrets for both nodes
        doc["sites"][0]["agent_token"] = token
        s3 = doc["storage"]["s3"]
        s3.update(embedded=False, endpoint=s3_server.cfg.endpoint,
                  access_key=s3_server.cfg.access_key.get_secret_value(),
                  secret_key=s3_server.cfg.secret_key.get_secret_value())
        paths[name] = tmp_path / f"hub-{name}.yaml"
        paths[name].write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    load_config(paths["a"])  # writes the shared secrets file once, before either node starts
    # Both nodes start at once on the fresh database: migrations, inventory and users race.
    procs: dict[str, Any] = {}
    urls = {n: f"127.0.0.1:{yaml.safe_load(p.read_text())['hub']['listen_port']}"
            for n, p in paths.items()}
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVALWATCH_DATABASE_URL", "EVALWATCH_S3_ENDPOINT")}
    try:
        for name, path in paths.items():
            procs[name] = _start_hub(path, tmp_path / f"hub-{name}.log", env)
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(timeout=1) as probe:
            for name, url in urls.items():
                while True:
                    assert procs[name].poll() is None, (tmp_path / f"hub-{name}.log").read_text()[-3000:]
                    try:
                        if (await probe.get(f"http://{url}/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"hub {name} did not come up"
                    await asyncio.sleep(0.3)
        logs = {n: (tmp_path / f"hub-{n}.log").read_text() for n in urls}
        assert "cross-node alerts over PostgreSQL channel=evalwatch_events node=hub-b" in logs["b"], logs["b"]
        assert s3_server.cfg.secret_key.get_secret_value() not in logs["a"] + logs["b"]
        # s01 is ingested by the node holding its lease (storage.leases); the other one answers
        # the agent 421.  The incident goes to the holder, the browser watches the other node.
        from storage.models import SiteLease

        ldb = Database(db_url)
        with ldb.session() as ls:
            lease = ls.get(SiteLease, "s01")
        ldb.dispose()
        assert lease is not None and lease.node_id in ("hub-a", "hub-b")
        ingest, watch = ("a", "b") if lease.node_id == "hub-a" else ("b", "a")
        async with httpx.AsyncClient(base_url=f"http://{urls[watch]}") as c:
            r = await c.post("/api/ingest/heartbeat", json={"site": "s01"},
                             headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 421, r.text
            assert r.json()["holder"] == f"http://{urls[ingest]}" and r.json()["code"] == "err.not_holder"

        async with httpx.AsyncClient(base_url=f"http://{urls[watch]}") as c:
            r = await c.post("/api/auth/login", json={"username": "sup", "password": "sup-cross-node-pw-1"})
            assert r.status_code == 200, r.text
            cookie = f"evalwatch_session={c.cookies['evalwatch_session']}"
        async with websockets.connect(f"ws://{urls[watch]}/ws/events", additional_headers={"Cookie": cookie},
                                      origin=Origin(f"http://{urls[watch]}")) as ws:
            wall = Wall(ws)
            await wall.wait(lambda: bool(wall.messages), "hello")
            uid = uuid.uuid4().hex
            incident = {
                "site": "s01", "room": "room-a", "camera": "cam1", "uid": uid, "seq": 1, "action": "opened",
                "rule": "phone", "seat": "S1", "confidence": 0.9,
                "started_at": datetime.now(UTC).isoformat(),
                "snapshot_jpeg": base64.b64encode(b"\xff\xd8\xff\xe0 tiny \xff\xd9").decode(),
            }
            async with httpx.AsyncClient(base_url=f"http://{urls[ingest]}") as c:
                r = await c.post("/api/ingest/incidents", json=incident,
                                 headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
            await wall.wait(lambda: len(wall.events(uid=uid)) >= 2, "A's incident on B's wall", within=20)
            await asyncio.sleep(0.5)
            got = wall.events(uid=uid)
            assert [e["phase"] for e in got] == ["opened", "updated"], got
            assert got[0]["origin"] == "agent" and got[1]["snapshot_url"]
            wall.task.cancel()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():  # uvicorn re-raises the signal after its clean stop
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM), \
                (tmp_path / f"hub-{name}.log").read_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_nodes_starting_together_migrate_one_after_the_other(db_url: str) -> None:
    """Hub nodes starting at once on a fresh database all run the migrations (``evalwatch db
    upgrade`` in the unit, then the hub itself): an advisory lock makes them take turns — the
    later ones find the schema at head — instead of failing on each other's CREATE TABLE."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "evalwatch", "db", "upgrade", "--url", db_url],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    db = Database(db_url)
    assert db.current_revision() is not None and "events" in db.table_names()
    db.dispose()
