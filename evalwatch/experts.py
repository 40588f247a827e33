"""``evalwatch experts``: the expert register and credit records from the command line
(docs/credit.md).

```
evalwatch experts import FILE --config F [--json]     # CSV or XLSX export of the drawing system
evalwatch experts list --config F [--json]
evalwatch experts credit-export --config F --format csv|xlsx|feed [--all] -o OUT
```

``import`` imports the good rows and prints every bad row as ``line N: problem``.  Exit codes:
0 every row imported; 1 some rows rejected (the others are imported) or storage/DB failure;
2 bad input (unreadable file, header without code/name, bad arguments).
``credit-export`` writes confirmed violations (``--all``: dismissed too) with names — the
command line runs on the hub as its operator; ``feed`` is the signed JSON feed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from evalwatch.clitools import CliError, cli_actor, hub_key, load_cfg, open_db, parse_args, run_cli


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evalwatch experts", description="expert register and credit records")
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="import the drawing system's export (CSV or XLSX)")
    imp.add_argument("file")
    imp.add_argument("--config", required=True)
    imp.add_argument("--json", action="store_true", help="print the result as JSON")
    ls = sub.add_parser("list", help="list the register (codes, names, violations)")
    ls.add_argument("--config", required=True)
    ls.add_argument("--json", action="store_true")
    ex = sub.add_parser("credit-export", help="export credit records (CSV, XLSX or the signed JSON feed)")
    ex.add_argument("--config", required=True)
    ex.add_argument("--format", choices=("csv", "xlsx", "feed"), default="csv")
    ex.add_argument("--all", action="store_true", help="dismissed records too (default: violations)")
    ex.add_argument("-o", "--output", required=True)
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    prog = f"evalwatch experts {args.cmd}"
    return run_cli(prog, {"import": _import, "list": _list, "credit-export": _export}[args.cmd](args))


def _import(args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, int]]:
    async def main() -> int:
        from sessions.experts import ImportFileError, import_experts

        path = Path(args.file)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as e:
            raise CliError(f"{args.file}: {e.strerror or e}") from None
        cfg = load_cfg(args.config)
        db = open_db(cfg)
        try:
            res = await import_experts(db, path.name, data, cli_actor(), role="cli")
        except ImportFileError as e:
            raise CliError(f"{args.file}: {e}") from None
        finally:
            db.dispose()
        if args.json:
            print(
                json.dumps(
                    {
                        "created": res.created,
                        "updated": res.updated,
                        "errors": [{"line": n, "problem": m} for n, m in res.errors],
                    },
                    ensure_ascii=False,
                )
            )
        else:
            for n, m in res.errors:
                print(f"{args.file}: line {n}: {m}", file=sys.stderr)
            print(
                f"imported {res.imported} experts ({res.created} new, {res.updated} updated); "
                f"{len(res.errors)} rows rejected"
            )
        return 1 if res.errors else 0

    return main


def _list(args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, int]]:
    async def main() -> int:
        from sqlalchemy import select

        from sessions import credit
        from sessions.credit_models import Expert

        cfg = load_cfg(args.config)
        db = open_db(cfg)
        try:

            def q(s: Any) -> list[tuple[str, str, str | None, bool, int]]:
                recs = credit.records(s, decision="violation", names=False, history=False)
                n: dict[str, int] = {}
                for r in recs:
                    if r.expert_code:
                        n[r.expert_code] = n.get(r.expert_code, 0) + 1
                return [
                    (e.code, e.name, e.phone, e.active, n.get(e.code, 0))
                    for e in s.scalars(select(Expert).order_by(Expert.code))
                ]

            rows = await db.run(q)
        finally:
            db.dispose()
        if args.json:
            print(
                json.dumps(
                    [
                        {"code": c, "name": nm, "phone": ph, "active": a, "violations": v}
                        for c, nm, ph, a, v in rows
                    ],
                    ensure_ascii=False,
                )
            )
        else:
            for c, nm, ph, a, v in rows:
                print(f"{c}\t{nm}\t{ph or '-'}\t{'active' if a else 'inactive'}\tviolations={v}")
        return 0

    return main


def _export(args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, int]]:
    async def main() -> int:
        from sessions import credit

        cfg = load_cfg(args.config)
        db = open_db(cfg)
        decision: Literal["violation"] | None = None if args.all else "violation"
        try:
            recs = await db.run(lambda s: credit.records(s, decision=decision, names=True))
        finally:
            db.dispose()
        if args.format == "csv":
            data = credit.to_csv(recs, names=True)
        elif args.format == "xlsx":
            data = await asyncio.to_thread(credit.to_xlsx, recs, names=True)
        else:
            doc = credit.signed_feed(recs, hub_key(cfg), names=True)
            data = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(out.write_bytes, data)
        print(f"wrote {out}: {len(recs)} credit records ({args.format})")
        return 0

    return main


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
