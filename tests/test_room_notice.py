"""Notices in the room (issue 15, item 5): a supervisor sends a notice to a room; the room PC's
agent — a real ``evalwatch agent`` process connected over real aiortc to a real ``evalwatch hub``
process — gets it over the WebRTC control channel, shows it full-screen on the room's display
(an Xvfb virtual display when Xvfb is installed) or, headless, reports that it could not; the
hub records the report in the room's notices and the audit log.  Agents without the control
channel get it in a heartbeat answer.  Bad requests are refused by name; roles are checked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from capture.hostos import has_display, tts_command
from storage.s3server import free_port
from testkit.capture import make_clip
from testkit.hub import ROOT, hub_process, stop_process, system_config

pytestmark = [pytest.mark.credit, pytest.mark.timeout(240)]

TOKEN = "tok-notice-site-0123456789"
PASSWORDS = {"adm": "adm-notice-pw-1", "sup": "sup-notice-pw-1", "obs": "obs-notice-pw-1"}


class Hub:
    def __init__(self, url: str, cfg_path: Path, tmp: Path) -> None:
        self.url, self.cfg_path, self.tmp = url, cfg_path, tmp

    def client(self, user: str) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=15)
        r = c.post("/api/auth/login", json={"username": user, "password": PASSWORDS[user]})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c

    def log(self) -> str:
        return (self.tmp / "hub.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("notice")
    clip = make_clip(tmp / "clip.mp4", seconds=4)
    users = [{"username": "adm", "role": "admin", "password": PASSWORDS["adm"]},
             {"username": "sup", "role": "supervisor", "password": PASSWORDS["sup"]},
             {"username": "obs", "role": "observer", "password": PASSWORDS["obs"]}]
    doc = system_config(tmp, {}, users=users)
    doc["capture"].update(heartbeat_seconds=1, reconnect_min_seconds=0.5, reconnect_max_seconds=2)
    room = yaml.safe_load((ROOT / "sample_videos" / "room_a.room.yaml").read_text(encoding="utf-8"))
    room["cameras"][0].update(source=str(clip), width=320, height=240)
    doc["sites"] = [{"id": "s01", "agent_token": TOKEN, "rooms": [room]}]
    cfg_path = tmp / "evalwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with hub_process(cfg_path, cwd=tmp, ready_timeout=120) as url:
        yield Hub(url, cfg_path, tmp)


@contextlib.contextmanager
def agent_process(hub: Hub, tmp: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with open(tmp / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "evalwatch", "agent", "--config", str(hub.cfg_path), "--site", "s01",
             "--no-analysis", "--duration", "120"],
            cwd=hub.tmp, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_live(hub: Hub, admin: httpx.Client, proc: subprocess.Popen[bytes], tmp: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp / "agent.log").read_text(errors="replace")[-3000:]
        cams = admin.get("/api/cameras/status").json()["cameras"]
        if cams and cams[0]["online"]:
            return
        assert time.monotonic() < deadline, f"camera never live\n{hub.log()}"
        time.sleep(0.5)


def wait_reported(sup: httpx.Client, notice_id: int, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = sup.get("/api/rooms/s01/room-a/notices")
        assert r.status_code == 200, r.text
        mine = next(n for n in r.json()["notices"] if n["id"] == notice_id)
        if mine["status"] != "pending":
            return dict(mine)
        assert time.monotonic() < deadline, f"notice {notice_id} never reported: {mine}"
        time.sleep(0.3)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, **extra}


def test_headless_agent_reports_the_notice_not_shown_and_the_hub_audits_it(hub: Hub, tmp_path: Path) -> None:
    admin, sup = hub.client("adm"), hub.client("sup")
    with agent_process(hub, tmp_path, _env()) as proc:
        wait_live(hub, admin, proc, tmp_path)
        r = sup.post("/api/rooms/s01/room-a/notices", json={"preset": "no_phone", "seconds": 5})
        assert r.status_code == 200, r.text
        sent = r.json()
        assert sent["text"] == "请勿使用手机" and sent["status"] == "pending" and sent["created_by"] == "sup"
        assert sent["control_sent"] is True  # the agent's evalwatch-control data channel was open
        got = wait_reported(sup, sent["id"])
    assert got["status"] == "not_shown" and "no display" in (got["reason"] or ""), got
    assert got["via"] == "control" and got["agent_host"] and got["shown_at"] is None
    log = (tmp_path / "agent.log").read_text(errors="replace")
    assert f"room notice id={sent['id']} site=s01 room=room-a via=control" in log
    assert "room notice not shown: no display" in log
    rows = admin.get("/api/audit", params={"action": "room_notice"}).json()["entries"]
    assert any(e["actor"] == "sup" and e["target"] == "s01/room-a" and e["details"]["notice"] == sent["id"]
               and e["details"]["text"] == "请勿使用手机" for e in rows), rows
    rows = admin.get("/api/audit", params={"action": "room_notice_shown"}).json()["entries"]
    mine = [e for e in rows if e["details"]["notice"] == sent["id"]]
    assert len(mine) == 1 and mine[0]["actor"] == "agent:s01" and mine[0]["details"]["shown"] is False, rows


@pytest.mark.skipif(shutil.which("Xvfb") is None,
                    reason="Xvfb is not installed (make system-deps installs it)")
def test_agent_with_a_display_shows_the_notice_full_screen(hub: Hub, tmp_path: Path) -> None:
    display = f":{free_port() % 500 + 100}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert xvfb.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        admin, sup = hub.client("adm"), hub.client("sup")
        with agent_process(hub, tmp_path, _env(DISPLAY=display)) as proc:
            wait_live(hub, admin, proc, tmp_path)
            t0 = time.time()
            body = {"text": "请保持安静，评标进行中", "seconds": 4}
            r = sup.post("/api/rooms/s01/room-a/notices", json=body)
            assert r.status_code == 200, r.text
            got = wait_reported(sup, r.json()["id"])
            assert got["status"] == "shown" and got["reason"] is None, got
            from datetime import datetime

            shown_at = datetime.fromisoformat(got["shown_at"]).timestamp()
            assert t0 - 1 <= shown_at <= time.time() + 1
            # the window is on the display now: a Tk client on the same display finds it
            probe = subprocess.run(
                [sys.executable, "-c", "import tkinter as tk; r = tk.Tk(); r.withdraw(); "
                 "print([r.tk.call('winfo', 'screenwidth', '.'), r.tk.call('winfo', 'screenheight', '.')])"],
                env=_env(DISPLAY=display), capture_output=True, text=True, timeout=20,
            )
            assert probe.returncode == 0 and "1280" in probe.stdout, probe.stderr
        rows = admin.get("/api/audit", params={"action": "room_notice_shown"}).json()["entries"]
        assert any(e["details"]["notice"] == got["id"] and e["details"]["shown"] is True for e in rows), rows
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def test_notice_route_checks_input_and_roles(hub: Hub) -> None:
    sup, obs = hub.client("sup"), hub.client("obs")
    cases = [
        ({"text": "a", "preset": "no_phone"}, 400, "either 'text' or 'preset'"),
        ({}, 400, "either 'text' or 'preset'"),
        ({"preset": "dance"}, 400, "unknown preset 'dance'"),
        ({"text": "   "}, 400, "empty"),
        ({"text": "x" * 201}, 422, "text"),
        ({"text": "ok", "seconds": 1000}, 422, "seconds"),
        ({"text": "ok", "colour": "red"}, 422, "colour"),
    ]
    for body, status, words in cases:
        r = sup.post("/api/rooms/s01/room-a/notices", json=body)
        assert r.status_code == status and words in r.text, (body, r.status_code, r.text)
        assert r.json()["code"] == "err.invalid_input"
    r = sup.post("/api/rooms/s01/no-such-room/notices", json={"text": "hi"})
    assert r.status_code == 404 and "no-such-room" in r.json()["detail"]
    assert obs.post("/api/rooms/s01/room-a/notices", json={"text": "hi"}).status_code == 403
    assert obs.get("/api/rooms/s01/room-a/notices").status_code == 403
    presets = sup.get("/api/rooms/s01/room-a/notices").json()["presets"]
    assert presets["no_phone"] == "请勿使用手机"
    # the agent's report route: the site's own token only, a known notice of that room only
    agent = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    r = agent.post("/api/ingest/notices/999999", json={"site": "s01", "room": "room-a", "shown": True})
    assert r.status_code == 404 and "no notice 999999" in r.text
    r = agent.post("/api/ingest/notices/1", json={"site": "s02", "room": "room-a", "shown": True})
    assert r.status_code == 403
    r = agent.post("/api/ingest/notices/1", json={"site": "s01", "room": "room-a", "shown": "maybe"})
    assert r.status_code == 400 and "shown" in r.text
    assert httpx.post(f"{hub.url}/api/ingest/notices/1", json={}).status_code == 401


@pytest.mark.timeout(120)
async def test_agent_without_control_channel_gets_the_notice_in_a_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent whose live connection has no control channel: the heartbeat answer carries the
    notice; the agent shows it once (not again on the next heartbeats) and reports it."""
    from fastapi import FastAPI

    import capture.agent as agent_mod
    from capture.agent import Agent
    from capture.ingest import make_router
    from capture.notices import RoomNotices
    from capture.recorder import BufferedFrameSink, Recorder
    from storage.models import AuditLog, RoomNotice
    from testkit.capture import DirSegmentStore, one_camera_config, serve_app
    from testkit.dashboard import make_database

    monkeypatch.setattr(agent_mod, "CONTROL_CHANNEL", "not-the-control-channel")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = make_clip(tmp_path / "room.mp4", seconds=3)
    port = free_port()
    cfg = one_camera_config(tmp_path, clip, port, capture={"heartbeat_seconds": 0.5})
    db = make_database(tmp_path / "hub.db")
    recorder = Recorder(cfg, BufferedFrameSink(8))
    notices = RoomNotices(db, recorder)
    changes: list[dict[str, Any]] = []
    notices.on_change = changes.append
    app = FastAPI()
    app.include_router(make_router(recorder, DirSegmentStore(tmp_path / "store"), cfg, notices=notices))
    await recorder.start()
    server, task = await serve_app(app, port)
    agent = Agent(cfg, "s1")
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop=stop))
    try:
        for _ in range(200):
            if recorder.status()[0].online:
                break
            await asyncio.sleep(0.1)
        assert recorder.status()[0].online
        doc = await notices.create("s1", "r1", "请勿交谈", 5, "sup")
        assert doc["control_sent"] is False  # no channel: only the heartbeat answer carries it
        for _ in range(100):
            if changes:
                break
            await asyncio.sleep(0.1)
        assert changes and changes[0]["type"] == "notice", changes
        await asyncio.sleep(1.5)  # more heartbeats: no second showing, no second report
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
        server.should_exit = True
        await task
        await recorder.close()
    n = changes[0]["notice"]
    assert n["id"] == doc["id"] and n["status"] == "not_shown" and n["via"] == "heartbeat"
    assert len(changes) == 1
    assert list(agent.notices) == [doc["id"]]
    with db.session() as s:
        row = s.get(RoomNotice, doc["id"])
        assert row is not None and row.status == "not_shown" and "no display" in (row.reason or "")
        audits = s.query(AuditLog).filter(AuditLog.action == "room_notice_shown").all()
        assert len(audits) == 1 and audits[0].target == "s1/r1"
    assert await notices.pending("s1") == []


