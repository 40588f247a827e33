"""Live-wall benchmark: does the wall stay usable with 60 tiles on this machine?

Runs the real hub in this process (``evalwatch.hub.running_hub`` + ``dashboard.app.create_app``
under uvicorn, as ``bench/latency.py``), ``--cameras`` simulated cameras (``bench/latency.py``'s
farms: real :class:`capture.agent.Agent` objects streaming H.264 packets pre-encoded once, so the
hub does its full receive/decode/analysis work) and headless Chromium logged in as a supervisor
on the live wall with every tile on screen.  One camera runs in its own farm process, which is
killed (SIGKILL) near the end to time the tile's flip to *offline*.

Measured:

* **hub CPU**: utime+stime of this process (the hub; the bench's own work here is a few polls)
  from ``/proc/self/stat`` over the measuring window, in % of one core; also Chromium's and the
  farms' CPU (process trees from ``/proc``);
* **per-tile displayed frame rate** in the browser: an injected script counts, per tile, new
  pictures actually presented (``requestVideoFrameCallback`` on a ``<video>`` with a stream, or
  a changed ``poster`` for thumbnail tiles), divided by the window;
* **time to a full wall**: from opening the wall until every tile has shown a picture;
* **offline flip**: seconds from killing a camera's agent until its tile's ``data-state`` is
  ``offline``.

The machine load (load average, CPU count) is printed with the table.

Usage: ``python bench/wall.py [--cameras 60] [--seconds 60] [--json out.json]``; a default run
takes about 4 minutes (camera warm-up included).  Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.latency import CHROMIUM_ARGS, SUP_PW, loadavg, pct, write_config  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")

# Injected into the page: counts presented pictures per tile (video frames or poster changes).
COUNTER_JS = """
(() => {
  const st = (window.__wallbench = { tiles: {}, t0: performance.now() });
  const hook = (root) => {
    const key = root.dataset.camera;
    const rec = (st.tiles[key] = st.tiles[key] || { frames: 0, first: null, poster: "" });
    const v = root.querySelector("video");
    const seen = () => { rec.frames += 1; if (rec.first === null) rec.first = performance.now(); };
    if (v && v.requestVideoFrameCallback) {
      const cb = () => { if (v.srcObject) seen(); v.requestVideoFrameCallback(cb); };
      v.requestVideoFrameCallback(cb);
    }
    setInterval(() => {
      const p = v ? v.poster : "";
      if (p && p !== rec.poster) { rec.poster = p; seen(); }
    }, 50);
  };
  document.querySelectorAll(".tile").forEach(hook);
})();
"""
FRAMES_JS = "Object.fromEntries(Object.entries(window.__wallbench.tiles).map(([k, r]) => [k, r.frames]))"
STATES_JS = (
    "Object.fromEntries([...document.querySelectorAll('.tile')]"
    ".map(t => [t.dataset.camera, t.dataset.state]))"
)


def proc_cpu(pid: int) -> float:
    """CPU seconds (utime+stime) of one process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    out, todo = [root], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def tree_cpu(pids: list[int]) -> float:
    return sum(proc_cpu(p) for p in pids)


def spawn_farm(cfg_path: Path, sites: list[str], seconds: float, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "latency.py"),
                "--farm",
                str(cfg_path),
                "--sites",
                ",".join(sites),
                "--seconds",
                str(seconds),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )


