"""Alembic environment: the engine comes from ``storage.db.Database`` (config.attributes["engine"]),
or from ``sqlalchemy.url`` when run by the ``alembic`` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from storage.models import Base

config = context.config
target_metadata = Base.metadata

#: PostgreSQL advisory lock taken for the migration transaction: several hub nodes starting at
#: once on one database migrate one after the other (the later ones find it at head).
MIGRATION_LOCK_KEY = 0x65766C77  # "evlw"


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
