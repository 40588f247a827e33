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

Usage: ``python bench/latency.py [--agents 20] [--seconds 120] [--seeks 30] [--json out.json]``.
Targets: alert p95 <= 1.0 s, seek p95 <= 300 ms.  Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLIPS = ["room_a", "room_b", "room_c", "room_d", "room_f"]
SUP_PW = "bench-sup-password"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def _port_pair() -> int:
    rng = random.Random()
    for _ in range(200):
        p = rng.randint(20000, 39999)
        ok = True
        for q in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no free port pair")


def write_config(tmp: Path, agents: int) -> Path:
    ports = [_port_pair() for _ in range(5)]
    cfg = {
        "hub": {"listen_port": ports[0]},
        "storage": {
            "database_url": f"sqlite:///{tmp}/data/evalwatch.db",
            "data_dir": str(tmp / "data"),
            "wal_dir": str(tmp / "data/wal"),
            "segment_seconds": 4,
            "s3": {
                "endpoint": f"127.0.0.1:{ports[1]}",
                "embedded_server": {
                    "dir": str(tmp / "data/seaweedfs"),
                    "master_port": ports[2],
                    "volume_port": ports[3],
                    "filer_port": ports[4],
                },
            },
        },
        "capture": {"spool_dir": str(tmp / "data/spool"), "spool_max_mb": 64},
        "users": [{"username": "sup", "role": "supervisor", "password": SUP_PW}],
        "secrets_file": str(tmp / "data/secrets.yaml"),
        "sites": [
            {"id": f"s{i:02d}", "rooms": [str(ROOT / "sample_videos" / f"{CLIPS[i % len(CLIPS)]}.room.yaml")]}
            for i in range(1, agents + 1)
        ],
    }
    path = tmp / "evalwatch.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn
    from playwright.async_api import async_playwright

    from config import load_config
    from dashboard.app import create_app
    from evalwatch.hub import running_hub

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-bench-"))
    cfg_path = write_config(tmp, args.agents)
    cfg = load_config(str(cfg_path))
    frame_ts: dict[str, float] = {}
    agents: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"agents": args.agents, "seconds": args.seconds}
    async with running_hub(cfg) as hub:
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
        for site in cfg.sites:
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
                    tempfile.mkdtemp(prefix="evalwatch-bench-chromium-"),
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
                t_end = time.monotonic() + args.seconds
                while time.monotonic() < t_end:
                    await asyncio.sleep(5)
                    n = await page.evaluate("window.evalwatch.received.length")
                    print(f"  {int(t_end - time.monotonic()):4d}s left, {n} alerts received", flush=True)
                received = await page.evaluate(
                    "window.evalwatch.received.map(r => ({uid: r.event.uid, at: r.at, hub: r.hub_sent_at}))"
                )
                lat = [r["at"] - frame_ts[str(r["uid"])] for r in received if str(r["uid"]) in frame_ts]
                fan = [r["at"] - r["hub"] for r in received if r.get("hub")]
                result["alerts"] = len(lat)
                result["alert_latency_s"] = {
                    "p50": pct(lat, 50),
                    "p95": pct(lat, 95),
                    "max": max(lat, default=0),
                }
                result["fanout_latency_s"] = {"p50": pct(fan, 50), "p95": pct(fan, 95)}

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
                result["seek_first_frame_ms"] = {
                    "p50": pct(seeks, 50),
                    "p95": pct(seeks, 95),
                    "max": max(seeks),
                }
                await ctx.close()
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
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/chromium"):
        print("bench/latency.py needs /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    res = asyncio.run(run(args))
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    a, s = res.get("alert_latency_s", {}), res.get("seek_first_frame_ms", {})
    print(
        f"alert latency p50 {a.get('p50', float('nan')):.3f} s  p95 {a.get('p95', float('nan')):.3f} s "
        f"(target p95 <= 1.0 s) over {res.get('alerts', 0)} alerts"
    )
    print(
        f"replay seek-to-first-frame p50 {s.get('p50', float('nan')):.0f} ms  "
        f"p95 {s.get('p95', float('nan')):.0f} ms "
        f"(target p95 <= 300 ms) over {res.get('seeks', 0)} seeks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
