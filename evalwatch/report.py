"""``evalwatch report SESSION --config FILE [--format html|pdf] [--lang zh|en] -o OUT``: the
supervision report of a session (:mod:`sessions.report`: contents, coverage contract).

``evalwatch report monthly --site S --month YYYY-MM --config FILE [--format html|pdf] [--lang zh|en]
-o OUT``: the monthly report of a site (:mod:`sessions.monthly`).

Exit codes: 0 written, 1 storage/DB failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from evalwatch.clitools import CliError, load_cfg, open_db, open_objects, parse_args, run_cli
from sessions.report import LANGS, build_report, render_html, render_pdf


def cli(argv: list[str]) -> int:
    """``evalwatch report``: see module docstring.  Returns the exit code."""
    if argv[:1] == ["monthly"]:
        return monthly_cli(argv[1:])
    p = argparse.ArgumentParser(prog="evalwatch report", description="supervision report of a session")
    p.add_argument("session", help="session id or code")
    p.add_argument("--config", required=True, help="evalwatch YAML config file")
    p.add_argument("--format", choices=("html", "pdf"), help="default: from the -o extension")
    p.add_argument("--lang", choices=LANGS, default="zh", help="report language (default zh)")
    p.add_argument("-o", "--output", required=True, help="output file")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args

    async def main() -> int:
        fmt = args.format or Path(args.output).suffix.lower().lstrip(".")
        if fmt not in ("html", "pdf"):
            raise CliError(f"cannot tell the format from {args.output!r}; give --format html or --format pdf")
        cfg = load_cfg(args.config)
        db = open_db(cfg)
        try:
            data = await build_report(db, open_objects(cfg), cfg, args.session)
        finally:
            db.dispose()
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = render_html(data, args.lang).encode("utf-8") if fmt == "html" else render_pdf(data, args.lang)
        await asyncio.to_thread(out.write_bytes, doc)
        bad = [c.camera for c in data.coverage if not c.chain_ok]
        print(
            f"wrote {out}: {len(data.events)} events, {len(data.coverage)} cameras"
            + (f"; chain PROBLEM on {', '.join(bad)}" if bad else "")
            + ("; seal PROBLEM" if data.seal_problems else "")
        )
        return 0

    return run_cli("evalwatch report", main)


def _format(fmt: str | None, output: str) -> str:
    fmt = fmt or Path(output).suffix.lower().lstrip(".")
    if fmt not in ("html", "pdf"):
        raise CliError(f"cannot tell the format from {output!r}; give --format html or --format pdf")
    return fmt


def monthly_cli(argv: list[str]) -> int:
    """``evalwatch report monthly``: the monthly report of a site (module docstring)."""
    from sessions.monthly import LANGS as MLANGS
    from sessions.monthly import MonthlyError, build_monthly, render_monthly_html, render_monthly_pdf

    p = argparse.ArgumentParser(
        prog="evalwatch report monthly", description="monthly supervision report of a site"
    )
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--month", required=True, help="YYYY-MM (hub.timezone)")
    p.add_argument("--config", required=True, help="evalwatch YAML config file")
    p.add_argument("--format", choices=("html", "pdf"), help="default: from the -o extension")
    p.add_argument("--lang", choices=MLANGS, default="zh", help="report language (default zh)")
    p.add_argument("-o", "--output", required=True, help="output file")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args

    async def main() -> int:
        fmt = _format(args.format, args.output)
        cfg = load_cfg(args.config)
        db = open_db(cfg)
        try:
            data = await build_monthly(db, cfg, args.site, args.month)
        except MonthlyError as e:
            raise CliError(str(e)) from None
        finally:
            db.dispose()
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = (
            render_monthly_html(data, args.lang).encode("utf-8")
            if fmt == "html"
            else await asyncio.to_thread(render_monthly_pdf, data, args.lang)
        )
        await asyncio.to_thread(out.write_bytes, doc)
        print(
            f"wrote {out}: site {data.site}, {data.month}: {len(data.sessions)} sessions, "
            f"{data.incidents.total} incidents, {len(data.cameras)} cameras"
        )
        return 0

    return run_cli("evalwatch report monthly", main)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
