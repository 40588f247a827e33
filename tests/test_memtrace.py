"""``evalwatch hub --trace-memory`` / ``EVALWATCH_TRACE_MEMORY`` (issue #17): the tracer names the
allocation site and subsystem that grew between reports, and bad values are a clear error."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import pytest

from evalwatch import memtrace


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
