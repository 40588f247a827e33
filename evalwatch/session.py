"""``evalwatch session ...``: evaluation sessions from the command line.

    evalwatch session create  --config FILE SPEC.yaml|SPEC.json   create (scheduled); prints the id
    evalwatch session start   --config FILE SESSION                 scheduled -> running
    evalwatch session close   --config FILE SESSION                 running -> closed (sealed)
    evalwatch session list    --config FILE [--status S] [--json]
    evalwatch session show    --config FILE SESSION [--json]        details, seal verification
    evalwatch session public-key --config FILE [-o FILE.pem]        the hub's public key (PEM)
    evalwatch session hold    --config FILE SESSION --reason TEXT   legal hold: the retention purge keeps it
    evalwatch session release --config FILE SESSION [--reason TEXT] release the legal hold

``SESSION`` is the numeric id or the code.  The spec format is documented in docs/sessions.md
(``seating:`` may hold the JSON output of ``evalwatch seats assign --json`` verbatim).

Exit codes: 0 success; 1 failure (storage/database unreachable, seal does not verify); 2 bad
arguments or input (unknown session, wrong status, invalid spec) — always a one-line reason on
stderr, never a traceback.  The helpers come from :mod:`evalwatch.clitools`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from evalwatch.clitools import (
    cli_actor,
    hub_key,
    load_cfg,
    open_db,
    open_objects,
    parse_args,
    run_cli,
    trusted_keys,
)


def _fmt(t: datetime | None, tz: str) -> str:
    if t is None:
        return "-"
    from zoneinfo import ZoneInfo

    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def describe(info: Any, tz: str) -> str:
    """Human-readable summary of a :class:`sessions.lifecycle.SessionInfo`."""
    lines = [
        f"session {info.id} {info.code}: {info.project}",
        f"  status   {info.status}",
        f"  bids     {', '.join(info.bids)}",
        f"  planned  {_fmt(info.planned_start, tz)} – {_fmt(info.planned_end, tz)}",
        f"  started  {_fmt(info.started_at, tz)} by {info.started_by or '-'}",
        f"  closed   {_fmt(info.closed_at, tz)} by {info.closed_by or '-'}",
        f"  cameras  {', '.join(c.path for c in info.cameras)}",
    ]
    for x in info.seats:
        code = f" [{x.expert_code}]" if x.expert_code else ""
        lines.append(f"  seat     {x.site}/{x.room}/{x.seat}: {x.expert}{code} (bid {x.bid})")
    for h in info.heads:
        lines.append(f"  sealed   {h.path}: seq {h.first_seq}..{h.head_seq} head {h.head_hash[:16]}…")
    if info.retention:
        r = info.retention
        state = "enforced" if r.get("enforced") else "NOT enforced"
        lines.append(f"  retention {state}: {r.get('note') or r.get('mode')}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    """``evalwatch session``: see the module docstring.  Returns the exit code."""
    p = argparse.ArgumentParser(prog="evalwatch session", description="evaluation sessions")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (
        ("create", "create a scheduled session from a spec file"),
        ("start", "start a scheduled session (arms its seats)"),
        ("close", "close a running session and seal it"),
        ("list", "list sessions"),
        ("show", "show a session and verify its seal"),
        ("public-key", "print or write the hub's public key (PEM)"),
        ("hold", "put a session under legal hold (its footage is never purged while held)"),
        ("release", "release a session's legal hold"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", required=True, help="evalwatch YAML config file")
        if name == "create":
            sp.add_argument("spec", help="session spec (YAML or JSON)")
        elif name in ("start", "close", "show", "hold", "release"):
            sp.add_argument("session", help="session id or code")
        if name in ("hold", "release"):
            sp.add_argument("--reason", required=name == "hold", default="",
                            help="why (the dispute's reference); audit-logged")
        if name in ("list", "show"):
            sp.add_argument("--json", action="store_true", help="print JSON")
        if name == "list":
            sp.add_argument("--status", choices=("scheduled", "running", "closed"))
        if name == "public-key":
            sp.add_argument("-o", "--output", help="write the PEM here instead of stdout")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    return run_cli("evalwatch session", lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    from sessions import lifecycle as lc

    cfg = load_cfg(args.config)
    tz = cfg.hub.timezone
    if args.cmd == "public-key":
        pem = hub_key(cfg).public_pem()
        if args.output:
            await asyncio.to_thread(Path(args.output).write_text, pem, encoding="ascii")
            print(f"public key written to {args.output}", file=sys.stderr)
        else:
            print(pem, end="")
        return 0
    db = open_db(cfg)
    try:
        actor = cli_actor()
        if args.cmd == "create":
            info = await lc.create_session(db, cfg, lc.load_spec(args.spec), actor)
            print(f"created session {info.id} {info.code} (scheduled)")
        elif args.cmd == "start":
            info = await lc.start_session(db, args.session, actor)
            print(f"session {info.id} {info.code} running since {_fmt(info.started_at, tz)}")
        elif args.cmd == "close":
            key = hub_key(cfg)
            info = await lc.close_session(db, cfg, key, args.session, actor, objects=open_objects(cfg))
            print(describe(info, tz))
            from evalwatch.anchors import anchorer_for

            anchorer = await anchorer_for(cfg, db, key)
            await anchorer.anchor(f"session_close:{info.code}")
            print(
                "chain heads anchored"
                + (f" (anchor store: {anchorer.store.describe()})" if anchorer.store else "")
                + (f"; NOT written to the anchor store: {anchorer.last_error}" if anchorer.last_error else "")
            )
        elif args.cmd in ("hold", "release"):
            from sessions import holds

            if args.cmd == "hold":
                h = await holds.set_legal_hold(db, args.session, args.reason, actor)
                print(f"session {args.session}: legal hold #{h.id} set by {h.created_by}: {h.reason}")
            else:
                h = await holds.release_legal_hold(db, args.session, actor, reason=args.reason)
                print(f"session {args.session}: legal hold #{h.id} released by {h.released_by}")
        elif args.cmd == "list":
            infos = await lc.list_sessions(db, args.status)
            if args.json:
                print(json.dumps([i.to_dict() for i in infos], ensure_ascii=False, indent=2))
            for i in [] if args.json else infos:
                print(f"{i.id:>5}  {i.code:<20} {i.status:<9} {_fmt(i.planned_start, tz)}  {i.project}")
        elif args.cmd == "show":
            info = await lc.get_session(db, args.session)
            problems = (
                lc.verify_seal(info, await asyncio.to_thread(trusted_keys, cfg))
                if info.status == "closed"
                else []
            )
            from sessions.holds import session_holds

            held = [h for h in await session_holds(db, info.id) if h.released_at is None]
            if args.json:
                holds_json = [h.model_dump(mode="json") for h in held]
                print(json.dumps({**info.to_dict(), "seal_problems": problems, "legal_holds": holds_json},
                                 ensure_ascii=False, indent=2))
            else:
                print(describe(info, tz))
                for h in held:
                    since = _fmt(h.created_at, tz)
                    print(f"  hold     legal hold #{h.id} by {h.created_by} since {since}: {h.reason}")
                if info.status == "closed":
                    print("  seal     " + ("OK" if not problems else "PROBLEM: " + "; ".join(problems)))
            return 1 if problems else 0
        return 0
    finally:
        db.dispose()
