"""``evalwatch db ...``: database maintenance.

    evalwatch db upgrade --config FILE      apply migrations to head
    evalwatch db current --config FILE      print the applied revision

``--url URL`` may replace ``--config`` (``EVALWATCH_DATABASE_URL`` also overrides the file).
Exit codes: 0 success, 1 failure (database unreachable or refusing; message on stderr, no
traceback), 2 bad input (arguments, or a config file with problems), as the other commands.
"""

from __future__ import annotations

import argparse
import sys

from config.loader import ConfigError
from storage.db import Database, DatabaseError, masked


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from config.loader import load_config

    cfg = load_config(args.config, load_secrets=False)
    return cfg.storage.database_url


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evalwatch db", description="database migrations")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("upgrade", "apply migrations up to head"), ("current", "show applied revision")):
        sp = sub.add_parser(name, help=help_)
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument("--config", help="evalwatch YAML config file")
        g.add_argument("--url", help="database URL (instead of --config)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        url = _url(args)
        db = Database(url)
        if args.cmd == "upgrade":
            db.upgrade()
            print(f"database {masked(url)} at revision {db.current_revision()}")
        else:
            print(db.current_revision() or "(empty: no migrations applied)")
        db.dispose()
    except ConfigError as e:
        print(f"evalwatch db: config error:\n{e}", file=sys.stderr)
        return 2
    except DatabaseError as e:
        print(f"evalwatch db: {e}", file=sys.stderr)
        return 1
    return 0
