"""The metadata database: a SQLAlchemy 2 *sync* engine used from async code via ``asyncio.to_thread``.

Why sync: one code path for SQLite (default, ``sqlite:///path.db``) and PostgreSQL
(``postgresql+psycopg://user:pass@host:port/db``) with no extra async drivers; DB calls are short
and run in the default thread pool, so the event loop never blocks.

Contract:

* ``Database(url)`` creates the engine (SQLite: parent directory created, WAL journal,
  ``busy_timeout``, foreign keys on, ``sqlite_cache_kb``: each connection's page cache).  A
  malformed URL raises :class:`DatabaseError` naming it (password masked).
* ``upgrade()`` runs the Alembic migrations shipped in ``storage/migrations`` up to head
  (works from an installed wheel: no ``alembic.ini`` needed).
* ``session()`` returns a new ORM session; ``await db.run(fn)`` calls ``fn(session)`` in a
  worker thread inside one transaction (commit on success, rollback on error) and returns its
  result.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("evalwatch.storage.db")

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseError(Exception):
    """The database could not be opened or migrated; the message says why."""


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class Database:
    """Engine + session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False, sqlite_cache_kb: int | None = None) -> None:
        try:
            u = make_url(url)
        except ArgumentError:
            raise DatabaseError(
                "storage.database_url is not a valid URL; expected e.g. sqlite:///data/evalwatch.db "
                "or postgresql+psycopg://user:pass@127.0.0.1:5432/evalwatch"
            ) from None
        self.url = url
        self.dialect = u.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            if u.database and u.database != ":memory:":
                _private_file(Path(u.database).expanduser())
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        elif self.dialect == "postgresql":
            if u.drivername == "postgresql":
                u = u.set(drivername="postgresql+psycopg")
            kwargs["pool_pre_ping"] = True
        else:
            raise DatabaseError(
                f"unsupported database {self.dialect!r} in {masked(url)}; use sqlite or postgresql"
            )
        try:
            self.engine: Engine = create_engine(u, **kwargs)
        except Exception as e:  # missing driver etc.
            raise DatabaseError(f"cannot open {masked(url)}: {e}") from None
        if self.dialect == "sqlite":
            cache_kb = sqlite_cache_kb

            def pragmas(dbapi_conn: Any, _record: Any) -> None:
                _sqlite_pragmas(dbapi_conn, cache_kb)

            event.listen(self.engine, "connect", pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({masked(self.url)!r})"

    def session(self) -> Session:
        return self._sessions()

    def _in_tx(self, fn: Callable[[Session], T]) -> T:
        with self._sessions() as s, s.begin():
            return fn(s)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a worker thread inside one transaction."""
        return await asyncio.to_thread(self._in_tx, fn)

    # --- migrations -----------------------------------------------------------------------

    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision`` (default head).  Idempotent."""
        from alembic import command

        log.info("migrating %s to %s", masked(self.url), revision)
        try:
            command.upgrade(self.alembic_config(), revision)
        except Exception as e:
            raise DatabaseError(f"migrating {masked(self.url)} failed: {type(e).__name__}: {e}") from e

    def downgrade(self, revision: str) -> None:
        from alembic import command

        command.downgrade(self.alembic_config(), revision)

    async def aupgrade(self, revision: str = "head") -> None:
        await asyncio.to_thread(self.upgrade, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as c:
            return MigrationContext.configure(c).get_current_revision()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        self.engine.dispose()


def _private_file(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (it would follow the umask: 0644, readable by
    every local user — password hashes, audit log; finding 11 of issue #12), and take group/other
    access away from an existing one.  SQLite gives its -wal/-shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("database file %s was mode %o; setting 0600", path, mode)
            os.chmod(path, 0o600)
    except OSError as e:  # read-only place etc.: SQLite will say what is wrong when it opens it
        log.warning("cannot restrict the permissions of %s: %s", path, e)


def _sqlite_pragmas(dbapi_conn: Any, cache_kb: int | None) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    if cache_kb:  # each connection's page cache (SQLite's default: 2000 KiB), storage.sqlite_cache_kb
        cur.execute(f"PRAGMA cache_size=-{int(cache_kb)}")
    cur.close()


def _mapped_sqlite() -> Any | None:
    """The SQLite library this process has loaded (the one Python's ``sqlite3`` uses), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            path = next((ln.split()[-1] for ln in fh if "/libsqlite3.so" in ln), None)
    except OSError:
        return None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)  # already loaded: the same handle, the same counters
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return lib


_SQLITE: list[Any] = []


def sqlite_memory() -> tuple[int, int] | None:
    """SQLite's own heap in this process (``sqlite3_memory_used`` / ``_highwater``): the page
    caches of every open connection (up to ``cache_size``, 2 MiB by default, each), schemas and
    statements.  A hub on SQLite holds one connection per busy worker thread; their caches fill
    as the database grows past 2 MiB — bounded growth glibc's arenas show (issue #17).  None
    where the library is not found (not Linux, SQLite linked statically)."""
    if not _SQLITE:
        import sqlite3  # noqa: F401 - loads the library

        _SQLITE.append(_mapped_sqlite())
    lib = _SQLITE[0]
    if lib is None:
        return None
    return int(lib.sqlite3_memory_used()), int(lib.sqlite3_memory_highwater(0))
