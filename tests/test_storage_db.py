"""Migrations on SQLite and a real PostgreSQL; the DB CLI; model/migration drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from evalwatch.db import cli as db_cli
from storage.db import Database, DatabaseError
from storage.models import Base, Segment

EXPECTED = {"audit_log", "cameras", "events", "rooms", "seats", "segments", "sites", "users"}


def head_revision(db: Database) -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    assert head is not None
    return head


def test_upgrade_creates_every_table_and_is_idempotent(database: Database) -> None:
    assert EXPECTED <= set(database.table_names())
    head = head_revision(database)
    assert database.current_revision() == head
    database.upgrade()  # second run: no-op
    assert database.current_revision() == head
    database.downgrade("base")
    assert set(database.table_names()) <= {"alembic_version"}
    database.upgrade()
    assert EXPECTED <= set(database.table_names())


def test_migrations_match_models(database: Database) -> None:
    """A model change without a migration fails here."""
    with database.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    # SQLite reports no tz on DateTime; ignore pure type-affinity noise.  Tables of other
    # packages' migrations (e.g. sessions) are not in storage.models: skip their "remove_table".
    ours = set(Base.metadata.tables)
    diff = [
        d
        for d in diff
        if not (isinstance(d, list) and d and d[0][0] == "modify_type")
        and not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name not in ours)
        and not (isinstance(d, tuple) and d[0] == "remove_index" and d[1].table.name not in ours)
    ]
    assert diff == []


async def test_utc_datetimes_round_trip(database: Database) -> None:
    start = datetime(2026, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))

    def add(s):
        s.add(
            Segment(
                site="s",
                room="r",
                camera="c",
                start=start,
                end=start + timedelta(seconds=10),
                key="k",
                sha256="0" * 64,
                size=1,
                seq=1,
                prev_hash="0" * 64,
                link_hash="1" * 64,
            )
        )

    await database.run(add)
    row = await database.run(lambda s: s.scalars(select(Segment)).one())
    assert row.start == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert row.start.tzinfo is not None


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="not a valid URL"):
        Database("not a url")
    with pytest.raises(DatabaseError, match="unsupported database 'mysql'"):
        Database("mysql://u:pw@127.0.0.1/x")


def test_db_cli_upgrade(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert db_cli(["upgrade", "--url", url]) == 0
    head = head_revision(Database(url))
    assert f"at revision {head}" in capsys.readouterr().out
    assert db_cli(["current", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == head
    assert db_cli(["upgrade"]) == 2


def test_db_cli_with_config_file(tmp_path, capsys) -> None:
    cfg = tmp_path / "evalwatch.yaml"
    cfg.write_text(f"storage:\n  database_url: sqlite:///{tmp_path / 'c.db'}\nsecrets_file: null\n")
    assert db_cli(["upgrade", "--config", str(cfg)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  databse_url: x\n")
    assert db_cli(["upgrade", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "databse_url" in err and "Traceback" not in err


def test_db_cli_unreachable_postgres_no_secret_in_message(capsys) -> None:
    assert db_cli(["upgrade", "--url", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err and "127.0.0.1" in err


def test_sqlite_page_cache_follows_the_setting(tmp_path: Path) -> None:
    """``storage.sqlite_cache_kb`` (512 by default) is every new connection's ``cache_size``
    (KiB: negative in SQLite's terms); without it SQLite's own default (2000 KiB) stays."""
    from sqlalchemy import text

    from config.models import StorageConfig

    assert StorageConfig().sqlite_cache_kb == 512
    with pytest.raises(ValueError, match="sqlite_cache_kb"):
        StorageConfig(sqlite_cache_kb=0)
    for kb, want in ((512, -512), (4096, -4096), (None, -2000)):
        db = Database(f"sqlite:///{tmp_path / f'c{kb}.db'}", sqlite_cache_kb=kb)
        try:
            with db.engine.connect() as a, db.engine.connect() as b:  # two pooled connections
                got = [c.execute(text("PRAGMA cache_size")).scalar() for c in (a, b)]
            assert got == [want, want], (kb, got)
        finally:
            db.dispose()
