"""A year of rows (issue #17 item 5): the dashboard's events list and replay queries stay on an
index — ``EXPLAIN QUERY PLAN`` names one and no statement sorts the whole table — and stay fast.

The rows are ``bench/dbgrowth.py``'s (2 cameras x 365 days; fewer segments per day than a real
camera, which changes the sizes, not the plans); its full-size figures are in docs/storage.md.
Before migration 0009 the events list was ``SCAN events | USE TEMP B-TREE FOR ORDER BY`` and the
replay's markers walked the camera's whole history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.dbgrowth import YEAR_START, fill, measure
from storage.db import Database

DAYS, HOURS, SEG_S, EVENTS = 365, 0.03, 10.0, 8


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("dbgrowth") / "evalwatch.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    counts = fill(db, 2, DAYS, HOURS, SEG_S, EVENTS)
    assert counts == {"segments": 2 * DAYS * int(HOURS * 3600 // SEG_S), "events": 2 * DAYS * EVENTS}
    yield db
    db.dispose()


def test_every_dashboard_query_on_a_year_of_rows_uses_an_index(year: Database) -> None:
    end = YEAR_START + timedelta(days=DAYS - 1, hours=8 + HOURS)
    res = measure(year, end, repeat=3)
    for name, q in res.items():
        plan = " | ".join(q["plan"])
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, f"{name}: {plan}"
        assert "SCAN events |" not in plan and plan != "SCAN events", f"{name}: {plan}"
        if "open" not in name:  # the open alerts: a few rows found by status, then sorted
            assert "TEMP B-TREE" not in plan, f"{name}: {plan}"
        # loaded 2-core machine: the slowest was ~15 ms; a full scan + sort of the year is ~10x
        assert q["ms_median"] < 250, f"{name}: {q['ms_median']} ms ({plan})"
    assert res["events list, newest 200"]["rows"] == 200
    assert res["replay index: segments of one camera, 1 hour"]["rows"] == int(HOURS * 3600 // SEG_S)
    assert res["replay index: events that ended, 1 hour"]["rows"] >= 1


def test_replay_markers_are_the_events_overlapping_the_range(year: Database) -> None:
    """The two-range query returns what the old single statement did (ended after start or
    still open, begun before end), oldest first."""
    from sqlalchemy import select

    from dashboard.routes.replay import replay_events
    from storage.common import as_utc
    from storage.models import EventRow

    end = YEAR_START + timedelta(days=200, hours=8 + HOURS)
    start = end - timedelta(hours=3)
    with year.session() as s:
        ev = s.scalars(select(EventRow).where(EventRow.site == "s01").limit(1)).one()
        ev.ended_at, ev.started_at = None, start - timedelta(days=30)  # open for a month
        s.commit()
        got = replay_events(s, "s01", "room_a", "cam1", start, end)
        cam = select(EventRow).where(EventRow.site == "s01", EventRow.room == "room_a")
        want = [e for e in s.scalars(cam)
                if as_utc(e.started_at) < end and (e.ended_at is None or as_utc(e.ended_at) > start)]
    assert [e.id for e in got] == [e.id for e in sorted(want, key=lambda e: (as_utc(e.started_at), e.id))]
    assert ev.id in [e.id for e in got] and len(got) > 1


def test_dbgrowth_bench_reports_bytes_per_camera_day(tmp_path: Path) -> None:
    import json

    from bench import dbgrowth

    out = tmp_path / "r.json"
    assert dbgrowth.main(["--cameras", "1", "--days", "3", "--hours", "0.5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["segments"] == 3 * 180 and res["events"] == 3 * 40
    assert res["bytes_per_camera_day"] > 0 and res["queries"]
    with pytest.raises(SystemExit) as e:
        dbgrowth.main(["--cameras", "0"])
    assert e.value.code == 2


def test_audit_log_queries_on_a_year_of_rows(tmp_path: Path) -> None:
    """``GET /api/audit``'s statement on 60,000 rows over a year: each filter finds what it should
    (newest first), pages continue below the last id, and none takes long."""
    from bench.dbgrowth import audit_queries, fill_audit

    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    db.upgrade()
    try:
        assert fill_audit(db, 60_000, DAYS, 2) == 60_000
        end = YEAR_START + timedelta(days=DAYS)
        res = measure(db, end, 3, audit_queries(end, 60_000))
        for name, q in res.items():
            assert q["ms_median"] < 250, f"{name}: {q['ms_median']} ms ({q['plan']})"
        assert res["audit log, newest 200"]["rows"] == 200
        assert res["audit log, a target nothing matches"]["rows"] == 0
        per_day = 60_000 // DAYS  # rows are evenly spaced: a day holds per_day or per_day + 1
        assert per_day <= res["audit log, one day"]["rows"] <= per_day + 1
        from dashboard.routes.admin import audit_query
        from storage.common import as_utc

        with db.session() as s:
            cam = list(s.scalars(audit_query(target="s01/room_a/cam1", limit=50)))
            assert len(cam) == 50 and all(a.target == "s01/room_a/cam1" for a in cam)
            assert [a.id for a in cam] == sorted((a.id for a in cam), reverse=True)
            below = list(s.scalars(audit_query(target="s01/room_a/cam1", before_id=cam[-1].id, limit=50)))
            assert below and max(a.id for a in below) < cam[-1].id
            day = list(s.scalars(audit_query(since=end - timedelta(days=1), until=end, limit=10_000)))
            assert per_day <= len(day) <= per_day + 1
            assert all(end - timedelta(days=1) <= as_utc(a.at) < end for a in day)
    finally:
        db.dispose()
