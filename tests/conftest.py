"""Shared fixtures: a real SeaweedFS S3 server, a real PostgreSQL cluster, migrated databases.

* ``free_port()`` — helper: a free TCP port on 127.0.0.1.
* ``s3_server`` (session) — a real ``weed server`` on free ports in a tmp dir; yields
  :class:`S3Env` (``.cfg`` an ``S3Config`` pointing at it, ``.server`` the ``SeaweedServer``).
* ``s3_server_factory`` (function) — call it to start a *private* server (fault tests stop and
  restart it without disturbing the shared one); stopped at teardown.
* ``object_store`` — an ``ObjectStore`` on the shared server with the three configured buckets.
* ``db_url`` — parametrised: ``sqlite`` (tmp file) and ``postgres`` (marker ``postgres``): a fresh
  database per test in a throwaway cluster (``testkit.pg.PgCluster``: a child of this process
  that dies with it, run as the ``postgres`` OS user when we are root), or under ``EVALWATCH_TEST_PG_URL``
  (a server URL; a fresh database is created in it per test).
* ``database`` — a migrated ``storage.db.Database`` on ``db_url``.
* ``unique_site`` — a fresh site slug, so tests sharing the S3 server never see each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.models import S3Config
from storage.s3server import SeaweedPorts, SeaweedServer, free_ports
from storage.s3server import free_port as _free_port
from testkit.pg import INSTALL_HINT as PG_INSTALL_HINT
from testkit.pg import PgCluster, create_database, pg_bindir

# In-process clients (httpx.ASGITransport, Starlette's TestClient) send ``Host: testserver``: the
# suite allows that name besides the hub's derived defaults (dashboard/hosts.py; production
# leaves EXTRA_DEFAULT_HOSTS empty).  Hubs started as processes are reached by 127.0.0.1 or
# localhost like in production; tests/test_host_allowlist.py checks forged names are refused.
try:
    from dashboard import hosts as _hosts

    _hosts.EXTRA_DEFAULT_HOSTS.append("testserver")
except ImportError:  # an agent-only install: no dashboard
    pass


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    return _free_port()


# --- S3 -------------------------------------------------------------------------------------


@dataclass
class S3Env:
    cfg: S3Config
    server: SeaweedServer


def _start_seaweed(root: Path) -> S3Env:
    access, secret = "evalwatch-test", "test-secret-" + uuid.uuid4().hex
    server = SeaweedServer(
        root, access, secret, SeaweedPorts(*free_ports(8)), grace_s=3.0, die_with_parent=True
    )
    server.start()
    cfg = S3Config(
        endpoint=server.endpoint,
        access_key=SecretStr(access),
        secret_key=SecretStr(secret),
        embedded=False,
    )
    return S3Env(cfg=cfg, server=server)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Env]:
    env = _start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield env
    finally:
        env.server.stop()


@pytest.fixture
def s3_server_factory(tmp_path: Path) -> Iterator[Callable[[], S3Env]]:
    started: list[S3Env] = []

    def make() -> S3Env:
        env = _start_seaweed(tmp_path / f"seaweed{len(started)}")
        started.append(env)
        return env

    yield make
    for env in started:
        env.server.kill()


@pytest.fixture
async def object_store(s3_server: S3Env):
    from storage.objects import ObjectStore

    store = ObjectStore(s3_server.cfg)
    await store.ensure_buckets()
    return store


@pytest.fixture
def unique_site() -> str:
    return "t" + uuid.uuid4().hex[:10]


# --- PostgreSQL -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server (maintenance db) the tests may create databases in."""
    env = os.environ.get("EVALWATCH_TEST_PG_URL")
    if env:
        yield env
        return
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(PG_INSTALL_HINT)
    cluster = PgCluster(bindir)  # dies with this process, even on SIGKILL (testkit/pg.py)
    cluster.start()
    try:
        yield cluster.server_url
    finally:
        cluster.stop()




@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'evalwatch.db'}"
    server_url: str = request.getfixturevalue("pg_server_url")
    return create_database(server_url)


@pytest.fixture
def database(db_url: str):
    from storage.db import Database

    db = Database(db_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
async def segment_store(object_store, database, tmp_path: Path, s3_server: S3Env):
    """A started ``SegmentStore`` on the shared S3 server and ``database``; WAL in tmp_path/wal."""
    from storage.segments import SegmentStore

    store = SegmentStore(
        object_store,
        database,
        tmp_path / "wal",
        s3_server.cfg.bucket_segments,
        retry_min_s=0.2,
        retry_max_s=1.0,
    )
    await store.start()
    yield store
    await store.stop()


@pytest.fixture
async def app(services):
    """The dashboard app over the test module's ``services`` fixture, lifespan entered."""
    from testkit.dashboard import running_app

    async with running_app(services) as a:
        yield a
