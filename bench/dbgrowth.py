"""Database growth per camera-day and the dashboard's queries on a year of rows (issue #17).

Creates a SQLite database with the hub's migrations (``storage.db.Database.upgrade``), fills it
with ``--days`` of rows for ``--cameras`` cameras — per camera-day, ``--hours`` of recording in
``--segment-seconds`` segments (``segments`` rows as ``storage.segments`` writes them: object
key, sha256, chain hashes) and ``--events`` incidents (``events`` rows as ``analysis.store``
writes them, half with a snapshot key, most resolved) — then reports:

* bytes per camera-day: the database file (tables and indexes) divided by cameras x days, and
  split into segments and events (``dbstat`` when SQLite has it);
* for each of the dashboard's range queries — the events list (``GET /api/events``: newest
  first, all / open ones / one camera), the replay index (``GET /api/replay/...``: a camera's
  segments and events over the last hour of the year) — the plan (``EXPLAIN QUERY PLAN``: which
  index) and the median time of ``--repeat`` runs.

The statements are the routes' own (``dashboard.routes.events.events_query``,
``dashboard.routes.replay.segments_query`` / ``events_queries``).

``--audit-rows N`` also fills ``audit_log`` with N rows over the same year (40 users and the
sites' agents; live views, list reads, replays, logins, alert handling; targets are cameras,
events and sessions) and times ``GET /api/audit``'s statement
(``dashboard.routes.admin.audit_query``) with the auditor's filters.

Usage: ``python bench/dbgrowth.py [--cameras 20] [--days 365] [--hours 8] [--events 40]
[--json out.json]``.  Rows for 20 cameras x 365 days x 8 h at 10 s: 21 million segments (a few
GB, ~10 minutes to insert here); ``--cameras 2`` gives the same per-camera-day figures faster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RULES = ("extra_person", "phone", "seat_empty", "tamper", "camera_offline")
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)


def fill(db: Any, cameras: int, days: int, hours: float, seg_s: float, events: int,
         start: datetime = YEAR_START, batch: int = 20_000) -> dict[str, int]:
    """Insert the rows (module docstring); returns the counts."""
    from sqlalchemy import insert

    from storage.models import EventRow, Segment

    rng = random.Random(17)
    per_day = int(hours * 3600 // seg_s)
    n_seg = n_ev = 0
    cams = [(f"s{c:02d}", "room_a", "cam1") for c in range(1, cameras + 1)]
    with db.session() as s:
        for site, room, cam in cams:
            segs: list[dict[str, Any]] = []
            evs: list[dict[str, Any]] = []
            seq = 0
            prev = "0" * 64
            for d in range(days):
                day0 = start + timedelta(days=d, hours=8)  # the evaluation day starts at 08:00 UTC
                for i in range(per_day):
                    t = day0 + timedelta(seconds=i * seg_s)
                    seq += 1
                    link = f"{rng.getrandbits(256):064x}"
                    segs.append({
                        "site": site, "room": room, "camera": cam, "start": t,
                        "end": t + timedelta(seconds=seg_s),
                        "key": f"{site}/{room}/{cam}/{t:%Y/%m/%d/%H%M%S}_{t.microsecond // 1000:03d}.mp4",
                        "sha256": f"{rng.getrandbits(256):064x}", "size": rng.randint(150_000, 400_000),
                        "content_type": "video/mp4", "source": "live", "seq": seq, "prev_hash": prev,
                        "link_hash": link, "uploaded": True, "created_at": t + timedelta(seconds=seg_s + 1),
                    })
                    prev = link
                for _ in range(events):
                    t = day0 + timedelta(seconds=rng.uniform(0, hours * 3600))
                    uid = f"{rng.getrandbits(64):016x}"
                    rule = rng.choice(RULES)
                    resolved = rng.random() < 0.95
                    evs.append({
                        "site": site, "room": room, "camera": cam, "seat": f"S{rng.randint(1, 6)}",
                        "rule": rule, "kind": "covered" if rule == "tamper" else None, "started_at": t,
                        "ended_at": t + timedelta(seconds=rng.uniform(5, 120)),
                        "confidence": rng.random(),
                        "snapshot_key": f"{site}/{room}/{cam}/{t:%Y/%m/%d/%H%M%S}_{uid}.jpg"
                        if rng.random() < 0.5 else None,
                        "footage_start": t, "footage_end": t + timedelta(seconds=60),
                        "status": "resolved" if resolved else "new",
                        "resolved_by": "supervisor" if resolved else None,
                        "resolved_at": t + timedelta(minutes=5) if resolved else None,
                        "note": "checked on the wall" if resolved else None, "session_id": d + 1,
                        "details": {"uid": uid, "ratio": round(rng.random(), 2)}, "origin": "agent",
                        "uid": uid, "seq": 3,
                    })
                if len(segs) >= batch:
                    s.execute(insert(Segment), segs)
                    n_seg += len(segs)
                    segs = []
                if len(evs) >= batch:
                    s.execute(insert(EventRow), evs)
                    n_ev += len(evs)
                    evs = []
            if segs:
                s.execute(insert(Segment), segs)
                n_seg += len(segs)
            if evs:
                s.execute(insert(EventRow), evs)
                n_ev += len(evs)
            s.commit()
    return {"segments": n_seg, "events": n_ev}


#: (action, weight, target kind) of the audit rows :func:`fill_audit` writes.
AUDIT_MIX = (("live_view", 30, "camera"), ("live_view_end", 30, "camera"), ("event_list", 12, None),
             ("snapshot_view", 6, "event"), ("replay", 6, "camera"), ("alert_ack", 5, "event"),
             ("alert_resolve", 4, "event"), ("login", 4, None), ("session_view", 2, "session"),
             ("room_notice_shown", 1, "camera"))


def fill_audit(db: Any, rows: int, days: int, cameras: int, start: datetime = YEAR_START,
               batch: int = 50_000) -> int:
    """``rows`` audit rows spread evenly over ``days`` (module docstring); returns the count."""
    from sqlalchemy import insert

    from storage.models import AuditLog

    rng = random.Random(23)
    names = [a for a, _w, _k in AUDIT_MIX]
    weights = [w for _a, w, _k in AUDIT_MIX]
    kinds = {a: k for a, _w, k in AUDIT_MIX}
    step = days * 86400 / max(1, rows)
    done = 0
    with db.session() as s:
        while done < rows:
            chunk = []
            for i in range(done, min(rows, done + batch)):
                action = rng.choices(names, weights)[0]
                kind = kinds[action]
                site = f"s{rng.randint(1, max(1, cameras)):02d}"
                target = (f"{site}/room_a/cam1" if kind == "camera" else f"event:{rng.randint(1, 10**6)}"
                          if kind == "event" else f"session:{rng.randint(1, 5000)}" if kind == "session"
                          else None)
                actor = f"agent:{site}" if action == "room_notice_shown" else f"user{rng.randint(1, 40):02d}"
                chunk.append({"at": start + timedelta(seconds=i * step), "actor": actor, "role": "supervisor",
                              "action": action, "target": target, "ip": "10.1.0.7", "details": None})
            s.execute(insert(AuditLog), chunk)
            done += len(chunk)
        s.commit()
    return done


def audit_queries(end: datetime, rows: int) -> dict[str, Any]:
    """``GET /api/audit``'s statement with an auditor's filters (the last day ends at ``end``)."""
    from dashboard.routes.admin import audit_query

    return {
        "audit log, newest 200": audit_query(),
        "audit log, one action (alert_ack)": audit_query(action="alert_ack"),
        "audit log, one user": audit_query(actor="user07"),
        "audit log, one camera (target prefix)": audit_query(target="s01/room_a/cam1"),
        "audit log, one event (target)": audit_query(target="event:4242"),
        "audit log, a target nothing matches": audit_query(target="s99/"),
        "audit log, one day": audit_query(since=end - timedelta(days=1), until=end),
        "audit log, one day half a year ago, one action": audit_query(
            action="login", since=end - timedelta(days=183), until=end - timedelta(days=182)),
        "audit log, the page below the middle": audit_query(before_id=max(1, rows // 2)),
    }


def queries(end: datetime) -> dict[str, Any]:
    """The dashboard's statements, for the camera ``s01/room_a/cam1`` and the hour before ``end``."""
    from dashboard.routes.events import events_query
    from dashboard.routes.replay import events_queries, segments_query

    start = end - timedelta(hours=1)
    mid = end - timedelta(days=182)
    ended, still_open = events_queries("s01", "room_a", "cam1", start, end)
    ended_mid, _ = events_queries("s01", "room_a", "cam1", mid - timedelta(hours=1), mid)
    return {
        "events list, newest 200": events_query(limit=200),
        "events list, open (new/acknowledged), newest 100": events_query(status=["new", "acknowledged"],
                                                                         limit=100),
        "events list, one camera, newest 200": events_query(site="s01", room="room_a", camera="cam1",
                                                            limit=200),
        "events list, one day": events_query(since=end - timedelta(days=1), until=end, limit=200),
        "replay index: segments of one camera, 1 hour": segments_query("s01", "room_a", "cam1", start, end),
        "replay index: segments, 1 hour half a year ago": segments_query(
            "s01", "room_a", "cam1", mid - timedelta(hours=1), mid),
        "replay index: events that ended, 1 hour": ended,
        "replay index: events that ended, 1 hour half a year ago": ended_mid,
        "replay index: events still open": still_open,
    }


