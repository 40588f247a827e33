"""Dashboard latency benchmark: alert push and replay seek, with N agents streaming.

Starts the real system in this process (embedded SeaweedFS, DB, analysis, recorder, dashboard via
``evalwatch.hub.running_hub`` + ``dashboard.app.create_app`` under uvicorn) and N site agents as
subprocesses, each streaming a sample clip with scripted incidents (looped).  Headless Chromium is
logged in as a supervisor on the alerts view.

* **Alert latency**: for every event the browser receives over ``/ws/events`` with phase
  ``opened``: browser receipt time − the hub-arrival time of the frame whose analysis opened the
  event (recorded by wrapping ``AnalysisCore.process``; both clocks are this machine's).
* **Replay seek-to-first-frame**: ``evalwatch.replay.seekTo(t)`` at random times of one camera's
  archive, until the video element presents the first frame (``requestVideoFrameCallback``).

**Agents.**  ``--real-agents K`` of them (default 1: the camera whose archive the seeks use) are
real ``evalwatch agent`` processes (source decode, x264 encode once, MP4 spool + upload, live
WebRTC).  The others are *simulated*: real :class:`capture.agent.Agent` objects (same ingest
offer, same :class:`~capture.agent.PacketTrack` over WebRTC, heartbeat) whose camera source is
replaced by a replayer of H.264 packets pre-encoded once from the room's clip at bench start, so
no agent-side decode/encode runs and there is no archive upload from them.  The hub does its
full work for every stream (WebRTC receive, decode, analysis, events).  They run in
``--farms`` processes.  ``--real-agents N`` (= ``--agents``) runs all agents for real.

The machine load (1/5/15-minute load average, CPU count) is sampled before, during and after
the run and printed with the figures.

Usage: ``python bench/latency.py [--agents 20] [--real-agents 1] [--seconds 120] [--seeks 30]
[--json out.json]``.  Targets: alert p95 <= 1.0 s, seek p95 <= 300 ms.  Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from testkit.hub import CHROMIUM_ARGS, write_system_config  # noqa: E402
from testkit.procs import tempdir_removed_at_exit  # noqa: E402

CLIPS = ["room_a", "room_b", "room_c", "room_d", "room_f"]
SUP_PW = "bench-sup-password"


def write_config(tmp: Path, agents: int) -> Path:
    """One site per agent, each with one sample room (cycling through CLIPS)."""
    sites = {f"s{i:02d}": [CLIPS[i % len(CLIPS)]] for i in range(1, agents + 1)}
    return write_system_config(
        tmp, sites, users=[{"username": "sup", "role": "supervisor", "password": SUP_PW}]
    )


PACKETS: dict[tuple[str, int], list[tuple[bytes, bool]]] = {}


def preencode(
    clip: str, width: int, height: int, fps: int, max_seconds: float = 60.0
) -> list[tuple[bytes, bool]]:
    """The clip as H.264 Annex B access units at ``fps`` (keyframe every second, SPS/PPS in-band),
    encoded once (Constrained Baseline, like the agents' encoder)."""
    from fractions import Fraction

    import av

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1:crf=26",
    }
    out: list[tuple[bytes, bool]] = []
    n = 0
    with av.open(str(ROOT / clip) if not os.path.isabs(clip) else clip) as src:
        for frame in src.decode(video=0):
            t = float(frame.time or 0.0)
            if t < n / fps:
                continue  # resample to the camera's fps
            if t > max_seconds:
                break
            f = frame.reformat(width=width, height=height, format="yuv420p")
            f.pts = n
            n += 1
            out += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(f)]
    out += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None)]
    return out


class PacketSource:
    """Stands in for ``capture.source.CameraSource`` in simulated agents: hands pre-encoded packets
    to the camera pipe's live path (``CameraPipe._on_packet``) in real time, looped."""

    def __init__(
        self,
        source: str,
        *,
        width: int,
        height: int,
        fps: float,
        loop: bool = True,
        on_frame: Any,
        label: str = "",
        **_source_options: Any,  # rtsp_transport, timeouts: meaningless for pre-encoded packets
    ) -> None:
        import threading

        self.pipe = on_frame.__self__  # the CameraPipe (on_frame is its bound _on_frame)
        # The live stream's rate: the pipe's reduced-rate live encoder's current rate (the hub
        # raises it while the camera is watched enlarged), else the camera's.
        self.source, self.cam_fps, self.label = source, float(fps), label
        self.frames = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def fps(self) -> float:
        enc = self.pipe.live_encoder
        return float(enc.fps) if enc is not None else self.cam_fps

    def _run(self) -> None:
        fps = self.fps
        pk = PACKETS[(self.source, round(fps))]
        t0 = time.time() + random.uniform(0, 1)  # agents do not tick in lockstep
        i = 0
        while not self._stop.is_set():
            if self.fps != fps:  # rate changed: restart the other pre-encoded stream (keyframe first)
                fps = self.fps
                pk = PACKETS[(self.source, round(fps))]
                t0, i = time.time(), 0
            due = t0 + i / fps
            delay = due - time.time()
            if delay > 0:
                self._stop.wait(delay)
            data, key = pk[i % len(pk)]
            self.pipe._on_packet(data, time.time(), key)
            self.frames += 1
            i += 1


