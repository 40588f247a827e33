"""``bench/ingest.py --hubs 1,2`` (issue #14's done-when item) end to end, small: 2 simulated
cameras into 1 hub node, then into 2, on the bench's own PostgreSQL and SeaweedFS S3.  The
lease table splits the sites 1/1, an agent pointed at the wrong node follows the 421 to its
holder, both nodes archive, nothing is lost or duplicated, and the table and ``--json`` carry
the 2-hub / 1-hub ratio.

The first test is marked ``slow`` (2-4 minutes here: it pre-encodes 60 s of video and runs two 10 s windows):
``.venv/bin/pytest tests/test_bench_ingest_hubs.py -m slow -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.scaleout
@pytest.mark.timeout(900)
def test_two_hubs_archive_every_stream_side_by_side_with_one(tmp_path: Path) -> None:
    out = tmp_path / "hubs.json"
    r = subprocess.run(
        [sys.executable, "bench/ingest.py", "--streams", "2", "--window", "10", "--hubs", "1,2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=880,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    rows = json.loads(out.read_text())
    assert [(x["streams"], x["hubs"]) for x in rows] == [(2, 1), (2, 2)]
    one, two = rows
    for x in rows:
        assert x["segments_produced"] >= 2 and x["segments_lost"] == 0 and x["segments_duplicated"] == 0
        assert x["streams_archived_0_lost"] == 2
        assert len(x["hub_cpu_pct_each"]) == x["hubs"] and x["hub_cpu_pct"] > 0
    assert one["sites_per_hub"] == {"hub-0": 2}
    assert two["sites_per_hub"] == {"hub-0": 1, "hub-1": 1}
    assert set(two["rows_per_node"]) == {"hub-0", "hub-1"}  # both nodes archived
    assert two["hub_switches"] >= 1  # the agent of hub-1's site started at hub-0 and followed the 421
    assert "| 2 | 2 |" in r.stdout and "x |" in r.stdout and "segments lost over all runs: 0" in r.stdout


def test_hubs_option_is_checked() -> None:
    r = subprocess.run([sys.executable, "bench/ingest.py", "--hubs", "0,2"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "--hubs '0,2': each node count must be 1..8" in r.stderr