def measure(db: Any, end: datetime, repeat: int = 5,
            statements: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Plan (EXPLAIN QUERY PLAN details) and median ms of each of ``statements`` (default
    :func:`queries`)."""
    from sqlalchemy import text

    out: dict[str, dict[str, Any]] = {}
    with db.engine.connect() as conn:
        for name, stmt in (statements if statements is not None else queries(end)).items():
            compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = [r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
            times = []
            rows = 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                rows = len(conn.execute(stmt).all())
                times.append((time.perf_counter() - t0) * 1000)
            first = times[0]
            times.sort()
            out[name] = {"plan": plan, "ms_median": round(times[len(times) // 2], 2),
                         "ms_first": round(first, 2), "rows": rows}
    return out


def table_bytes(db_path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite's ``dbstat``), {} when this SQLite lacks it."""
    import sqlite3

    con = sqlite3.connect(db_path)
    try:
        rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return {str(n): int(b) for n, b in rows}


def checkpoint(db: Any) -> None:
    """Move SQLite's write-ahead log into the database file (its size is then the data's)."""
    from sqlalchemy import text

    with db.engine.connect() as c:
        c.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from storage.db import Database

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-dbgrowth-"))
    db_path = tmp / "evalwatch.db"
    db = Database(f"sqlite:///{db_path}")
    try:
        db.upgrade()
        checkpoint(db)
        empty = db_path.stat().st_size
        t0 = time.monotonic()
        counts = fill(db, args.cameras, args.days, args.hours, args.segment_seconds, args.events)
        took = time.monotonic() - t0
        audit_before = db_path.stat().st_size
        if args.audit_rows:
            checkpoint(db)
            audit_before = db_path.stat().st_size
            counts["audit_rows"] = fill_audit(db, args.audit_rows, args.days, args.cameras)
        checkpoint(db)
        size = db_path.stat().st_size
        per = table_bytes(db_path)
        cam_days = args.cameras * args.days
        seg_b = sum(b for n, b in per.items() if n == "segments" or "segment" in n)
        ev_b = sum(b for n, b in per.items() if n == "events" or "events" in n)
        end = YEAR_START + timedelta(days=args.days - 1, hours=8 + args.hours)
        res = {
            "cameras": args.cameras, "days": args.days, "hours_per_day": args.hours,
            "segment_seconds": args.segment_seconds, "events_per_camera_day": args.events, **counts,
            "insert_s": round(took, 1), "db_bytes": size,
            "bytes_per_camera_day": round((size - empty) / cam_days),
            "segment_bytes_per_camera_day": round(seg_b / cam_days) if per else None,
            "event_bytes_per_camera_day": round(ev_b / cam_days) if per else None,
            "tables": per, "queries": measure(db, end, args.repeat),
            "audit_queries": measure(db, end, args.repeat, audit_queries(end, args.audit_rows))
            if args.audit_rows else {},
            "audit_bytes_per_row": round((size - audit_before) / args.audit_rows)
            if args.audit_rows else None,
            "loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        }
        # the same queries on fresh connections with each page-cache size (storage.sqlite_cache_kb)
        by_cache = {}
        for kb in args.sqlite_cache_kb:
            other = Database(f"sqlite:///{db_path}", sqlite_cache_kb=kb)
            try:
                by_cache[str(kb)] = measure(other, end, args.repeat)
            finally:
                other.dispose()
        res["queries_by_sqlite_cache_kb"] = by_cache
    finally:
        db.dispose()
        if not args.keep:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--hours", type=float, default=8.0, help="recorded hours per camera-day")
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--events", type=int, default=40, help="incidents per camera-day")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sqlite-cache-kb", type=int, nargs="*", default=[],
                    help="also run the queries with each of these page-cache sizes (KiB per connection)")
    ap.add_argument("--audit-rows", type=int, default=0,
                    help="also fill audit_log with this many rows and time the audit log's queries")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    for name in ("cameras", "days", "repeat"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if not 0 < args.hours <= 24 or args.segment_seconds <= 0 or args.events < 0 or args.audit_rows < 0:
        ap.error("--hours must be in (0, 24], --segment-seconds > 0, --events >= 0, --audit-rows >= 0")
    res = run(args)
    print(f"{res['cameras']} cameras x {res['days']} days x {res['hours_per_day']} h: "
          f"{res['segments']} segments, {res['events']} events, {res['db_bytes'] / 2**20:.1f} MiB "
          f"(inserted in {res['insert_s']} s)")
    print(f"bytes per camera-day: {res['bytes_per_camera_day']} "
          f"(segments {res['segment_bytes_per_camera_day']}, events {res['event_bytes_per_camera_day']})")
    for name, q in res["queries"].items():
        print(f"  {name:<50} {q['ms_median']:>8} ms  {q['rows']:>5} rows  plan: {' | '.join(q['plan'])}")
    if res["audit_queries"]:
        print(f"audit log: {res['audit_rows']} rows, {res['audit_bytes_per_row']} bytes per row")
        for name, q in res["audit_queries"].items():
            print(f"  {name:<50} {q['ms_median']:>8} ms  {q['rows']:>5} rows  plan: {' | '.join(q['plan'])}")
    for kb, qs in res["queries_by_sqlite_cache_kb"].items():
        print(f"with cache_size {kb} KiB per connection (median / first run, ms):")
        for name, q in qs.items():
            print(f"  {name:<50} {q['ms_median']:>8} / {q['ms_first']:>8}")
    print(f"load average {res['loadavg']} on {res['cpus']} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
