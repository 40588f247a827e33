"""Edge analysis end to end (issue #11): a real hub (``evalwatch hub``: embedded SeaweedFS, SQLite,
dashboard) and real agents over WebRTC.

* a fake, fast detector on an in-process agent (the point is the plumbing): the incident reaches
  the dashboard's REST and WebSocket with ``origin: agent``; with the agent's uplink cut (TCP
  proxy) while the incident opens and closes, it arrives after the link returns, exactly once
  (a replay of the same updates is acknowledged without a second row); bad posts get a 4xx
  naming the problem, another site's camera a 403;
* the real ONNX detector: an honest edge agent on ``room_a`` reports the clip's extra person
  itself (``origin: agent``, no ``analysis_mismatch``), while an agent of another site with its
  analysis switched off (``--no-analysis``) on the same clip gets ``analysis_mismatch`` from the
  hub's own check and ``analysis_offline`` from its silent analysis heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
import yaml
from websockets.typing import Origin

from analysis.detectors import Box
from capture.agent import Agent
from config import load_config
from evalwatch.edge import EdgeAnalyser
from storage.s3server import free_port
from testkit.capture import TcpProxy, make_clip
from testkit.hub import ROOT, hub_process, system_config

SUP_PW = "sup-edge-pw-1"
TOKENS = {"s01": "tok-edge-site-one-0123456789", "s02": "tok-edge-site-two-0123456789"}


def room_doc(source: str) -> dict[str, Any]:
    """room_a's seats, its camera reading ``source``."""
    doc = yaml.safe_load((ROOT / "sample_videos" / "room_a.room.yaml").read_text(encoding="utf-8"))
    doc["cameras"][0]["source"] = source
    return dict(doc)


def write_hub_config(tmp: Path, sites: dict[str, tuple[str, dict[str, Any]]]) -> Path:
    """``sites``: id → (clip, extra site fields)."""
    doc = system_config(tmp, {}, users=[{"username": "sup", "role": "supervisor", "password": SUP_PW}])
    doc["capture"].update(heartbeat_seconds=2, reconnect_min_seconds=0.5, reconnect_max_seconds=2)
    doc["sites"] = [
        {"id": sid, "agent_token": TOKENS[sid], "rooms": [room_doc(clip)], **extra}
        for sid, (clip, extra) in sites.items()
    ]
    path = tmp / "evalwatch.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def start_agent(tmp: Path, cfg_path: Path, site: str, *extra: str) -> subprocess.Popen[bytes]:
    """``evalwatch agent`` for ``site`` (its log in ``tmp``)."""
    with open(tmp / f"agent-{site}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "evalwatch", "agent", "--config", str(cfg_path), "--site", site,
             "--duration", "120", *extra], cwd=tmp, stdout=log, stderr=subprocess.STDOUT)


