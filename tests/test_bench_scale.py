"""Smoke run of ``bench/scale.py`` (issue 11 item 4): the real hub, headless Chromium, 2 simulated
edge agents and the real edge agent on 1 camera, 10 s windows.  About 2-3 minutes (two hubs
start, the clips are analysed once on a cold cache), hence ``slow``: run it with
``pytest -m slow tests/test_bench_scale.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs /usr/bin/chromium"),
]


@pytest.mark.timeout(900)
def test_scale_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--cameras", "2", "--agent-cameras", "1",
         "--seconds", "10", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["cameras"], r["mode"]) for r in runs] == [(2, "simulated"), (1, "edge agent")]
    for r in runs:
        assert not r.get("error"), r
        for k in ("cameras", "hub_cpu_pct", "lost_segments", "alert_p95_s", "seat_check_interval_s",
                  "agent_cpu_pct_per_camera"):
            assert k in r
        assert r["hub_cpu_pct"] > 0
        assert r["lost_segments"] == 0, r
        assert r["segments_produced"] > 0
    sim, agent = runs
    assert sim["seat_check_interval_s"] is None and sim["agent_cpu_pct_per_camera"] is None
    assert agent["seat_check_interval_s"] is not None and agent["agent_cpu_pct_per_camera"] > 0
    assert "loadavg_before" in sim and sim["cpus"] == os.cpu_count()
