"""Running synchronous SQLAlchemy work from async routes without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


def open_session(db: Any) -> AbstractContextManager[Session]:
    """A session from ``storage.db.Database`` (``session()``) or anything exposing a sessionmaker."""
    if hasattr(db, "session"):
        return db.session()
    maker = getattr(db, "sessionmaker", None) or getattr(db, "Session", None)
    if maker is None:
        raise TypeError("services.db must provide session() or sessionmaker")

    @contextmanager
    def _cm() -> Iterator[Session]:
        with maker() as s:
            yield s

    return _cm()


async def run_db(db: Any, fn: Callable[[Session], T]) -> T:
    """Run ``fn(session)`` in a worker thread; commits when ``fn`` returns, rolls back on error.

    Uses ``db.run`` (``storage.db.Database``) when the database provides it.
    """
    runner = getattr(db, "run", None)
    if runner is not None:
        return await runner(fn)

    def _work() -> T:
        with open_session(db) as s:
            try:
                out = fn(s)
                s.commit()
                return out
            except BaseException:
                s.rollback()
                raise

    return await asyncio.to_thread(_work)