def test_display_and_speech_per_platform() -> None:
    headless = (False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)")
    assert has_display(platform="linux", environ={}) == headless
    assert has_display(platform="linux", environ={"DISPLAY": ":0"}) == (True, "")
    assert has_display(platform="linux", environ={"WAYLAND_DISPLAY": "wayland-0"})[0]
    assert has_display(platform="win32", environ={}, session_id=1) == (True, "")
    assert has_display(platform="win32", environ={}, session_id=0)[0] is False

    def which(found: set[str]) -> Any:
        return lambda name: f"/usr/bin/{name}" if name in found else None

    assert tts_command("请勿使用手机", platform="linux", which=which(set())) is None
    assert tts_command("请勿使用手机", platform="linux", which=which({"spd-say", "espeak-ng"})) == [
        "/usr/bin/espeak-ng", "-v", "cmn", "请勿使用手机"]
    assert tts_command("hi", platform="linux", which=which({"spd-say"}))[:2] == ["/usr/bin/spd-say", "-w"]  # type: ignore[index]
    win = tts_command("it's 请勿", platform="win32", which=which({"powershell"}))
    assert win is not None and win[0] == "/usr/bin/powershell" and "System.Speech" in win[-1]
    assert "'it''s 请勿'" in win[-1]  # quoted for PowerShell


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
def test_supervisor_sends_a_notice_from_the_enlarged_camera(hub: Hub, tmp_path: Path) -> None:
    """In Chromium: the supervisor enlarges the room's camera, picks a preset, sends it; the
    room's notice list shows what the agent reported; the notifications view lists deliveries."""
    from playwright.sync_api import sync_playwright

    from testkit.hub import CHROMIUM, CHROMIUM_ARGS

    admin = hub.client("adm")
    with agent_process(hub, tmp_path, _env()) as proc, sync_playwright() as p:
        wait_live(hub, admin, proc, tmp_path)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(hub.url + "/login")
        page.fill("#username", "sup")
        page.fill("#password", PASSWORDS["sup"])
        page.click("#login-submit")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.click(".tile[data-camera='s01/room-a/cam1']")
        page.wait_for_selector("#notice-box", state="visible")
        page.wait_for_function("() => document.querySelectorAll('#notice-preset option').length > 1")
        page.select_option("#notice-preset", "stay_seated")
        page.click("#notice-send")
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"#notice-list li[data-status='not_shown']\")]"
            ".some((li) => li.textContent.includes('请回到座位，保持安静'))", timeout=30_000)
        text = next(t for t in page.locator("#notice-list li").all_text_contents() if "请回到座位" in t)
        assert "未能显示" in text and "no display" in text, text
        page.click("#enlarged-close")
        page.click("#nav button[data-view='notifications']")
        page.wait_for_selector("#view-notifications:not([hidden]) table.notify-log")
        assert page.text_content("#view-notifications th") == "时间"
        browser.close()
    assert errors == []
    rows = admin.get("/api/audit", params={"action": "room_notice"}).json()["entries"]
    assert any(e["details"]["preset"] == "stay_seated" for e in rows)
