"""A throwaway PostgreSQL server for tests and benchmarks on this machine (``initdb``/``pg_ctl``
in a tmp dir, trust auth, 127.0.0.1 on a free port; run as the ``postgres`` OS user when we are
root), and a fresh database in it.  Used by ``tests/conftest.py`` (the ``pg_server_url`` /
``db_url`` fixtures) and ``bench/ingest.py --hubs``.  Not used at run time.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from storage.s3server import free_port

PG_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb/pg_ctl) not found; `make test` installs them "
    "(apt-get install -y postgresql), or set EVALWATCH_TEST_PG_URL"
)


def pg_bindir() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists() and Path(cand, "pg_ctl").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


class PgCluster:
    """A throwaway cluster in a tmp dir, trust auth, listening on 127.0.0.1:<free port> only."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="evalwatch-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.root)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stdout}\n{r.stderr}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def server_url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"


def create_database(server_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(server_url)
    name = "evalwatch_t_" + uuid.uuid4().hex[:12]
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    deadline = time.monotonic() + 15
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return u.set(database=name).render_as_string(hide_password=False)
