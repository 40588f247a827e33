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
    gaps = got.pop("gaps")
    assert got == {"segments": 18, "lost_segments": 2 + 5, "events": 2}  # s03 stored nothing for 60 s
    # where: s01's two windows after 10:00:30, s03 never stored anything
    after = (t0 + timedelta(seconds=30)).isoformat()
    assert gaps == [{"camera": "s01/r/c", "after": after, "missing_s": 20.0},
                    {"camera": "s03/r/c", "after": None, "missing_s": None}]


def test_log_findings_names_the_lines_about_lost_segments(tmp_path: Path) -> None:
    (tmp_path / "farm-0.log").write_text(
        "agent starting site=s01\n"
        "12:00Z level=ERROR logger=capture.agent hub rejected segment site=s01 room=r camera=c "
        "start=x: HTTP 409 (kept aside)\n"
        "segment upload failed site=s01: ConnectError (3 pending, retry in 1.0s)\n", encoding="utf-8")
    (tmp_path / "hub.log").write_text("all fine\n", encoding="utf-8")
    got = soak.log_findings(tmp_path)
    assert list(got) == ["farm-0.log"]
    assert got["farm-0.log"]["counts"] == {"hub rejected segment": 1, "level=ERROR": 1}
    assert "HTTP 409" in got["farm-0.log"]["first"][0]


def test_bad_arguments_exit_2() -> None:
    for argv in (["--cameras", "0"], ["--minutes", "5", "--warmup", "5"], ["--hub-env", "NOEQUALS"],
                 ["--hub-config", "hub.malloc_trim_seconds"]):
        with pytest.raises(SystemExit) as e:
            soak.main(argv)
        assert e.value.code == 2


SMAPS = """\
55d0c0000000-55d0c0400000 rw-p 00000000 00:00 0                          [heap]
Rss:                4096 kB
Anonymous:          4096 kB
7f1c00000000-7f1c02000000 rw-p 00000000 00:00 0
Rss:               30720 kB
7f1c02000000-7f1c04000000 ---p 00000000 00:00 0
Rss:                   0 kB
7f1c10000000-7f1c10800000 rw-p 00000000 00:00 0
Rss:                2048 kB
7f1c20000000-7f1c20100000 r-xp 00000000 08:01 123   /usr/lib/x86_64-linux-gnu/libavcodec.so.59.37.100
Rss:                1536 kB
7f1c20100000-7f1c20200000 rw-p 00100000 08:01 123   /usr/lib/x86_64-linux-gnu/libavcodec.so.59.37.100
Rss:                 512 kB
7f1c30000000-7f1c30100000 r--s 00000000 08:01 124   /data/model.bin
Rss:                1024 kB
7ffd00000000-7ffd00100000 rw-p 00000000 00:00 0                          [stack]
Rss:                 128 kB
VmFlags: rd wr mr mw me gd ac
"""


def test_smaps_groups_tell_arenas_heap_libraries_and_files_apart() -> None:
    g = soak.smaps_groups(soak.parse_smaps(SMAPS))
    # the 64 MiB-aligned rw-p + ---p pair filling 64 MiB is a glibc thread arena; the 8 MiB
    # mapping at an aligned address that is not followed by its reservation is not
    assert (g["heap"], g["anon_arena"], g["anon_other"]) == (4.0, 30.0, 2.0)
    assert (g["libs"], g["files"], g["other"]) == (2.0, 1.0, 0.12)
    assert g["lib"] == {"libavcodec.so.59": 2.0} and g["arenas"] == 1 and g["anon_maps"] == 3


def test_a_live_process_arena_growth_is_seen() -> None:
    """A real process whose thread mallocs 64 MB: its ``/proc/PID/smaps`` shows it in the arenas."""
    code = (
        "import ctypes, sys, threading\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
        "keep = []\n"
        "def work():\n"
        "    for _ in range(64_000):\n"
        "        p = libc.malloc(1000); ctypes.memset(p, 1, 1000); keep.append(p)\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        g = soak.smaps_sample(p.pid)
        assert g is not None
        assert g["anon_arena"] >= 55 and g["arenas"] >= 1, g
        assert "libc.so.6" in g["lib"] or g["libs"] > 0
    finally:
        p.kill()
        p.wait()
    assert soak.smaps_sample(p.pid) is None


def test_smaps_summary_names_the_growing_group() -> None:
    def sample(t: float, arena: float) -> dict[str, object]:
        g = {"heap": 10.0, "anon_arena": arena, "anon_other": 5.0, "libs": 200.0, "files": 0.0,
             "other": 0.1, "anon_maps": 10, "arenas": 4, "lib": {"libx.so.1": 2.0}}
        return {"t_min": t, "hub_smaps": g}

    slopes, ends = soak.smaps_summary([sample(t, 100 + 2 * t) for t in range(4, 12)], "hub_smaps")
    assert slopes["anon_arena"] == 2.0 and slopes["heap"] == 0.0 and "lib:libx.so.1" not in slopes
    assert ends["anon_arena"] == [108.0, 122.0]


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
    assert set(d["hub_smaps_slope_mb_per_min"]) >= set(soak.SMAPS_GROUPS), d
    assert d["hub_cpu_s_per_min"] > 0
    assert res["hub_rss_slope_mb_per_min"] <= float(os.environ.get("SOAK_MAX_SLOPE", "0.5")), d["samples"]


@pytest.mark.timeout(300)
def test_ctrl_c_ends_the_soak_early_and_it_still_reports(tmp_path: Path) -> None:
    """A user who stops a long soak with Ctrl-C (SIGINT to the terminal's process group) gets
    the report of what was sampled — JSON and table — and nothing left running, not a
    traceback.  1 camera, a 30-minute run stopped after a few samples."""
    import signal

    out = tmp_path / "soak.json"
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--cameras", "1", "--minutes", "30",
         "--warmup", "0", "--interval", "2", "--json", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if "t=" in line and " min hub rss " in line and sum(" min hub rss " in x for x in lines) >= 6:
                break
        else:
            pytest.fail("the soak never sampled:\n" + "".join(lines[-40:]))
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, _ = p.communicate(timeout=200)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    text = "".join(lines) + rest
    assert p.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "stopped by Ctrl-C at" in text, text[-3000:]
    res = json.loads(out.read_text())
    d = res["detail"]
    assert 0 < d["stopped_early_at_min"] < 5 and len(d["samples"]) >= 3
    assert res["orphans"] == [], res["orphans"]
    assert d["cameras_online"] == 1 and res["lost_segments"] is not None, d
    assert res["hub_rss_slope_mb_per_min"] is not None
    halves = d["hub_rss_slope_halves_mb_per_min"]
    assert set(halves) == {"split_min", "first", "second"} and halves["first"] is not None


async def test_hub_gauges_reads_sqlite_memory_from_metrics() -> None:
    """The soak's per-sample gauge: SQLite's heap in MB, from the scraper's view of /metrics."""
    import httpx

    def handler(req: httpx.Request) -> httpx.Response:
        if req.headers.get("authorization") != "Bearer tok":
            return httpx.Response(401)
        return httpx.Response(200, text="# HELP x\nprocess_resident_memory_bytes 6.5e+08\n"
                                        "evalwatch_sqlite_memory_bytes 1.2582912e+07\n")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://hub") as c:
        assert await soak.hub_gauges(c, "tok") == {"sqlite_mb": 12.0}
        with pytest.raises(httpx.HTTPStatusError):
            await soak.hub_gauges(c, "wrong")
