"""What the ``evalwatch`` commands share: a user error with its exit code, the config, the
database, the object store and the hub's keys opened with one-line errors, and ``run_cli``,
which turns the expected failures into a message on stderr and an exit code (never a
traceback).  Used by ``evalwatch session``, ``report``, ``export`` and ``analyze``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from config.models import EvalwatchConfig
from storage import common


class CliError(Exception):
    """Abort a command: ``message`` to stderr, exit ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def cli_actor() -> str:
    """Who runs the command, for the audit log (``cli:<os user>``)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def parse_time(s: str, what: str) -> datetime:
    """ISO-8601 with a timezone, as UTC; :class:`CliError` otherwise."""
    try:
        return common.parse_time(s)
    except common.NoTimezone:
        raise CliError(f"{what}: {s!r} has no timezone; add Z or +08:00") from None
    except ValueError:
        raise CliError(f"{what}: {s!r} is not an ISO-8601 time (e.g. 2026-03-02T09:00:00+08:00)") from None


def load_cfg(path: str) -> EvalwatchConfig:
    from config.loader import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        raise CliError(f"config error:\n{e}") from None


def open_db(cfg: EvalwatchConfig) -> Any:
    """The migrated database of ``cfg`` (:class:`CliError` code 1 when it cannot be opened)."""
    from storage.db import Database, DatabaseError

    try:
        db = Database(cfg.storage.database_url)
        db.upgrade()
    except DatabaseError as e:
        raise CliError(str(e), 1) from None
    return db


def open_objects(cfg: EvalwatchConfig) -> Any:
    from storage.objects import ObjectStore

    return ObjectStore(cfg.storage.s3)


def hub_key(cfg: EvalwatchConfig) -> Any:
    from sessions.signing import HubKey, HubKeyError

    try:
        return HubKey.load_or_create(cfg.storage.data_dir)
    except (HubKeyError, OSError) as e:
        raise CliError(f"hub signing key: {e}", 1) from None


def trusted_keys(cfg: EvalwatchConfig) -> list[str]:
    """The hub's trusted public keys (its key file and rotated keys; never the DB)."""
    from sessions.signing import HubKeyError, hub_trusted_pems

    try:
        return hub_trusted_pems(cfg.storage.data_dir)
    except (HubKeyError, OSError, ValueError) as e:
        raise CliError(f"hub signing keys: {e}", 1) from None


def run_cli(prog: str, fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``fn`` mapping expected errors to a message and an exit code."""
    from sessions.lifecycle import SealError, SessionError
    from storage.objects import StorageError

    try:
        return asyncio.run(fn())
    except CliError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.code
    except SealError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except SessionError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except StorageError as e:
        print(f"{prog}: object storage: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{prog}: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except Exception as e:
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, SQLAlchemyError):
            print(f"{prog}: database error: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
            return 1
        raise


def parse_args(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0


