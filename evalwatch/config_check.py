"""``evalwatch config check FILE...`` — validate config files and list every problem."""

from __future__ import annotations

import argparse
import sys

from config.loader import ConfigError, load_config, load_room


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evalwatch config", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="validate a hub config (or a room file with --room)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--room", action="store_true", help="the files are room sections")
    args = parser.parse_args(argv)

    failed = 0
    for f in args.files:
        try:
            if args.room:
                load_room(f)
            else:
                load_config(f, load_secrets=False)
        except ConfigError as e:
            failed += 1
            for p in e.problems:
                print(p, file=sys.stderr)
        else:
            print(f"{f}: OK")
    return 2 if failed else 0
