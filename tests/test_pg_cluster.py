"""The tests' throw-away PostgreSQL never outlives its test run (issue #17, testkit/pg.py).

A process starts a cluster the way ``tests/conftest.py`` does, then is killed with SIGKILL: the
postmaster and its backends go with it (parent-death signal).  A cluster that did survive its
run (made by the old ``pg_ctl`` code, or here without the death signal) is stopped and its
directory removed by the next start's sweep; a cluster whose run is alive is left alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from testkit.pg import PgCluster, pg_bindir, sweep_stale
from testkit.procs import alive, children, still_alive_after

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
from pathlib import Path
from testkit.pg import PgCluster, pg_bindir
c = PgCluster(pg_bindir(), base=Path(sys.argv[1]), die_with_parent=sys.argv[2] == "1")
c.start()
print(c.root, c.pid, c.port, flush=True)
time.sleep(600)
"""


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the ``postgres`` OS user can reach (pytest's base is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="evalwatch-pgtest-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


Started = tuple[subprocess.Popen[str], Path, int, int]


@contextlib.contextmanager
def _cluster_in_child(base: Path, die_with_parent: bool) -> Iterator[Started]:
    if pg_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(base), "1" if die_with_parent else "0"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    postmaster = 0
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert len(line) == 3, f"the child did not start a cluster (exit {child.poll()})"
        root, postmaster, port = Path(line[0]), int(line[1]), int(line[2])
        user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        with psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user=user) as c:
            assert c.execute("select 1").fetchone() == (1,)
        yield child, root, postmaster, port
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        if postmaster and alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)


def test_postgres_dies_with_a_killed_test_run_and_the_next_start_sweeps_its_dir(base: Path) -> None:
    with _cluster_in_child(base, die_with_parent=True) as (child, root, postmaster, _port):
        backends = children(postmaster)
        assert backends, "a running postmaster has its background processes"
        child.send_signal(signal.SIGKILL)
        child.wait()
        left = still_alive_after([postmaster, *backends], 10)
        assert not left, f"PostgreSQL outlived the killed test run: pids {left}"
        assert root.is_dir()  # its directory stays until the next start sweeps it
    assert sweep_stale(base) == [root]
    assert not root.exists()


def test_a_surviving_cluster_is_stopped_by_the_next_start_but_a_live_runs_cluster_is_kept(base: Path) -> None:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries")
    mine = PgCluster(bindir, base=base)  # this run's cluster: alive owner, must be kept
    mine.start()
    try:
        with _cluster_in_child(base, die_with_parent=False) as (child, root, postmaster, _port):
            child.send_signal(signal.SIGKILL)
            child.wait()
            time.sleep(0.5)
            assert alive(postmaster), "without the death signal the postmaster survives (the old case)"
            other = PgCluster(bindir, base=base)  # the next start
            try:
                other.start()
                assert not alive(postmaster) and not root.exists(), "the stale cluster was not swept"
                assert mine.proc is not None and mine.proc.poll() is None and mine.root.is_dir()
            finally:
                other.stop()
    finally:
        mine.stop()
    assert not mine.root.exists()
