"""A throw-away PostgreSQL cluster for tests that never outlives the test run (issue #17).

``tests/conftest.py`` starts one per pytest session (``pg_server_url``).  Before, ``pg_ctl start``
daemonised the postmaster: a pytest run killed with SIGKILL (a CI timeout, an impatient Ctrl-\\)
left it running, holding its port, shared memory and ``/tmp/evalwatch-pg-*`` directory.  Now:

* the postmaster is a direct child of the test process, started with ``PR_SET_PDEATHSIG`` =
  SIGQUIT (PostgreSQL's "immediate shutdown": the postmaster ends its backends and exits), so it
  dies with the thread that started it — also when that process is SIGKILLed.  Start it from a
  long-lived thread (pytest's main thread, as session fixtures are);
* every cluster directory holds ``owner`` (the pid and start time of the process that made it);
  :func:`sweep_stale` — run at each start — removes the directories whose owner is gone, after
  stopping a postmaster still running in one (a cluster made by the old ``pg_ctl`` code, or one
  whose death signal could not be delivered).  Directories without an ``owner`` file are removed
  only when no postmaster runs in them: a live one may belong to a test run in progress.

Root runs the server as the ``postgres`` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger("evalwatch.testkit.pg")

PREFIX = "evalwatch-pg-"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb/pg_ctl) not found; `make test` installs them "
    "(apt-get install -y postgresql), or set EVALWATCH_TEST_PG_URL"
)
# A directory without an owner file and without a running postmaster: removed once this old
# (younger ones may be in the middle of initdb by the old code in another test run).
ORPHAN_DIR_AGE_S = 3600.0


def pg_bindir() -> Path | None:
    """The directory of ``initdb`` and ``postgres`` (Debian's newest version first, then $PATH)."""
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists() and Path(cand, "postgres").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    if initdb and Path(os.path.realpath(initdb)).with_name("postgres").exists():
        return Path(os.path.realpath(initdb)).parent
    return None


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of ``/proc/<pid>/stat``); None when it is not
    running (or a zombie).  With the pid it names one process even after pids are reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid: int) -> bool:
    return _start_time(pid) is not None


def _pdeathsig_quit_fn() -> Callable[[], None]:
    """``preexec_fn`` setting the parent-death signal to SIGQUIT.  libc is loaded here, in the
    parent: the child runs it after switching to the ``postgres`` user, who cannot read the
    Python installation to import anything."""
    import ctypes

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGQUIT))

    return set_pdeathsig


def _postmaster_pid(data: Path) -> int | None:
    """The pid in ``data/postmaster.pid`` when that process runs with this data directory."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and str(data).encode() in cmdline else None


def _owner_gone(root: Path) -> bool | None:
    """True when the process that made ``root`` is gone, False when it runs, None: no owner file."""
    try:
        pid_s, started = (root / "owner").read_text().split()
    except (OSError, ValueError):
        return None
    return _start_time(int(pid_s)) != started


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Remove the cluster directories under ``base`` (the temp dir) that no live test run owns,
    stopping (SIGQUIT, then SIGKILL) a postmaster still running in one.  Returns what it removed."""
    removed: list[Path] = []
    for root in sorted(Path(base or tempfile.gettempdir()).glob(PREFIX + "*")):
        if not root.is_dir():
            continue
        gone = _owner_gone(root)
        pid = _postmaster_pid(root / "data")
        if gone is False:
            continue  # its test run is still going
        if gone is None and (pid is not None or time.time() - root.stat().st_mtime < ORPHAN_DIR_AGE_S):
            continue  # old-style directory: its run may be in progress
        if pid is not None:
            log.warning("stopping a stale test PostgreSQL pid=%s dir=%s (its test run is gone)", pid, root)
            _stop_pid(pid, 10.0)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


def _stop_pid(pid: int, timeout: float) -> None:
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A throw-away cluster in a temp dir, trust auth, on 127.0.0.1:<free port> only.

    ``die_with_parent`` (default; Linux): the postmaster gets SIGQUIT when the thread that
    started it dies.  ``False`` only to test :func:`sweep_stale`."""

    def __init__(self, bindir: Path, *, base: Path | None = None, die_with_parent: bool = True) -> None:
        self.bindir = bindir
        self.base = base
        self.die_with_parent = die_with_parent
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        (self.root / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.root)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stdout}\n{r.stderr}")

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """initdb, then the postmaster as a child of this process; returns once it accepts
        connections (``postmaster.pid`` says ``ready``); RuntimeError with its log otherwise."""
        sweep_stale(self.base)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        self._log = open(self.root / "pg.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
             "-p", str(self.port), "-k", str(self.root),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            start_new_session=True,  # a terminal's Ctrl-C goes to pytest, which stops it in order
            user="postgres" if self.as_root else None, group="postgres" if self.as_root else None,
            extra_groups=[] if self.as_root else None,
            preexec_fn=_pdeathsig_quit_fn() if self.die_with_parent and sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}) at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError, IndexError):
                if (self.data / "postmaster.pid").read_text().splitlines()[7].strip() == "ready":
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres not ready within {ready_timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.root / "pg.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT; SIGKILL after 30 s) and the directory removed."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def server_url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"


def create_database(server_url: str) -> str:
    """A fresh, uniquely named database on the server at ``server_url`` (the maintenance
    database's URL); returns its URL.  Retries while the server is still starting (15 s)."""
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
