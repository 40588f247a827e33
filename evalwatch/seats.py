"""``evalwatch seats assign INPUT [--seed N] [--json] [--config FILE]``: random seat assignment
from the command line (the seating itself is :mod:`sessions.seating`).

Exit 0 on success (JSON or a table on stdout), 2 on bad arguments, bad input or an infeasible
seating (one-line message on stderr).  With ``--config`` the seed and the result are recorded in
the hub's audit log.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from sessions.seating import Assignment, InfeasibleError, assign_seats, format_table, load_input

#: Seeds drawn by the command when ``--seed`` is omitted are below this bound.
SEED_BOUND = 2**63


def _seed_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _audit(config_path: str, input_path: str, result: Assignment) -> str | None:
    """Write a ``seats_assign`` audit row (seed, input digest, result) to the hub's database.

    Returns a message naming the problem, or ``None`` on success.
    """
    import getpass
    import hashlib

    from config.loader import ConfigError, load_config

    try:
        cfg = load_config(config_path, load_secrets=False)
    except ConfigError as e:
        return f"config: {e}"
    from storage.db import Database
    from storage.models import AuditLog

    digest = hashlib.sha256(Path(input_path).read_bytes()).hexdigest()
    row = AuditLog(
        actor=f"cli:{getpass.getuser()}", action="seats_assign", target=f"input:{digest[:16]}",
        details={"seed": result.seed, "input_sha256": digest, "source": "cli", **result.to_json_dict()},
    )
    try:
        db = Database(cfg.storage.database_url)
    except Exception as e:
        return f"cannot open the database: {e}"
    try:
        db.upgrade()  # the hub does the same at start; a fresh install may not have run yet
        with db.session() as s:
            s.add(row)
            s.commit()
    except Exception as e:
        return f"cannot write the audit log ({type(e).__name__}): {e}"
    finally:
        db.dispose()
    return None


def cli(argv: list[str]) -> int:
    """``evalwatch seats assign INPUT [--seed N] [--json]``; returns the exit code.

    Exit 0 on success (JSON or a table on stdout), 2 on bad arguments, bad input or an
    infeasible seating (message on stderr).  Without ``--seed`` a seed is drawn with
    :mod:`secrets` and printed on stderr (and is part of the output) so the draw can be repeated.
    """
    parser = argparse.ArgumentParser(
        prog="evalwatch seats", description="Random seat assignment for bid evaluation rooms."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    assign = sub.add_parser(
        "assign",
        help="seat the experts of every bid at random",
        description="Seat experts so that no two are adjacent and experts of a bid are in different rooms.",
    )
    assign.add_argument("input", metavar="INPUT", help="YAML or JSON file with 'rooms' and 'bids'")
    assign.add_argument("--seed", type=_seed_arg, default=None, help="random seed (default: drawn at random)")
    assign.add_argument("--json", action="store_true", help="print JSON instead of a table")
    assign.add_argument(
        "--config", metavar="FILE", help="hub config: record the seed and result in its audit log"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage / the error
        return exc.code if isinstance(exc.code, int) else 2

    seed: int = args.seed if args.seed is not None else secrets.randbelow(SEED_BOUND)
    if args.seed is None:
        print(f"seed: {seed} (drawn at random; pass --seed {seed} to repeat)", file=sys.stderr)
    try:
        rooms, bids = load_input(args.input)
        result = assign_seats(rooms, bids, seed)
    except InfeasibleError as exc:
        print(f"evalwatch seats: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.config:
        problem = _audit(args.config, args.input, result)
        if problem:
            print(f"evalwatch seats: {problem}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result.to_json_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_table(result, rooms))
    return 0
