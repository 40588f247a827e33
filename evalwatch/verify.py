"""``evalwatch verify``: a camera's hash chain, a session's sealed archive, or an evidence zip.

``evalwatch verify --config FILE --camera site/room/camera [--from ISO --to ISO]`` prints
``OK ...`` (exit 0) or ``PROBLEM ...`` (exit 1) from :func:`storage.verify.verify_chain`; 2 on bad
arguments.  ``--session ID`` checks every camera of a session against its seal
(:mod:`sessions.verify`).  ``evalwatch verify FILE.zip --key PEM ...`` (or ``--trusted DIR``, or
``--config FILE`` for the hub's own keys) checks an evidence export (:func:`verify_zip`,
:mod:`sessions.evidence_verify`): 0 intact, 1 problem, 2 unreadable / not an evidence zip / bad
arguments, 3 consistent but no trusted key given (never "intact" on the strength of the keys
inside the zip).  It lives in the wiring layer because it uses both the storage and the sessions
stage.

``--anchors FEED.json --key hub.pem`` (with ``--config``, optionally ``--camera``) checks the
archive against a kept anchor feed (:mod:`sessions.anchors`): a chain rewritten or truncated
after the feed was taken is a ``PROBLEM <camera> seq <N>: ...`` (exit 1); without a pinned key
UNPINNED, exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from storage.common import CameraId, parse_time
from storage.objects import ObjectStore, StorageError
from storage.verify import verify_chain

UNPINNED = 3
"""Exit code of ``evalwatch verify FILE.zip`` when the zip is consistent but no trusted key was
given: it is not called intact."""


def _pinned_pems(args: argparse.Namespace) -> list[str] | int:
    """The PEMs of ``--key`` and ``--trusted``; an exit code (2) after a message when one cannot
    be read."""
    from sessions.signing import read_public_pems

    pems: list[str] = []
    for opt, paths in (("--key", args.key or []), ("--trusted", args.trusted or [])):
        for kp in paths:
            try:
                pems.extend(read_public_pems(kp))
            except ValueError as e:
                print(f"evalwatch verify: {opt} {kp}: {e}", file=sys.stderr)
                return 2
    return pems


def _load_cfg(path: str) -> Any:
    """The config, or an exit code (2) after the problems."""
    from config.loader import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        print(f"evalwatch verify: config error:\n{e}", file=sys.stderr)
        return 2


def _trusted_keys(args: argparse.Namespace) -> list[str] | int:
    """The PEMs from ``--key``, ``--trusted`` and ``--config`` (the hub's own key and its rotated
    keys); an exit code (2) after a message when one cannot be read."""
    from sessions.signing import hub_trusted_pems

    pems = _pinned_pems(args)
    if isinstance(pems, int):
        return pems
    if args.config:
        from config.loader import ConfigError, load_config
        from sessions.signing import HubKeyError

        try:
            cfg = load_config(args.config)
            hub = hub_trusted_pems(cfg.storage.data_dir)
        except ConfigError as e:
            print(f"evalwatch verify: config error:\n{e}", file=sys.stderr)
            return 2
        except (HubKeyError, ValueError) as e:
            print(f"evalwatch verify: hub keys: {e}", file=sys.stderr)
            return 2
        if not hub:
            print(f"evalwatch verify: --config {args.config}: the hub has no signing key", file=sys.stderr)
            return 2
        pems.extend(hub)
    return pems


def verify_zip(path: str, argv: list[str] | None = None) -> int:
    """``evalwatch verify FILE.zip (--key PEM | --trusted PATH | --config FILE) ... [--no-progress]``:
    0 intact, 1 problem, 2 unusable input, 3 (:data:`UNPINNED`) consistent but no trusted key.

    Prints ``OK ...`` to stdout, or ``PROBLEM <kind>: <message>`` naming the first bad piece, or
    ``UNPINNED ...``.  The seal key and the export key must each be one of the trusted keys:
    ``--key`` (repeatable) PEM files, ``--trusted`` (repeatable) a file of PEM blocks or a
    directory of ``*.pem``, ``--config`` the hub's own key and its rotated keys
    (``<data_dir>/keys/trusted/``).  The keys inside the zip are never trusted.
    """
    p = argparse.ArgumentParser(
        prog="evalwatch verify FILE.zip", description="verify an evidence export offline"
    )
    p.add_argument(
        "--key",
        action="append",
        help="trusted hub public key (PEM file); repeat to pin the seal key and the export key "
        "when they differ",
    )
    p.add_argument(
        "--trusted",
        action="append",
        help="trusted hub public keys: a file of PEM blocks or a directory of *.pem files",
    )
    p.add_argument("--config", help="evalwatch YAML config: trust the hub's own key and its rotated keys")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = p.parse_args(argv or [])
    except SystemExit as e:
        return 2 if e.code else 0
    pems = _trusted_keys(args)
    if isinstance(pems, int):
        return pems
    from sessions.evidence_verify import verify_evidence

    res = verify_evidence(path, pems or None, progress=False if args.no_progress else None)
    if res.problem == "unreadable":
        print(f"evalwatch verify: {res.message}", file=sys.stderr)
        return 2
    print(res)
    if res.ok and not res.pinned:
        print(
            "evalwatch verify: NOT verified as intact: no trusted key given (the keys inside the "
            "zip prove nothing); pass --key hub.pem, --trusted DIR or --config FILE",
            file=sys.stderr,
        )
        return UNPINNED
    return 0 if res.intact else 1


def _verify_session(config_path: str, ident: str) -> int:
    from config.loader import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(f"evalwatch verify: config error:\n{e}", file=sys.stderr)
        return 2
    from sessions.lifecycle import SessionNotFound
    from sessions.verify import verify_session_archive

    try:
        verdict = asyncio.run(verify_session_archive(cfg, int(ident) if ident.isdigit() else ident))
    except SessionNotFound as e:
        print(f"evalwatch verify: {e}", file=sys.stderr)
        return 2
    except StorageError as e:
        print(f"evalwatch verify: {e}", file=sys.stderr)
        return 1
    print("\n".join(verdict.lines))
    print(f"session {verdict.session}: {'OK' if verdict.ok else 'PROBLEMS FOUND'}")
    return 0 if verdict.ok else 1


def cli(argv: list[str]) -> int:
    """``evalwatch verify``: see module docstring.  Returns the exit code."""
    if argv and argv[0].lower().endswith(".zip"):
        return verify_zip(argv[0], argv[1:])
    p = argparse.ArgumentParser(
        prog="evalwatch verify",
        description="verify a camera's hash chain, a session's sealed archive, or an evidence zip",
    )
    p.add_argument("--config", required=True, help="evalwatch YAML config file")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--camera", help="site/room/camera")
    what.add_argument("--session", help="session id or code: every camera against its seal")
    p.add_argument("--from", dest="start", help="ISO-8601 start (with timezone)")
    p.add_argument("--to", dest="end", help="ISO-8601 end (with timezone)")
    p.add_argument(
        "--anchors",
        action="append",
        metavar="FEED.json",
        help="a kept anchor feed (GET /api/anchors/feed): the archive must still hold every anchored "
        "chain head; repeatable; needs --key or --trusted (never a key inside the feed)",
    )
    p.add_argument("--key", action="append", help="pinned hub public key (PEM file) for --anchors")
    p.add_argument("--trusted", action="append", help="pinned hub public keys (file of PEMs or a directory)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.anchors:
        if args.session:
            print("evalwatch verify: --anchors checks cameras; use it without --session", file=sys.stderr)
            return 2
        return _verify_anchors(args)
    if args.key or args.trusted:
        print("evalwatch verify: --key/--trusted go with --anchors (or FILE.zip)", file=sys.stderr)
        return 2
    if args.session:
        return _verify_session(args.config, args.session)
    if not args.camera:
        print("evalwatch verify: one of --camera, --session or --anchors is required", file=sys.stderr)
        return 2
    try:
        cam = CameraId.parse(args.camera)
    except ValueError:
        print(f"evalwatch verify: --camera must be site/room/camera, got {args.camera!r}", file=sys.stderr)
        return 2
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as e:
        print(f"evalwatch verify: bad --from/--to: {e}", file=sys.stderr)
        return 2
    cfg = _load_cfg(args.config)
    if isinstance(cfg, int):
        return cfg
    try:
        result = asyncio.run(verify_chain(ObjectStore(cfg.storage.s3), *cam.as_tuple(), start, end))
    except StorageError as e:
        print(f"evalwatch verify: {e}", file=sys.stderr)
        return 1
    print(result)
    if result.ok and result.purged_ranges:
        missing = _purges_not_in_db(cfg, cam, result.purged_ranges)
        if missing:
            print(f"PROBLEM {cam.path}: altered: {missing}")
            return 1
    return 0 if result.ok else 1


def _verify_anchors(args: argparse.Namespace) -> int:
    """``--anchors FEED.json ... (--key PEM | --trusted PATH) [--camera C]``: the archive against
    kept anchor feeds (:func:`sessions.anchors.check_archive`).  0 every anchored head is there,
    1 a PROBLEM (naming camera and seq), 2 bad input, 3 (:data:`UNPINNED`) no pinned key."""
    from sessions.anchors import check_archive, load_feed

    pems = _pinned_pems(args)
    if isinstance(pems, int):
        return pems
    records: list[dict[str, Any]] = []
    for feed in args.anchors:
        try:
            with open(feed, "rb") as f:
                records.extend(load_feed(f.read(), feed))
        except OSError as e:
            print(f"evalwatch verify: --anchors {feed}: {e.strerror or e}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"evalwatch verify: --anchors {e}", file=sys.stderr)
            return 2
    if not pems:
        print(
            "UNPINNED: the anchor feed was not checked: no pinned key (the key inside a feed proves "
            "nothing); pass --key hub.pem (obtained from the hub's operator) or --trusted DIR",
            file=sys.stderr,
        )
        return UNPINNED
    cam = None
    if args.camera:
        try:
            cam = CameraId.parse(args.camera)
        except ValueError:
            print(f"evalwatch verify: --camera must be site/room/camera, got {args.camera!r}",
                  file=sys.stderr)
            return 2
    cfg = _load_cfg(args.config)
    if isinstance(cfg, int):
        return cfg
    try:
        check = asyncio.run(check_archive(ObjectStore(cfg.storage.s3), records, pems, camera=cam))
    except StorageError as e:
        print(f"evalwatch verify: {e}", file=sys.stderr)
        return 1
    print("\n".join(check.lines))
    print(
        f"anchors: {'OK' if check.ok else 'PROBLEMS FOUND'} ({check.records} anchor records, "
        f"{check.cameras} cameras)"
    )
    return 0 if check.ok else 1


def _purges_not_in_db(cfg: Any, cam: CameraId, ranges: list[tuple[int, int, str]]) -> str | None:
    """The chain skips links on the strength of purge records in object storage; each must also
    be in the database's ``purged_ranges`` (written by the same purge).  A message for the first
    one that is not, else None; a database that cannot be read is a note on stderr."""
    from sqlalchemy import select

    from storage.db import Database, DatabaseError
    from storage.models import PurgedRange

    try:
        db = Database(cfg.storage.database_url)
        try:
            with db.session() as s:
                known = {
                    (r.first_seq, r.last_link_hash)
                    for r in s.scalars(
                        select(PurgedRange).where(
                            PurgedRange.site == cam.site,
                            PurgedRange.room == cam.room,
                            PurgedRange.camera == cam.camera,
                        )
                    )
                }
                firsts = {f for f, _h in known}
        finally:
            db.dispose()
    except (DatabaseError, Exception) as e:  # any DB failure is only a note here
        print(
            f"evalwatch verify: note: purge records not cross-checked with the database: {e}", file=sys.stderr
        )
        return None
    for first, last, _anchor in ranges:
        if first not in firsts:
            return (
                f"purge record of links {first}..{last} has no matching record in the database "
                "(a purge that stopped half-way: run `evalwatch storage purge` again; otherwise forged)"
            )
    return None