def farm(cfg_path: str, sites: list[str], seconds: float) -> None:
    """Simulated agents (see module docstring) for ``sites``, in this process."""
    import capture.agent as agent_mod
    from capture.agent import Agent, _setup_logging
    from config import load_config

    _setup_logging("WARNING")
    cfg = load_config(cfg_path)
    for site in sites:
        for room in cfg.site(site).rooms:
            for cam in room.cameras:
                # the live rate, and the camera's own (sent while watched enlarged)
                for fps in {round(min(cam.fps, cfg.capture.live_fps or cam.fps)), round(cam.fps)}:
                    if (cam.source, fps) not in PACKETS:
                        PACKETS[(cam.source, fps)] = preencode(cam.source, cam.width, cam.height, fps)
    agent_mod.CameraSource = PacketSource  # type: ignore[misc,assignment]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        agents = [Agent(cfg, s) for s in sites]
        await asyncio.gather(*(a.run(stop=stop, duration=seconds) for a in agents))

    asyncio.run(main())


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of the non-empty ``xs``."""
    if not xs:
        raise ValueError("no values to take a percentile of")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def figures(xs: list[float], *qs: int) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "max": ...}`` of ``xs``; each None when ``xs`` is empty."""
    out: dict[str, float | None] = {f"p{q}": pct(xs, q) if xs else None for q in qs}
    out["max"] = max(xs, default=None)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn
    from playwright.async_api import async_playwright

    from config import load_config
    from dashboard.app import create_app
    from evalwatch.hub import running_hub

    # the work folder (config, SeaweedFS data, agents' logs) goes at exit unless --keep
    tmp = Path(tempdir_removed_at_exit("evalwatch-bench-", keep=args.keep))
    cfg_path = write_config(tmp, args.agents)
    cfg = load_config(str(cfg_path))
    frame_ts: dict[str, float] = {}
    agents: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"agents": args.agents, "seconds": args.seconds}
    async with running_hub(cfg) as hub:
        assert hub.pipeline is not None and hub.recorder is not None, "needs the hub's pipeline and recorder"
        recorder = hub.recorder
        core = hub.pipeline.core
        orig = core.process

        def process(batch: Any) -> Any:
            updates = orig(batch)
            ts = {k: t for k, t, _f in batch}
            for u in updates:
                if u.action == "opened":
                    key = f"{u.event.site}/{u.event.room}/{u.event.camera}"
                    if key in ts:
                        frame_ts[str(u.event.id)] = ts[key]
            return updates

        core.process = process
        app = create_app(hub)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=cfg.hub.listen_port, log_level="warning", lifespan="on"
            )
        )
        serve = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        url = cfg.hub.url
        logs = tmp / "logs"
        logs.mkdir()
        real = [site.id for site in cfg.sites][: args.real_agents]
        sim = [site.id for site in cfg.sites][args.real_agents :]
        result["real_agents"], result["simulated_agents"] = len(real), len(sim)
        result["loadavg_before"] = loadavg()
        result["cpus"] = os.cpu_count()
        nf = max(1, min(args.farms, len(sim)))
        for k in range(nf if sim else 0):
            chunk = sim[k::nf]
            with open(logs / f"farm-{k}.log", "wb") as log:  # noqa: ASYNC230
                agents.append(
                    subprocess.Popen(  # noqa: ASYNC220
                        [
                            sys.executable,
                            str(ROOT / "bench" / "latency.py"),
                            "--farm",
                            str(cfg_path),
                            "--sites",
                            ",".join(chunk),
                            "--seconds",
                            str(args.seconds + 600),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        cwd=ROOT,
                    )
                )
        for site in cfg.sites:
            if site.id not in real:
                continue
            with open(logs / f"agent-{site.id}.log", "wb") as log:  # noqa: ASYNC230
                agents.append(
                    subprocess.Popen(  # noqa: ASYNC220
                        [
                            sys.executable,
                            "-m",
                            "evalwatch",
                            "agent",
                            "--config",
                            str(cfg_path),
                            "--site",
                            site.id,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        cwd=ROOT,
                    )
                )
        try:
            async with async_playwright() as p:
                ctx = await p.chromium.launch_persistent_context(
                    tempdir_removed_at_exit("evalwatch-bench-chromium-"),
                    executable_path="/usr/bin/chromium",
                    args=CHROMIUM_ARGS,
                    headless=True,
                )
                page = await ctx.new_page()
                await page.goto(url + "/login")
                await page.fill("#username", "sup")
                await page.fill("#password", SUP_PW)
                await page.click("#login-submit")
                await page.wait_for_selector("body[data-ready='1']")
                await page.evaluate("location.hash = 'alerts'")
                online = 0
                for _ in range(120):  # wait until every camera streams (at most 2 min)
                    online = sum(1 for c in recorder.status() if c.online)
                    if online >= len(cfg.sites):
                        break
                    await asyncio.sleep(1)
                result["cameras_online"] = online
                await page.evaluate("window.evalwatch.received.length = 0")
                t_end = time.monotonic() + args.seconds
                during: list[list[float]] = []
                while time.monotonic() < t_end:
                    await asyncio.sleep(5)
                    during.append(loadavg())
                    n = await page.evaluate("window.evalwatch.received.length")
                    print(
                        f"  {int(t_end - time.monotonic()):4d}s left, {n} alerts received, load {during[-1]}",
                        flush=True,
                    )
                result["loadavg_during_max"] = max(during, key=lambda x: x[0]) if during else None
                result["cameras_online_end"] = sum(1 for c in recorder.status() if c.online)
                received = await page.evaluate(
                    "window.evalwatch.received.map(r => ({uid: r.event.uid, at: r.at, hub: r.hub_sent_at}))"
                )
                lat = [r["at"] - frame_ts[str(r["uid"])] for r in received if str(r["uid"]) in frame_ts]
                fan = [r["at"] - r["hub"] for r in received if r.get("hub")]
                result["alerts"] = len(lat)
                # a figure with nothing to measure is null (the summary says n/a), never NaN
                result["alert_latency_s"] = figures(lat, 50, 95)
                result["fanout_latency_s"] = figures(fan, 50, 95)

                # replay seeks on the first camera's archive (agents keep streaming)
                site, room, cam = cfg.cameras()[0]
                from_ms = int((time.time() - args.seconds - 30) * 1000)
                await page.evaluate(
                    f"location.hash = 'replay/{site.id}/{room.id}/{cam.id}/{from_ms + 60000}'"
                )
                await page.wait_for_function("() => window.evalwatch.replay.seeks.length >= 1", timeout=30000)
                segs = await page.evaluate("window.evalwatch.replay.state.segs.map(s => [s.s, s.e])")
                rng = random.Random(1)
                await page.evaluate("window.evalwatch.replay.seeks.length = 0")
                for i in range(args.seeks):
                    s, e = rng.choice(segs)
                    await page.evaluate(f"window.evalwatch.replay.seekTo({rng.uniform(s, e - 200)})")
                    await page.wait_for_function(
                        f"() => window.evalwatch.replay.seeks.length >= {i + 1}", timeout=10000
                    )
                    await asyncio.sleep(0.3)
                seeks = await page.evaluate("window.evalwatch.replay.seeks")
                result["seeks"] = len(seeks)
                result["seek_first_frame_ms"] = figures(seeks, 50, 95)
                await ctx.close()
                result["loadavg_after"] = loadavg()
        finally:
            for a in agents:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(a.pid, signal.SIGINT)
            for a in agents:
                try:
                    a.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(a.pid, signal.SIGKILL)
            server.should_exit = True
            await serve
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seeks", type=int, default=30)
    ap.add_argument("--real-agents", type=int, default=1, help="real agent processes (the rest simulated)")
    ap.add_argument("--farms", type=int, default=2, help="processes running the simulated agents")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (agents' logs)")
    ap.add_argument("--farm", default=None, help=argparse.SUPPRESS)  # internal: run simulated agents
    ap.add_argument("--sites", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.farm:
        farm(args.farm, [s for s in args.sites.split(",") if s], args.seconds)
        return 0
    if args.seconds < 40:  # the replay opens at window start + 30 s, which must be archived by then
        ap.error(f"--seconds must be at least 40 (the replay seeks need archived footage 30 s into the "
                 f"window), got {args.seconds:g}")
    if not os.path.exists("/usr/bin/chromium"):
        print("bench/latency.py needs /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    res = asyncio.run(run(args))
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    a, s = res.get("alert_latency_s", {}), res.get("seek_first_frame_ms", {})
    print(
        f"alert latency p50 {fmt(a.get('p50'), '.3f')} s  p95 {fmt(a.get('p95'), '.3f')} s "
        f"(target p95 <= 1.0 s) over {res.get('alerts', 0)} alerts"
    )
    print(
        f"replay seek-to-first-frame p50 {fmt(s.get('p50'), '.0f')} ms  "
        f"p95 {fmt(s.get('p95'), '.0f')} ms "
        f"(target p95 <= 300 ms) over {res.get('seeks', 0)} seeks"
    )
    print(
        f"agents: {res.get('real_agents')} real + {res.get('simulated_agents')} simulated, cameras online "
        f"{res.get('cameras_online_end')}; load average before {res.get('loadavg_before')}, "
        f"max during {res.get('loadavg_during_max')}, after {res.get('loadavg_after')} "
        f"on {res.get('cpus')} CPUs"
    )
    if not res.get("alerts"):
        print(
            f"no alert reached the browser in {args.seconds:g} s with {args.agents} agents: "
            "the alert latency is not measured (run longer or with more agents)",
            file=sys.stderr,
        )
        return 1
    return 0


def fmt(x: float | None, spec: str) -> str:
    """``x`` formatted, or ``n/a`` when it was not measured."""
    return "n/a" if x is None else format(x, spec)


if __name__ == "__main__":
    sys.exit(main())
