"""`evalwatch run` end to end, as an operator uses it: start, log in, see footage and alerts, Ctrl-C.

Real everything: SeaweedFS, the hub process, agents streaming sample clips over aiortc, SQLite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from minio import Minio
from minio.error import S3Error

from testkit.hub import write_system_config


def write_config(tmp: Path, rooms: dict[str, list[str]], database_url: str | None = None) -> Path:
    return write_system_config(
        tmp, rooms, database_url=database_url, rules={"seat_empty_seconds": 5},
        users=[{"username": "sup", "role": "supervisor"}, {"username": "obs", "role": "observer"}],
    )


@pytest.mark.timeout(240)
def test_run_brings_up_the_system_and_stops_cleanly(tmp_path: Path, db_url: str) -> None:
    """On SQLite (the default) and on a real PostgreSQL given by URL."""
    cfg_path = write_config(tmp_path, {"s01": ["room_a"], "s02": ["room_c"]}, database_url=db_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalwatch", "run", "--config", str(cfg_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        start_new_session=True,
    )
    out_lines: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out_lines.append(line)
            if m := re.search(r"dashboard:\s+(http://\S+)/", line):
                url = m.group(1)
        assert url, "no dashboard URL printed:\n" + "".join(out_lines)
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
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
        out_lines.append(rest or "")
    assert proc.returncode == 0, "".join(out_lines)
    # Nothing left behind: no process of the session is still alive.
    time.sleep(1)
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(cfg_path) not in ps, ps
    assert str(tmp_path / "data" / "seaweedfs") not in ps, ps


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _start_run(cfg_path: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "evalwatch", "run", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"dashboard:\s+(http://\S+)/", line):
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("no dashboard URL printed:\n" + "".join(lines))


@pytest.mark.timeout(240)
def test_run_killed_with_sigkill_leaves_nothing_and_starts_again(tmp_path: Path) -> None:
    """SIGKILL of ``evalwatch run`` (issue #17): its hub and agents get SIGTERM from the kernel
    (parent-death signal) and stop, its SeaweedFS is killed; nothing keeps a port or the data
    dir, and the demo starts again on the same config."""
    cfg_path = write_config(tmp_path, {"s01": ["room_a"]})
    proc, url = _start_run(cfg_path, tmp_path)
    below: list[int] = []
    try:
        below = _descendants(proc.pid)
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode() for p in below}
        assert any(" hub " in n for n in names.values()) and any(" agent " in n for n in names.values()) \
            and any("weed" in n.split(" ")[0] for n in names.values()), names
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30
        while (left := [p for p in below if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"left running after the demo was killed: {[names[p] for p in left]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in below:  # whatever outlived it (the old code: the hub and the agents)
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    again, url2 = _start_run(cfg_path, tmp_path)
    try:
        assert url2 == url
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        os.killpg(again.pid, signal.SIGINT)
        try:
            again.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(again.pid, signal.SIGKILL)
            again.communicate()
    assert again.returncode == 0
