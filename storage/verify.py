"""Verify a camera's archive from object storage alone (the DB is not trusted).

``verify_chain`` lists every object under ``<site>/<room>/<camera>/``, walks the chain links
``chain/00000001.json, 00000002.json, ...`` in order and reports OK or the FIRST problem:

* ``missing``   — a link number is absent, or a segment a link names is absent;
* ``altered``   — a link's content does not match its ``link_hash``, or a segment's sha256/size
  differs from its link;
* ``reordered`` — a link is stored under another number than its ``seq``, its ``prev_hash`` is not
  the previous link's hash, or live footage goes back in time (backfill links may be older);
* ``inserted``  — an object under the camera prefix that no link names, or an extra link that
  does not chain onto the previous one.

With ``start``/``end`` only links overlapping the range have their segment fetched (all links are
still hashed, since each depends on the one before) and stray objects are reported when their
key's date lies in the range.  Tail truncation (deleting the newest links *and* segments) cannot
be seen from storage alone; pass ``expected_head`` (e.g. the DB's count) to check it.

CLI: ``evalwatch verify --config FILE --camera site/room/camera [--from ISO --to ISO]`` prints
``OK ...`` (exit 0) or ``PROBLEM ...`` (exit 1); 2 on bad arguments.  ``--session ID`` checks every
camera of a session against its seal (``sessions.verify``).  ``evalwatch verify
FILE.zip`` is handed to ``sessions.export.verify_zip`` (evidence exports) when available.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from storage.chain import GENESIS, LINK_FIELDS, camera_prefix, compute_link_hash, parse_iso
from storage.objects import ObjectMissing, ObjectStore, StorageError

Problem = Literal["missing", "altered", "reordered", "inserted"]

_LINK_RE = re.compile(r"^chain/(\d{8})\.json$")
_SEG_TIME_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})(\d{2})(\d{2})_(\d{3})\.")


@dataclass
class VerifyResult:
    """``ok`` or the first problem: its kind, the object key and chain seq involved, a message."""

    ok: bool
    camera: str
    links_checked: int = 0
    segments_checked: int = 0
    problem: Problem | None = None
    key: str | None = None
    seq: int | None = None
    message: str = ""
    head_hash: str = GENESIS
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.ok:
            return (
                f"OK {self.camera}: {self.links_checked} links, {self.segments_checked} segments verified; "
                f"head {self.head_hash[:16]}"
            )
        return f"PROBLEM {self.camera}: {self.problem}: {self.message}"


def _key_time(rel: str) -> datetime | None:
    m = _SEG_TIME_RE.match(rel)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    try:
        return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)
    except ValueError:
        return None


async def verify_chain(
    objects: ObjectStore,
    site: str,
    room: str,
    camera: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    bucket: str | None = None,
    expected_head: int | None = None,
) -> VerifyResult:
    """Check the camera's chain and segments in ``bucket`` (default: the configured segments
    bucket).  Raises ``StorageUnavailable`` when S3 cannot be reached."""
    bucket = bucket or objects.cfg.bucket_segments
    prefix = camera_prefix(site, room, camera)
    res = VerifyResult(ok=False, camera=f"{site}/{room}/{camera}")

    def fail(kind: Problem, key: str | None, seq: int | None, msg: str) -> VerifyResult:
        res.problem, res.key, res.seq, res.message = kind, key, seq, msg
        return res

    listing = await objects.list(bucket, prefix)
    links: dict[int, str] = {}
    others: list[str] = []
    for info in listing:
        rel = info.key[len(prefix) :]
        m = _LINK_RE.match(rel)
        if m:
            links[int(m.group(1))] = info.key
        elif rel.startswith("chain/"):
            return fail("inserted", info.key, None, f"object {info.key} in the chain folder is not a link")
        else:
            others.append(info.key)

    referenced: set[str] = set()
    prev_hash = GENESIS
    last_live_start: datetime | None = None
    n = max(links) if links else 0
    for seq in range(1, n + 1):
        lkey = links.get(seq)
        if lkey is None:
            return fail("missing", f"{prefix}chain/{seq:08d}.json", seq, f"chain link seq {seq} is missing")
        try:
            raw = await objects.get_bytes(bucket, lkey)
            doc = json.loads(raw)
            if not isinstance(doc, dict) or any(k not in doc for k in (*LINK_FIELDS, "link_hash")):
                raise ValueError("fields missing")
        except ObjectMissing:
            return fail("missing", lkey, seq, f"chain link {lkey} vanished while verifying")
        except ValueError as e:
            return fail("altered", lkey, seq, f"chain link {lkey} is not a valid link document ({e})")
        if compute_link_hash(doc) != doc["link_hash"]:
            return fail("altered", lkey, seq, f"chain link {lkey} (seq {seq}) does not match its link_hash")
        if doc["seq"] != seq:
            return fail(
                "reordered", lkey, seq, f"chain link stored as seq {seq} says seq {doc['seq']} ({doc['key']})"
            )
        if doc["prev_hash"] != prev_hash:
            kind: Problem = "inserted" if seq == n else "reordered"
            return fail(
                kind, lkey, seq, f"chain link seq {seq} ({doc['key']}) does not chain onto seq {seq - 1}"
            )
        if (doc["site"], doc["room"], doc["camera"]) != (site, room, camera) or not str(
            doc["key"]
        ).startswith(prefix):
            return fail(
                "inserted", lkey, seq, f"chain link seq {seq} belongs to another camera ({doc['key']})"
            )
        seg_start, seg_end = parse_iso(doc["start"]), parse_iso(doc["end"])
        if doc["source"] == "live":
            if last_live_start is not None and seg_start < last_live_start:
                return fail(
                    "reordered",
                    doc["key"],
                    seq,
                    f"segment {doc['key']} (seq {seq}) starts before the previous live segment",
                )
            last_live_start = seg_start
        prev_hash = doc["link_hash"]
        referenced.add(doc["key"])
        res.links_checked += 1
        in_range = (start is None or seg_end > start) and (end is None or seg_start < end)
        if not in_range:
            continue
        try:
            data = await objects.get_bytes(bucket, doc["key"])
        except ObjectMissing:
            return fail("missing", doc["key"], seq, f"segment {doc['key']} (seq {seq}) is missing")
        if len(data) != doc["size"] or hashlib.sha256(data).hexdigest() != doc["sha256"]:
            return fail(
                "altered",
                doc["key"],
                seq,
                f"segment {doc['key']} (seq {seq}) does not match its recorded sha256/size",
            )
        res.segments_checked += 1

    for key in others:
        if key in referenced:
            continue
        t = _key_time(key[len(prefix) :])
        if t is not None and ((start is not None and t < start) or (end is not None and t >= end)):
            continue
        return fail("inserted", key, None, f"object {key} is not in the chain")
    if expected_head is not None and n < expected_head:
        return fail(
            "missing",
            f"{prefix}chain/{n + 1:08d}.json",
            n + 1,
            f"chain ends at seq {n} but {expected_head} segments were archived",
        )
    res.ok = True
    res.head_hash = prev_hash
    return res


# --- CLI ------------------------------------------------------------------------------------


def _parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{s!r} has no timezone; add Z or +08:00")
    return t.astimezone(UTC)


def _verify_zip(path: str, argv: list[str]) -> int:
    try:
        from sessions.export import verify_zip  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print(
            f"evalwatch verify: cannot verify {path}: evidence export support is not installed",
            file=sys.stderr,
        )
        return 2
    return int(verify_zip(path, argv) or 0)


def _verify_session(config_path: str, ident: str) -> int:
    from config.loader import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(f"evalwatch verify: config error:\n{e}", file=sys.stderr)
        return 2
    try:
        from sessions.lifecycle import SessionNotFound
        from sessions.verify import verify_session_archive
    except ImportError:
        print("evalwatch verify: session support is not installed", file=sys.stderr)
        return 2
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
        return _verify_zip(argv[0], argv[1:])
    p = argparse.ArgumentParser(
        prog="evalwatch verify",
        description="verify a camera's hash chain, a session's sealed archive, or an evidence zip",
    )
    p.add_argument("--config", required=True, help="evalwatch YAML config file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--camera", help="site/room/camera")
    what.add_argument("--session", help="session id or code: every camera against its seal")
    p.add_argument("--from", dest="start", help="ISO-8601 start (with timezone)")
    p.add_argument("--to", dest="end", help="ISO-8601 end (with timezone)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.session:
        return _verify_session(args.config, args.session)
    parts = args.camera.split("/")
    if len(parts) != 3 or not all(parts):
        print(f"evalwatch verify: --camera must be site/room/camera, got {args.camera!r}", file=sys.stderr)
        return 2
    try:
        start = _parse_time(args.start) if args.start else None
        end = _parse_time(args.end) if args.end else None
    except ValueError as e:
        print(f"evalwatch verify: bad --from/--to: {e}", file=sys.stderr)
        return 2
    from config.loader import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"evalwatch verify: config error:\n{e}", file=sys.stderr)
        return 2
    try:
        site, room, camera = parts
        result = asyncio.run(verify_chain(ObjectStore(cfg.storage.s3), site, room, camera, start, end))
    except StorageError as e:
        print(f"evalwatch verify: {e}", file=sys.stderr)
        return 1
    print(result)
    return 0 if result.ok else 1
