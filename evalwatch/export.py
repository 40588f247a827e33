"""``evalwatch export SESSION --config FILE [--from ISO --to ISO] [--camera site/room/camera ...]
[--stitch] -o FILE.zip``: the evidence zip of a sealed session (:func:`sessions.export.export_session`;
layout in :mod:`sessions.evidence_format`), checked offline by ``evalwatch verify FILE.zip``.

Exit codes: 0 written, 1 storage failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from evalwatch.clitools import (
    CliError,
    cli_actor,
    hub_key,
    load_cfg,
    open_db,
    open_objects,
    parse_args,
    parse_time,
    run_cli,
)
from sessions.export import export_session
from storage.common import CameraId


def cli(argv: list[str]) -> int:
    """``evalwatch export``: see module docstring.  Returns the exit code."""
    p = argparse.ArgumentParser(prog="evalwatch export", description="export a sealed session's evidence")
    p.add_argument("session", help="session id or code")
    p.add_argument("--config", required=True, help="evalwatch YAML config file")
    p.add_argument("--from", dest="start", help="ISO-8601 start (with timezone); default session start")
    p.add_argument("--to", dest="end", help="ISO-8601 end (with timezone); default session close")
    p.add_argument("--camera", action="append", help="site/room/camera (repeatable); default all")
    p.add_argument("--stitch", action="store_true", help="also one stitched MP4 per camera (ffmpeg)")
    p.add_argument("-o", "--output", required=True, help="output .zip")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args

    async def main() -> int:
        if not args.output.lower().endswith(".zip"):
            raise CliError(f"-o {args.output}: the output must be a .zip file")
        start = parse_time(args.start, "--from") if args.start else None
        end = parse_time(args.end, "--to") if args.end else None
        for c in args.camera or []:
            try:
                CameraId.parse(c)
            except ValueError:
                raise CliError(f"--camera must be site/room/camera, got {c!r}") from None
        cfg = load_cfg(args.config)
        db = open_db(cfg)
        try:
            r = await export_session(
                db,
                open_objects(cfg),
                cfg,
                hub_key(cfg),
                args.session,
                args.output,
                start=start,
                end=end,
                cameras=args.camera,
                stitch=args.stitch,
                actor=cli_actor(),
            )
        finally:
            db.dispose()
        print(
            f"wrote {r.path}: {r.segments} segments, {r.links} chain links, {r.events} events, "
            f"{r.snapshots} snapshots, {r.bytes} bytes"
        )
        for n in r.notes:
            print(f"note: {n}", file=sys.stderr)
        return 0

    return run_cli("evalwatch export", main)
