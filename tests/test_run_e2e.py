"""`evalwatch run` end to end, as an operator uses it: start, log in, see footage and alerts, Ctrl-C.

Real everything: SeaweedFS, the hub process, agents streaming sample clips over aiortc, SQLite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from minio import Minio
from minio.error import S3Error

from testkit.hub import start_run_process, stop_run_process, write_system_config
from testkit.procs import alive, command, descendants, still_alive_after


def write_config(tmp: Path, rooms: dict[str, list[str]], database_url: str | None = None) -> Path:
    return write_system_config(
        tmp, rooms, database_url=database_url, rules={"seat_empty_seconds": 5},
        users=[{"username": "sup", "role": "supervisor"}, {"username": "obs", "role": "observer"}],
    )


@pytest.mark.timeout(240)
def test_run_brings_up_the_system_and_stops_cleanly(tmp_path: Path, db_url: str) -> None:
    """On SQLite (the default) and on a real PostgreSQL given by URL."""
    cfg_path = write_config(tmp_path, {"s01": ["room_a"], "s02": ["room_c"]}, database_url=db_url)
    proc, url, out_lines = start_run_process(cfg_path, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        # The banner lists the demo logins; grab the supervisor's.
        while not any(re.search(r"supervisor\s+sup\s+\S+", ln) for ln in out_lines):
            out_lines.append(proc.stdout.readline())
        sup_pw = next(
            re.search(r"supervisor\s+sup\s+(\S+)", ln).group(1)  # type: ignore[union-attr]
            for ln in out_lines if re.search(r"supervisor\s+sup\s+\S+", ln)
        )

        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        client = httpx.Client(base_url=url, timeout=10)
        r = client.post("/api/auth/login", json={"username": "sup", "password": "wrong"})
        assert r.status_code == 401
        r = client.post("/api/auth/login", json={"username": "sup", "password": sup_pw})
        assert r.status_code == 200, r.text

        # Agents stream, segments land in S3, the sample incidents raise alerts.
        secrets = yaml.safe_load((tmp_path / "data" / "secrets.yaml").read_text())
        cfg = yaml.safe_load(cfg_path.read_text())
        s3 = Minio(cfg["storage"]["s3"]["endpoint"], access_key=secrets["s3.access_key"],
                   secret_key=secrets["s3.secret_key"], secure=False)
        seen_cameras: set[str] = set()
        events: list[dict[str, object]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(seen_cameras) < 2 or not events):
            objs = s3.list_objects("evalwatch-segments", recursive=True)
            seen_cameras = {"/".join(o.object_name.split("/")[:3]) for o in objs
                            if o.object_name.endswith(".mp4")}
            r = client.get("/api/events")
            assert r.status_code == 200, r.text
            body = r.json()
            events = body["items"]
            time.sleep(2)
        assert seen_cameras == {"s01/room-a/cam1", "s02/room-c/cam1"}
        # Footage is write-once: a stored version cannot be deleted during retention.
        seg = next(o for o in s3.list_objects("evalwatch-segments", recursive=True, include_version=True)
                   if o.object_name.endswith(".mp4"))
        assert seg.version_id, "segments bucket is not versioned (no object lock)"
        with pytest.raises(S3Error) as refused:
            s3.remove_object("evalwatch-segments", seg.object_name, version_id=seg.version_id)
        assert refused.value.code == "AccessDenied"
        assert events, "no alert raised while playing clips with scripted incidents"
        # Prometheus sees the cameras and the analysis at work (metrics token from the secret key).
        from dashboard.security import metrics_token

        tok = metrics_token(secrets["hub.secret_key"])
        text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {tok}"}, timeout=10).text
        metric = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
                  if ln and not ln.startswith("#")}
        assert metric['evalwatch_camera_online{camera="cam1",room="room-a",site="s01"}'] == 1.0
        assert metric["evalwatch_analysis_frames_total"] > 0
        assert 0 < metric["evalwatch_analysis_rate_per_camera"] <= 2.0
        assert 0 < metric["evalwatch_analysis_frame_cost_seconds"] < 5
        assert proc.poll() is None, "evalwatch run exited early"
    finally:
        out_lines.append(stop_run_process(proc))  # what Ctrl-C in the terminal does
    assert proc.returncode == 0, "".join(out_lines)
    # Nothing left behind: no process of the session is still alive.
    time.sleep(1)
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(cfg_path) not in ps, ps
    assert str(tmp_path / "data" / "seaweedfs") not in ps, ps


@pytest.mark.timeout(240)
def test_run_killed_with_sigkill_leaves_nothing_and_starts_again(tmp_path: Path) -> None:
    """SIGKILL of ``evalwatch run`` (issue #17): its hub and agents get SIGTERM from the kernel
    (parent-death signal) and stop, its SeaweedFS is killed; nothing keeps a port or the data
    dir, and the demo starts again on the same config."""
    cfg_path = write_config(tmp_path, {"s01": ["room_a"]})
    proc, url, _ = start_run_process(cfg_path, cwd=tmp_path)
    below: list[int] = []
    try:
        below = descendants(proc.pid)
        names = {p: command(p) for p in below}
        assert any(" hub " in n for n in names.values()) and any(" agent " in n for n in names.values()) \
            and any("weed" in n.split(" ")[0] for n in names.values()), names
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        left = still_alive_after(below, 30)
        assert not left, f"left running after the demo was killed: {[names[p] for p in left]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in below:  # whatever outlived it (the old code: the hub and the agents)
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    again, url2, _ = start_run_process(cfg_path, cwd=tmp_path)
    try:
        assert url2 == url
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        out = stop_run_process(again)
    assert again.returncode == 0, out[-3000:]