async def ev(page: Any, js: str, within: float = 15.0) -> Any:
    """``page.evaluate`` bounded in time (an overloaded hub shares this event loop)."""
    return await asyncio.wait_for(page.evaluate(js), within)


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn
    from playwright.async_api import async_playwright

    from config import load_config
    from dashboard.app import create_app
    from evalwatch.hub import running_hub

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-wallbench-"))
    cfg_path = write_config(tmp, args.cameras)
    cfg = load_config(str(cfg_path))
    res: dict[str, Any] = {"cameras": args.cameras, "seconds": args.seconds, "cpus": os.cpu_count()}
    farms: list[subprocess.Popen[bytes]] = []
    async with running_hub(cfg) as hub:
        app = create_app(hub)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=cfg.hub.listen_port, log_level="warning")
        )
        serve = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        logs = tmp / "logs"
        logs.mkdir()
        sites = [s.id for s in cfg.sites]
        victim, others = sites[-1], sites[:-1]
        nf = max(1, min(args.farms, len(others)))
        life = args.seconds + 900
        for k in range(nf):
            farms.append(spawn_farm(cfg_path, others[k::nf], life, logs / f"farm-{k}.log"))
        victim_farm = spawn_farm(cfg_path, [victim], life, logs / "farm-victim.log")
        farms.append(victim_farm)
        res["loadavg_before"] = loadavg()
        try:
            online = 0
            t_wait = time.monotonic()
            for _ in range(180):
                online = sum(1 for c in hub.recorder.status() if c.online)
                if online >= len(sites):
                    break
                await asyncio.sleep(1)
            res["cameras_online"] = online
            res["cameras_online_after_s"] = round(time.monotonic() - t_wait, 1)
            print(
                f"  {online}/{len(sites)} cameras online after {res['cameras_online_after_s']} s", flush=True
            )
            async with async_playwright() as p:
                ctx = await p.chromium.launch_persistent_context(
                    tempfile.mkdtemp(prefix="evalwatch-wallbench-chromium-"),
                    executable_path="/usr/bin/chromium",
                    args=CHROMIUM_ARGS,
                    headless=True,
                    viewport={"width": 1920, "height": 2400},
                )
                browser_pids: list[int] = []
                me = os.getpid()
                page = await ctx.new_page()
                page.set_default_timeout(60_000)
                say("browser started, logging in")
                await page.goto(cfg.hub.url + "/login")
                await page.fill("#username", "sup")
                await page.fill("#password", SUP_PW)
                await page.click("#login-submit")
                await page.wait_for_selector("body[data-ready='1']")
                await page.evaluate("location.hash = 'wall'")
                await page.wait_for_selector(".tile")
                await page.evaluate(COUNTER_JS)
                say("wall open")
                t_open = time.monotonic()
                n_tiles = await page.evaluate("document.querySelectorAll('.tile').length")
                res["tiles"] = n_tiles
                full = None
                shown = 0
                while time.monotonic() - t_open < args.fill_timeout:
                    try:
                        shown = await ev(
                            page, "Object.values(window.__wallbench.tiles).filter(r => r.frames > 0).length"
                        )
                    except TimeoutError:
                        say("browser did not answer within 15 s")
                        continue
                    if shown >= n_tiles:
                        full = time.monotonic() - t_open
                        break
                    await asyncio.sleep(0.5)
                res["tiles_showing_at_fill_timeout"] = shown
                res["time_to_full_wall_s"] = round(full, 1) if full is not None else None
                print(f"  {shown}/{n_tiles} tiles showing a picture; full wall after {full}", flush=True)

                # measuring window
                browser_pids = [q for q in tree(me) if q != me and q not in {f.pid for f in farms}]
                farm_pids = [q for f in farms for q in tree(f.pid)]
                c0 = (proc_cpu(me), tree_cpu(browser_pids), tree_cpu(farm_pids), time.monotonic())
                f0 = await ev(page, FRAMES_JS, 60)
                during: list[list[float]] = []
                t_end = time.monotonic() + args.seconds
                while time.monotonic() < t_end:
                    await asyncio.sleep(5)
                    during.append(loadavg())
                f1 = await ev(page, FRAMES_JS, 60)
                c1 = (proc_cpu(me), tree_cpu(browser_pids), tree_cpu(farm_pids), time.monotonic())
                wall = c1[3] - c0[3]
                res["hub_cpu_pct"] = round(100 * (c1[0] - c0[0]) / wall, 1)
                res["chromium_cpu_pct"] = round(100 * (c1[1] - c0[1]) / wall, 1)
                res["farms_cpu_pct"] = round(100 * (c1[2] - c0[2]) / wall, 1)
                rates = sorted((f1.get(k, 0) - f0.get(k, 0)) / wall for k in f1)
                res["tile_fps"] = {
                    "min": round(rates[0], 2) if rates else None,
                    "p10": round(pct(rates, 10), 2),
                    "p50": round(pct(rates, 50), 2),
                    "max": round(rates[-1], 2) if rates else None,
                    "tiles_below_0.5fps": sum(1 for r in rates if r < 0.5),
                }
                res["loadavg_during_max"] = max(during, key=lambda x: x[0]) if during else None
                st = await ev(page, STATES_JS, 60)
                res["tile_states_end"] = {s: sum(1 for v in st.values() if v == s) for s in set(st.values())}

                # offline flip: kill one camera's agent
                vkey = next(k for k in st if k.startswith(victim + "/"))
                os.killpg(victim_farm.pid, signal.SIGKILL)
                t_kill = time.monotonic()
                flip = None
                while time.monotonic() - t_kill < 30:
                    try:
                        s = await ev(
                            page, f"document.querySelector(\".tile[data-camera='{vkey}']\").dataset.state", 5
                        )
                    except TimeoutError:
                        continue
                    if s == "offline":
                        flip = time.monotonic() - t_kill
                        break
                    await asyncio.sleep(0.1)
                res["offline_flip_s"] = round(flip, 1) if flip is not None else None
                await ctx.close()
            res["loadavg_after"] = loadavg()
        finally:
            for f in farms:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(f.pid, signal.SIGINT)
            for f in farms:
                try:
                    f.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(f.pid, signal.SIGKILL)
            server.should_exit = True
            await serve
    return res


def table(res: dict[str, Any]) -> str:
    fps = res.get("tile_fps", {})
    rows = [
        ("cameras / tiles", f"{res.get('cameras')} / {res.get('tiles')}"),
        ("cameras online (after s)", f"{res.get('cameras_online')} ({res.get('cameras_online_after_s')})"),
        (
            "time to full wall (s)",
            f"{res.get('time_to_full_wall_s')} ({res.get('tiles_showing_at_fill_timeout')} tiles showing)",
        ),
        (
            "tile fps min / p10 / p50 / max",
            f"{fps.get('min')} / {fps.get('p10')} / {fps.get('p50')} / {fps.get('max')}",
        ),
        ("tiles below 0.5 fps", str(fps.get("tiles_below_0.5fps"))),
        ("tile states at end", json.dumps(res.get("tile_states_end"))),
        ("hub CPU (% of one core)", str(res.get("hub_cpu_pct"))),
        ("chromium CPU (%)", str(res.get("chromium_cpu_pct"))),
        ("camera farms CPU (%)", str(res.get("farms_cpu_pct"))),
        ("offline flip (s)", str(res.get("offline_flip_s"))),
        (
            "load avg before / max during / after",
            f"{res.get('loadavg_before')} / {res.get('loadavg_during_max')} / {res.get('loadavg_after')}",
        ),
        ("CPUs", str(res.get("cpus"))),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=60, help="measuring window")
    ap.add_argument("--fill-timeout", type=float, default=60, help="max wait for a full wall")
    ap.add_argument("--farms", type=int, default=2, help="processes running the simulated cameras")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/chromium"):
        print("bench/wall.py needs /usr/bin/chromium", file=sys.stderr)
        return 2
    res = asyncio.run(run(args))
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
