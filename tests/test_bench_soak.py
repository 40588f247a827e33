"""``bench/soak.py`` (issue #17 item 6).  The 10-minute run is ``slow``:
``pytest -m slow tests/test_bench_soak.py`` (about 13 minutes with start and stop); the slope,
lost-segment and orphan arithmetic runs in the default suite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import soak

ROOT = Path(__file__).resolve().parent.parent


def test_slope_is_the_least_squares_fit() -> None:
    assert soak.slope([0, 1, 2, 3], [10, 12, 14, 16]) == pytest.approx(2.0)
    assert soak.slope([0, 1, 2, 3], [10, 13, 13, 16]) == pytest.approx(1.8)  # noise fitted, not end-start
    assert soak.slope([1], [5]) is None and soak.slope([2, 2], [1, 3]) is None


def test_lost_segments_counts_the_gaps_of_each_camera(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE segments (site, room, camera, start, end)")
    con.execute("CREATE TABLE events (id)")
    t0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    rows = [("s01", "r", "c", t0 + timedelta(seconds=10 * i), t0 + timedelta(seconds=10 * i + 10))
            for i in range(10) if i not in (3, 4)]  # two windows missing
    rows += [("s02", "r", "c", t0 + timedelta(seconds=10 * i), t0 + timedelta(seconds=10 * i + 10))
             for i in range(10)]
    con.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?)",
                    [(a, b, c, s.isoformat(sep=" "), e.isoformat(sep=" ")) for a, b, c, s, e in rows])
    con.executemany("INSERT INTO events VALUES (?)", [(1,), (2,)])
    con.commit()
    con.close()
    got = soak.archive_counts(db, 10.0, ["s01/r/c", "s02/r/c", "s03/r/c"], time.time() - 60)
    assert got == {"segments": 18, "lost_segments": 2 + 5, "events": 2}  # s03 stored nothing for 60 s


def test_bad_arguments_exit_2() -> None:
    for argv in (["--cameras", "0"], ["--minutes", "5", "--warmup", "5"], ["--hub-env", "NOEQUALS"]):
        with pytest.raises(SystemExit) as e:
            soak.main(argv)
        assert e.value.code == 2


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_soak_ten_minutes(tmp_path: Path) -> None:
    """4 cameras, analysis on, 10 minutes (slope after a 4-minute warm-up): nothing lost, no
    process left, file descriptors flat, memory slope under ``SOAK_MAX_SLOPE`` MB/min."""
    out = tmp_path / "soak.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--cameras", "4", "--minutes", "10",
         "--warmup", "4", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1450,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res) >= {"minutes", "cameras", "hub_rss_slope_mb_per_min", "hub_fds_end", "lost_segments",
                        "orphans"}
    d = res["detail"]
    assert (res["minutes"], res["cameras"]) == (10, 4) and d["cameras_online"] == 4
    assert res["lost_segments"] == 0, d
    assert res["orphans"] == [], res["orphans"]
    assert d["segments"] > 0 and d["samples_after_warmup"] >= 10
    assert res["hub_fds_end"] <= d["hub_fds_start"] + 20, d["samples"]
    assert res["hub_rss_slope_mb_per_min"] <= float(os.environ.get("SOAK_MAX_SLOPE", "0.5")), d["samples"]
