"""``evalwatch hub --trace-memory`` / ``EVALWATCH_TRACE_MEMORY`` (issue #17): the tracer names the
allocation site and subsystem that grew between reports, and bad values are a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from evalwatch import memtrace

ROOT = Path(__file__).resolve().parent.parent


def test_report_names_the_growing_site_and_its_subsystem() -> None:
    was_tracing = tracemalloc.is_tracing()
    tracer = memtrace.MemoryTracer(3600, warmup=3600)
    tracer.start()
    try:
        tracer.baseline = tracer.previous = memtrace._sizes()
        kept = [bytearray(4096) for _ in range(512)]  # 2 MiB allocated on the next line of code
        lines = tracer.report()
    finally:
        tracer.stop()
        if not was_tracing:
            tracemalloc.stop()
    top = next(ln for ln in lines if ln.startswith("memtrace top=1 "))
    assert f"{__file__}:" in top and "growth_kib=20" in top, top  # >= 2000 KiB from this file
    assert len(kept) == 512
    assert memtrace.subsystem("/x/capture/recorder.py") == "recorder"
    assert memtrace.subsystem("/venv/site-packages/aiortc/rtcrtpreceiver.py") == "aiortc"
    assert memtrace.subsystem("/x/analysis/store.py") == "event store"
    assert memtrace.subsystem("/x/dashboard/alerts.py") == "alert hub"
    assert memtrace.subsystem("/somewhere/else.py") == "other"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALWATCH_TRACE_MEMORY", "soon")
    with pytest.raises(ValueError, match="EVALWATCH_TRACE_MEMORY must be minutes"):
        memtrace.from_env()
    with pytest.raises(ValueError, match="must be > 0 minutes"):
        memtrace.from_env(0)
    monkeypatch.delenv("EVALWATCH_TRACE_MEMORY")
    assert memtrace.from_env() is None


def test_hub_cli_exits_2_on_a_bad_trace_memory_value(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sites: []\n", encoding="utf-8")
    argv = [sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg), "--trace-memory", "-1"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "must be > 0 minutes" in r.stderr and "Traceback" not in r.stderr


GROWER = """
import sqlite3, time, tracemalloc
from evalwatch import memtrace
cap = memtrace.capture_from_env()
db = sqlite3.connect(":memory:")
db.execute("PRAGMA cache_size=-200000")
db.execute("create table t (b blob)"); tracemalloc.start()
time.sleep(1.5)
for _ in range(12):
    db.executemany("insert into t values (randomblob(4000))", [()] * 250)  # SQLITE GROWS HERE
    time.sleep(0.25)
time.sleep(1.5)
print("traced", tracemalloc.get_traced_memory()[0])
cap.stop()
"""


def test_memray_capture_names_the_native_growth_tracemalloc_cannot_see(tmp_path: Path) -> None:
    """``EVALWATCH_MEMRAY=FILE``: a process whose SQLite pages (native memory, outside tracemalloc)
    grow by ~12 MB writes a capture; ``bench/memgrowth.py`` reads it at two minutes and names the
    Python line that made SQLite grow, with about that many MB; live bytes and RSS rise together."""
    script = tmp_path / "grower.py"
    script.write_text(GROWER, encoding="utf-8")
    cap = tmp_path / "grow.bin"
    env = {**os.environ, "EVALWATCH_MEMRAY": str(cap), "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120,
                         capture_output=True, text=True)
    assert int(ran.stdout.split("traced ")[1]) < 1024 * 1024, ran.stdout  # tracemalloc: < 1 MB
    out = tmp_path / "grow.json"
    grow = str(ROOT / "bench" / "memgrowth.py")
    argv = [sys.executable, grow, str(cap), "--at", "0.01", "0.07", "--json", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text(encoding="utf-8"))
    site, (before, after) = next(iter(res["sites_mb"].items()))  # the site that grew most
    assert f"{script.name}:10" in site, site  # the executemany line
    assert 9 < after - before < 20, (before, after)
    assert res["live_mb"][1] - res["live_mb"][0] > 9 and res["rss_mb"][1] - res["rss_mb"][0] > 9, res
    assert "per subsystem" in r.stdout and "grower.py:10" in r.stdout


def test_memray_capture_refuses_a_file_that_exists(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sites: []\n", encoding="utf-8")
    old = tmp_path / "old.bin"
    old.write_bytes(b"x")
    argv = [sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "EVALWATCH_MEMRAY": str(old)})
    assert r.returncode == 2, r.stderr
    assert f"{old} exists already" in r.stderr and "Traceback" not in r.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "memgrowth.py"), str(old), "--at", "5", "1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "increasing order" in bad.stderr
