"""The hub as a process (issue #17): it stops promptly with an agent's long poll open, and its
embedded SeaweedFS never outlives it — not even when the hub is killed with SIGKILL (before, the
S3 server kept running with its ports and data dir after the hub was gone)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from testkit.hub import system_config

TOKEN = "tok-hub-process-0123456789"


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    doc = system_config(tmp, {"s01": ["room_a"]}, users=[{"username": "sup", "role": "supervisor",
                                                          "password": "sup-process-pw-1"}])
    doc["sites"][0]["agent_token"] = TOKEN
    cfg = tmp / "evalwatch.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    url = f"http://127.0.0.1:{doc['hub']['listen_port']}"
    with open(tmp / "hub.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg)],
                                cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, (tmp / "hub.log").read_text(errors="replace")[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        assert time.monotonic() < deadline, "hub did not come up"
        time.sleep(0.3)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _weed_of(hub: int) -> int:
    weeds = [p for p in _children(hub)
             if "weed" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")]
    assert len(weeds) == 1, _children(hub)
    return weeds[0]


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def test_hub_killed_takes_its_s3_server_along(tmp_path: Path) -> None:
    hub, _url = _start(tmp_path)
    weed = _weed_of(hub.pid)
    try:
        hub.send_signal(signal.SIGKILL)
        hub.wait(10)
        assert _gone_within(weed, 10), "the embedded SeaweedFS outlived the hub"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(weed, signal.SIGKILL)


def test_hub_stops_promptly_with_an_agent_long_poll_open(tmp_path: Path) -> None:
    hub, url = _start(tmp_path)
    weed = _weed_of(hub.pid)
    answered: list[object] = []

    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.get(f"{url}/api/ingest/sessions", params={"site": "s01"}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    version = r.json()["version"]

    def long_poll() -> None:  # the agent's sessions poll: the hub holds it up to 25 s
        try:
            r = httpx.get(f"{url}/api/ingest/sessions", params={"site": "s01", "after": version},
                          headers=auth, timeout=60)
            answered.append(r.status_code)
        except httpx.HTTPError as e:
            answered.append(e)

    t = threading.Thread(target=long_poll, daemon=True)
    t.start()
    time.sleep(1.0)
    assert t.is_alive() and not answered  # the poll is waiting
    try:
        t0 = time.monotonic()
        hub.send_signal(signal.SIGTERM)
        hub.wait(20)
        took = time.monotonic() - t0
        log = (tmp_path / "hub.log").read_text(errors="replace")
        assert hub.returncode in (0, -signal.SIGTERM), log[-3000:]
        assert took < 15, f"hub took {took:.1f} s to stop"
        assert _gone_within(weed, 5)
    finally:
        if hub.poll() is None:
            hub.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(weed, signal.SIGKILL)
