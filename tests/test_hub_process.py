"""The hub as a process (issue #17): it stops promptly and cleanly with a dashboard's WebSocket
and an agent's long poll open, and its embedded SeaweedFS never outlives it — not even when the
hub is killed with SIGKILL (before, the S3 server kept running with its ports and data dir after
the hub was gone)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from testkit.hub import start_hub_process, system_config
from testkit.procs import children, command, still_alive_after

TOKEN = "tok-hub-process-0123456789"


def _start(tmp: Path, *, default_s3_grace: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    doc = system_config(tmp, {"s01": ["room_a"]}, users=[{"username": "sup", "role": "supervisor",
                                                          "password": "sup-process-pw-1"}])
    doc["sites"][0]["agent_token"] = TOKEN
    if default_s3_grace:  # the hub's own default, not the tests' short one
        del doc["storage"]["s3"]["embedded_server"]["stop_grace_s"]
    cfg = tmp / "evalwatch.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return start_hub_process(cfg, cwd=tmp, ready_timeout=150)  # a loaded machine: OpenVINO compiles slowly


def _weed_of(hub: int) -> int:
    weeds = [p for p in children(hub) if "weed" in command(p).split(" ")[0]]
    assert len(weeds) == 1, [command(p) for p in children(hub)]
    return weeds[0]


def _gone_within(pid: int, seconds: float) -> bool:
    return not still_alive_after([pid], seconds)


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


def test_hub_stops_cleanly_with_a_websocket_and_a_long_poll_open(tmp_path: Path) -> None:
    """A SIGTERM with a dashboard's alert WebSocket and an agent's session long poll open: both
    end when the stop begins (the WebSocket closed with 1012, the poll answered 200 with the
    version the agent had) instead of holding the web server's graceful stop until
    ``hub.shutdown_grace_s`` cancels them; then the embedded SeaweedFS exits by itself (exit 0,
    not SIGKILL) with the hub's default ``storage.s3.embedded_server.stop_grace_s``."""
    hub, url = _start(tmp_path, default_s3_grace=True)
    weed = _weed_of(hub.pid)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.get(f"{url}/api/ingest/sessions", params={"site": "s01"}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    with httpx.Client(base_url=url) as c:
        r = c.post("/api/auth/login", json={"username": "sup", "password": "sup-process-pw-1"})
        assert r.status_code == 200, r.text
        cookie = f"evalwatch_session={c.cookies['evalwatch_session']}"

    ended: dict[str, tuple[float, object]] = {}

    def long_poll() -> None:  # the agent's sessions poll: the hub holds it up to 25 s
        try:
            r = httpx.get(f"{url}/api/ingest/sessions", params={"site": "s01", "after": version},
                          headers=auth, timeout=60)
            ended["poll"] = (time.monotonic(), (r.status_code, r.json().get("version")))
        except (httpx.HTTPError, ValueError) as e:
            ended["poll"] = (time.monotonic(), e)

    sockets = contextlib.ExitStack()
    ws = sockets.enter_context(ws_connect(f"ws://{url.removeprefix('http://')}/ws/events",
                                          additional_headers={"Cookie": cookie}, origin=Origin(url),
                                          open_timeout=10))
    assert json.loads(ws.recv(timeout=10))["type"] == "hello"

    def watch() -> None:  # a dashboard tab: reads until the hub closes the socket
        try:
            while True:
                ws.recv()
        except ConnectionClosed as e:
            ended["ws"] = (time.monotonic(), e.rcvd.code if e.rcvd else None)

    threads = [threading.Thread(target=long_poll, daemon=True), threading.Thread(target=watch, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert not ended, ended  # both are open and waiting
    try:
        t0 = time.monotonic()
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)
        took = time.monotonic() - t0
        log = (tmp_path / "hub.log").read_text(errors="replace")
        # 0: the hub ran its clean-up; a re-raised SIGTERM (uvicorn's) skipped it (-15).
        assert hub.returncode == 0, (hub.returncode, log[-3000:])
        for t in threads:
            t.join(5)
        poll_at, poll = ended["poll"]
        ws_at, ws_code = ended["ws"]
        assert poll == (200, version), poll
        assert ws_code == 1012, ws_code  # "service restart": the dashboard reconnects
        # Well before hub.shutdown_grace_s (5 s) would have cancelled them.
        assert poll_at - t0 < 2.5 and ws_at - t0 < 2.5, (poll_at - t0, ws_at - t0)
        assert "timeout graceful shutdown exceeded" not in log, log[-3000:]
        assert re.search(r"SeaweedFS stopped s3=\S+ code=0", log), log[-3000:]  # not SIGKILLed
        assert took < 5 + 20 + 5, f"hub took {took:.1f} s to stop"
        assert _gone_within(weed, 5)
    finally:
        sockets.close()
        if hub.poll() is None:
            hub.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(weed, signal.SIGKILL)