def hub_log(tmp: Path) -> str:
    logs = sorted(tmp.glob("*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs)


async def session(url: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=url, timeout=10)
    r = await c.post("/api/auth/login", json={"username": "sup", "password": SUP_PW})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


async def events(c: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await c.get("/api/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


class FakeDetector:
    """A person on each of room_a's four seats; with ``extra`` set, a fifth between the seats."""

    SEATED: tuple[tuple[float, float, float, float], ...] = (
        (0.15, 0.1, 0.35, 0.4), (0.65, 0.1, 0.85, 0.4), (0.1, 0.5, 0.3, 0.8), (0.7, 0.5, 0.9, 0.8))

    def __init__(self) -> None:
        self.extra = threading.Event()

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Any]]:
        boxes = [Box("person", 0.9, *b) for b in self.SEATED]
        if self.extra.is_set():
            boxes.append(Box("person", 0.8, 0.46, 0.4, 0.54, 0.98))
        return [list(boxes) for _ in frames]


async def wait_until(pred: Any, within: float, what: str, tmp: Path) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not within {within:.0f} s\n{hub_log(tmp)}"
        await asyncio.sleep(0.5)


@pytest.mark.timeout(240)
async def test_edge_incident_reaches_dashboard_once_across_link_cut(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=4, width=640, height=480)
    sites = {"s01": (str(clip), {}), "s02": (str(clip), {"analysis": "hub"})}
    cfg_path = write_hub_config(tmp_path, sites)
    cfg = load_config(cfg_path, load_secrets=False)
    with hub_process(cfg_path, cwd=tmp_path) as url:
        c = await session(url)
        cookie = f"evalwatch_session={c.cookies['evalwatch_session']}"
        ws_msgs: list[dict[str, Any]] = []
        ws_url = url.replace("http://", "ws://") + "/ws/events"

        async def listen() -> None:
            async with websockets.connect(
                ws_url, additional_headers={"Cookie": cookie}, origin=Origin(url)
            ) as ws:
                async for raw in ws:
                    ws_msgs.append(json.loads(raw))

        ws_task = asyncio.create_task(listen())
        proxy = TcpProxy(free_port(), int(url.rsplit(":", 1)[1]))
        proxy.up()
        fake = FakeDetector()
        site = cfg.site("s01")
        analyser = EdgeAnalyser(fake, "s01", site.rooms, cfg)
        agent = Agent(cfg, "s01", hub_url=f"http://127.0.0.1:{proxy.listen_port}", analyser=analyser)
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        try:
            # The agent analyses and the hub has its heartbeat (sessions version answered).
            async def analysing() -> bool:
                return sum(analyser.frames.values()) >= 6 and agent.sessions_version >= 0
            await wait_until(analysing, 60, "edge analysis running", tmp_path)

            proxy.down()  # the site's uplink goes down: HTTP (incidents, heartbeats) cut
            fake.extra.set()

            async def spooled(action: str) -> list[dict[str, Any]]:
                docs = [json.loads(p.read_text()) for p in agent.incidents.pending()]
                return [d for d in docs if d["rule"] == "extra_person" and d["action"] == action]
            opened = (await wait_until(lambda: spooled("opened"), 20, "extra_person opened", tmp_path))[0]
            assert opened["snapshot_jpeg"] and opened["boxes"], opened.keys()
            fake.extra.clear()
            await wait_until(lambda: spooled("closed"), 20, "extra_person closed on the agent", tmp_path)
            held = [json.loads(p.read_text()) for p in agent.incidents.pending()]
            early = [e for e in await events(c) if e["rule"] == "extra_person"]
            assert not early, "arrived through a cut link"

            proxy.up()

            async def arrived() -> list[dict[str, Any]]:
                return [e for e in await events(c) if e["rule"] == "extra_person" and e["ended_at"]]
            got = await wait_until(arrived, 45, "the edge incident after the link returned", tmp_path)
            assert len(got) == 1, got
            ev = got[0]
            assert ev["origin"] == "agent" and ev["site"] == "s01" and ev["camera"] == "cam1", ev

            async def drained() -> bool:  # the agent deletes an update once the hub's answer is in
                return not agent.incidents.pending()
            await wait_until(drained, 15, "the agent's incident spool drained", tmp_path)

            async def snapshot_url() -> Any:
                return [e for e in await events(c) if e["id"] == ev["id"] and e["snapshot_url"]]
            item = (await wait_until(snapshot_url, 20, "the snapshot of the edge incident", tmp_path))[0]
            snap = await c.get(item["snapshot_url"])
            assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"

            # The WebSocket carried it as every hub event, with origin=agent, in order.
            async def pushed() -> list[dict[str, Any]]:
                return [m["event"] for m in ws_msgs if m.get("type") == "event"
                        and m["event"].get("uid") == opened["uid"]]
            msgs = await wait_until(pushed, 10, "the WebSocket push", tmp_path)
            phases = [m["phase"] for m in msgs]
            assert phases[0] == "opened" and phases[-1] == "closed" and phases.count("opened") == 1, phases
            assert {m["origin"] for m in msgs} == {"agent"}

            # A retry of updates the hub already has: acknowledged, no second row, no push.
            agent_http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKENS['s01']}"})
            n_ws = len(ws_msgs)
            for doc in held:
                r = await agent_http.post("/api/ingest/incidents", json=doc)
                assert r.status_code == 200 and r.json() == {"id": r.json()["id"], "applied": False}, r.text
            assert len([e for e in await events(c) if e["rule"] == "extra_person"]) == 1
            await asyncio.sleep(1)
            assert [m for m in ws_msgs[n_ws:] if m.get("event", {}).get("uid") == opened["uid"]] == []

            # Bad input: a clear 4xx naming the problem, never a 500.
            other = {**opened, "site": "s02"}
            r = await agent_http.post("/api/ingest/incidents", json=other)
            assert r.status_code == 403 and "s01" in r.json()["detail"], r.text
            r = await agent_http.post("/api/ingest/incidents", json={**opened, "camera": "nope"})
            assert r.status_code == 403 and "unknown camera" in r.json()["detail"], r.text
            no_rule = {k: v for k, v in opened.items() if k != "rule"}
            r = await agent_http.post("/api/ingest/incidents", json=no_rule)
            assert r.status_code == 400 and "rule" in r.json()["detail"], r.text
            not_jpeg = {**opened, "snapshot_jpeg": "bm90IGEganBlZw=="}
            r = await agent_http.post("/api/ingest/incidents", json=not_jpeg)
            assert r.status_code == 400 and "JPEG" in r.json()["detail"], r.text
            r = await agent_http.post("/api/ingest/incidents", content=b"{not json")
            assert r.status_code == 400 and "JSON" in r.json()["detail"], r.text
            s02 = await agent_http.post("/api/ingest/incidents", json={**opened, "site": "s02"},
                                        headers={"Authorization": f"Bearer {TOKENS['s02']}"})
            assert s02.status_code == 409 and "analysis: hub" in s02.json()["detail"], s02.text
            r = await agent_http.post("/api/ingest/incidents", json=opened,
                                      headers={"Authorization": "Bearer x"})
            assert r.status_code == 401
            await agent_http.aclose()
        finally:
            stop.set()
            await asyncio.wait_for(run, 60)
            proxy.close()
            ws_task.cancel()
            with contextlib.suppress(BaseException):
                await ws_task
            await c.aclose()


@pytest.mark.timeout(300)
async def test_hub_checks_agents_with_the_real_detector(tmp_path: Path) -> None:
    clip = str(ROOT / "sample_videos" / "room_a.mp4")  # extra_person 10.9-24.2 s
    check = {"analysis_check_fps": 1.0, "analysis_offline_seconds": 10}
    cfg_path = write_hub_config(tmp_path, {"s01": (clip, check), "s02": (clip, check)})
    with hub_process(cfg_path, cwd=tmp_path) as url:
        c = await session(url)
        agents = [start_agent(tmp_path, cfg_path, "s01"),
                  start_agent(tmp_path, cfg_path, "s02", "--no-analysis")]
        try:
            async def caught() -> list[dict[str, Any]] | None:
                evs = await events(c)
                honest = [e for e in evs if e["site"] == "s01" and e["rule"] == "extra_person"]
                mismatch = [e for e in evs if e["site"] == "s02" and e["rule"] == "analysis_mismatch"]
                offline = [e for e in evs if e["site"] == "s02" and e["rule"] == "analysis_offline"]
                return evs if honest and mismatch and offline else None
            evs = await wait_until(caught, 100, "edge incident, mismatch and analysis_offline", tmp_path)
            honest = [e for e in evs if e["site"] == "s01" and e["rule"] == "extra_person"]
            assert {e["origin"] for e in honest} == {"agent"}, honest
            mismatch = next(e for e in evs if e["site"] == "s02" and e["rule"] == "analysis_mismatch")
            assert mismatch["origin"] == "hub" and mismatch["camera"] == "cam1"
            r = await c.get("/api/events", params={"rule": "analysis_mismatch"})
            assert any(e["site"] == "s02" for e in r.json()["items"])
            # The honest agent: nothing of the hub's checks against it.
            assert not [e for e in evs if e["site"] == "s01" and e["rule"].startswith("analysis_")], evs
            assert not [e for e in evs if e["site"] == "s02" and e["origin"] == "agent"]
        finally:
            for p in agents:
                p.terminate()
            for p in agents:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            await c.aclose()


class SlowDetector:
    """Nobody anywhere, at 0.2 s of "inference" per frame, sleeping (the GIL is released, as in
    onnxruntime); records how many calls overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Any]]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.2 * len(frames))
        with self.lock:
            self.active -= 1
        return [[] for _ in frames]


def _edge_rate(workers: int, seconds: float = 5.0) -> tuple[float, int, int]:
    """4 one-camera rooms fed at 10 fps (a square moves, so the motion gate passes every frame):
    (analysed frames/s of the slowest camera, most overlapping detector calls, workers)."""
    import cv2

    from config import load_room

    rooms = [load_room(ROOT / "sample_videos" / f"{r}.room.yaml")
             for r in ("room_a", "room_b", "room_c", "room_d")]
    cfg = load_config(ROOT / "config" / "default.yaml", load_secrets=False)
    det = SlowDetector()
    ea = EdgeAnalyser(det, "s01", rooms, cfg, workers=workers)
    cap = cv2.VideoCapture(str(ROOT / "sample_videos" / "room_a.mp4"))
    ok, base = cap.read()
    cap.release()
    assert ok
    base = cv2.resize(base, (320, 240))
    rng = np.random.default_rng(0)
    ea.start(lambda doc: None)
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            for room, cam in ea.keys:
                f = base.copy()
                x, y = (int(v) for v in rng.integers(0, 280, 2) % (280, 200))
                f[y:y + 40, x:x + 40] = 255
                ea.offer(room, cam, time.time(), f)
            time.sleep(0.1)
    finally:
        ea.stop()
    return min(ea.frames.values()) / seconds, det.max_active, ea.workers


def test_edge_workers_analyse_cameras_in_parallel() -> None:
    """4 cameras at analysis_fps 2 with 0.2 s per frame need 1.6 s of detector time per second:
    one worker falls behind (each camera analysed < 2 fps, so each seat re-checked less often);
    two workers run two detector calls at once and keep every camera at its rate."""
    one, overlap1, w1 = _edge_rate(1)
    two, overlap2, w2 = _edge_rate(2)
    assert (w1, w2) == (1, 2)
    assert overlap1 == 1 and overlap2 == 2
    assert two >= 1.6, (one, two)
    assert two >= one * 1.15, (one, two)
