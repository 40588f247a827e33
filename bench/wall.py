"""Live-wall benchmark: does the wall stay usable with 60 tiles on this machine?

Runs the real hub (``python -m evalwatch hub``, its own process), ``--cameras`` simulated cameras
(``bench/latency.py``'s farms: real :class:`capture.agent.Agent` objects streaming H.264
packets pre-encoded once, so the hub does its full receive/decode/analysis work) and headless
Chromium logged in as a supervisor on the live wall with every tile on screen.  One camera runs
in its own farm process, which is killed (SIGKILL) near the end to time the tile's flip to
*offline*.

Measured:

* **hub CPU**: utime+stime of the hub process tree (``evalwatch hub``, run as its own process, with
  the embedded S3 server) from ``/proc`` over the measuring window, in % of one core — first with
  every camera streaming and nobody watching, then with the wall open; also Chromium's and the
  farms' CPU;
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
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hubproc import run_farm, spawn_farm, start_hub, stop_all, wait_healthy  # noqa: E402
from bench.latency import CHROMIUM_ARGS, SUP_PW, loadavg, pct, write_config  # noqa: E402
from testkit.procs import tempdir_removed_at_exit  # noqa: E402

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


# Counts pictures presented by the enlarged view's <video> (requestVideoFrameCallback).
BIG_JS = """
(() => {
  const v = document.getElementById("enlarged-video");
  const st = (window.__big = { first: null, t0: performance.now(), times: [] });
  const cb = () => {
    if (v.srcObject) {
      const now = performance.now();
      st.times.push(now);
      if (st.first === null) st.first = now - st.t0;
    }
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
})()
"""
STATUS_JS = "fetch('/api/cameras/status').then((r) => r.json())"


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


async def analysis_metrics(url: str, token: str) -> dict[str, float]:
    """The hub's ``evalwatch_analysis_*`` metrics (``/metrics`` with the metrics token)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        text = (await c.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    out = {}
    for ln in text.splitlines():
        if ln.startswith("evalwatch_analysis_"):
            name, _, value = ln.partition(" ")
            out[name.removeprefix("evalwatch_analysis_")] = float(value)
    return out


async def ev(page: Any, js: str, within: float = 15.0) -> Any:
    """``page.evaluate`` bounded in time (an overloaded hub shares this event loop)."""
    return await asyncio.wait_for(page.evaluate(js), within)


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from playwright.async_api import async_playwright

    from config import load_config

    # the work folder (config, SeaweedFS data, logs) goes at exit unless --keep
    tmp = Path(tempdir_removed_at_exit("evalwatch-wallbench-", keep=args.keep))
    if args.keep:
        say(f"work folder (kept): {tmp}")
    cfg_path = write_config(tmp, args.cameras)
    if args.hub_analysis or args.detection:
        import yaml

        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        if args.hub_analysis:  # every site analysed by the hub itself (not the agents)
            for site in raw["sites"]:
                site["analysis"] = "hub"
        raw["detection"] = dict(args.detection)
        cfg_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    cfg = load_config(str(cfg_path))
    from dashboard.security import metrics_token

    assert cfg.hub.secret_key is not None
    mtok = metrics_token(cfg.hub.secret_key.get_secret_value())
    res: dict[str, Any] = {"cameras": args.cameras, "seconds": args.seconds, "cpus": os.cpu_count()}
    logs = tmp / "logs"
    logs.mkdir()
    res["loadavg_before"] = loadavg()
    hub = start_hub(cfg_path, logs / "hub.log")
    farms: list[subprocess.Popen[bytes]] = []
    url = cfg.hub.url
    try:
        await wait_healthy(url, hub)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            say("hub up")
            sites = [s.id for s in cfg.sites]
            victim, others = sites[-1], sites[:-1]
            nf = max(1, min(args.farms, len(others)))
            life = args.seconds + 900
            for k in range(nf):
                farms.append(spawn_farm(cfg_path, others[k::nf], life, logs / f"farm-{k}.log"))
            victim_farm = spawn_farm(cfg_path, [victim], life, logs / "farm-victim.log")
            farms.append(victim_farm)
            r = await c.post("/api/auth/login", json={"username": "sup", "password": SUP_PW})
            r.raise_for_status()
            online = 0
            t_wait = time.monotonic()
            for _ in range(180):
                with contextlib.suppress(httpx.HTTPError):
                    cams = (await c.get("/api/cameras/status")).json()["cameras"]
                    online = sum(1 for x in cams if x["online"])
                if online >= len(sites):
                    break
                await asyncio.sleep(1)
            res["cameras_online"] = online
            res["cameras_online_after_s"] = round(time.monotonic() - t_wait, 1)
            say(f"{online}/{len(sites)} cameras online after {res['cameras_online_after_s']} s")
            # the hub with every camera streaming and nobody watching
            await asyncio.sleep(args.settle_seconds)
            farm_tree = [q for f in farms for q in tree(f.pid)]
            h0, g0, t0 = tree_cpu(tree(hub.pid)), tree_cpu(farm_tree), time.monotonic()
            m0 = await analysis_metrics(url, mtok)
            lat = []
            for _ in range(max(1, round(args.idle_seconds))):
                q = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await c.get("/healthz")
                lat.append(time.monotonic() - q)
                await asyncio.sleep(1)
            m1 = await analysis_metrics(url, mtok)
            idle = time.monotonic() - t0
            res["hub_cpu_idle_wall_pct"] = round(100 * (tree_cpu(tree(hub.pid)) - h0) / idle, 1)
            res["farms_cpu_idle_wall_pct"] = round(100 * (tree_cpu(farm_tree) - g0) / idle, 1)
            res["analysis_no_viewer"] = {
                "fps_per_camera": round(
                    (m1.get("frames_total", 0) - m0.get("frames_total", 0)) / idle / max(1, args.cameras), 2
                ),
                "frame_cost_ms": round(1000 * m1.get("frame_cost_seconds", 0.0), 1),
                "frame_lag_s": round(m1.get("frame_lag_seconds", 0.0), 2),
                "seconds": round(idle, 1),
            }
            res["healthz_s_no_viewer"] = {"p50": round(pct(lat, 50), 3), "max": round(max(lat), 3)}
            say(
                f"hub CPU without viewers {res['hub_cpu_idle_wall_pct']} %, "
                f"healthz {res['healthz_s_no_viewer']}, analysis {res['analysis_no_viewer']}"
            )
        if args.no_wall:
            res["loadavg_after"] = loadavg()
            return res

        async with async_playwright() as p:
            ctx = await p.chromium.launch_persistent_context(
                tempdir_removed_at_exit("evalwatch-wallbench-chromium-"),
                executable_path="/usr/bin/chromium",
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1920, "height": 2400},
            )
            me = os.getpid()
            page = await ctx.new_page()
            page.set_default_timeout(60_000)
            say("browser started, logging in")
            t_login = time.monotonic()
            await page.goto(url + "/login")
            await page.fill("#username", "sup")
            await page.fill("#password", SUP_PW)
            await page.click("#login-submit")
            await page.wait_for_selector("body[data-ready='1']", state="attached")
            await page.evaluate("location.hash = 'wall'")
            await page.wait_for_selector(".tile", state="attached")
            await page.evaluate(COUNTER_JS)
            res["login_to_wall_s"] = round(time.monotonic() - t_login, 1)
            say("wall open")
            t_open = time.monotonic()
            n_tiles = await ev(page, "document.querySelectorAll('.tile').length")
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
            say(f"{shown}/{n_tiles} tiles showing a picture; full wall after {res['time_to_full_wall_s']} s")

            # measuring window
            farm_pids = {q for f in farms for q in tree(f.pid)}
            hub_pids = set(tree(hub.pid))
            browser_pids = [q for q in tree(me) if q != me and q not in farm_pids | hub_pids]
            c0 = (
                tree_cpu(list(hub_pids)),
                tree_cpu(browser_pids),
                tree_cpu(list(farm_pids)),
                time.monotonic(),
            )
            f0 = await ev(page, FRAMES_JS, 60)
            m0 = await analysis_metrics(url, mtok)
            during: list[list[float]] = []
            t_end = time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                await asyncio.sleep(5)
                during.append(loadavg())
            f1 = await ev(page, FRAMES_JS, 60)
            m1 = await analysis_metrics(url, mtok)
            c1 = (
                tree_cpu(list(hub_pids)),
                tree_cpu(browser_pids),
                tree_cpu(list(farm_pids)),
                time.monotonic(),
            )
            wall = c1[3] - c0[3]
            res["hub_cpu_pct"] = round(100 * (c1[0] - c0[0]) / wall, 1)
            res["chromium_cpu_pct"] = round(100 * (c1[1] - c0[1]) / wall, 1)
            res["analysis"] = {
                "fps_per_camera": round(
                    (m1.get("frames_total", 0) - m0.get("frames_total", 0)) / wall / max(1, args.cameras), 2
                ),
                "frame_cost_ms": round(1000 * m1.get("frame_cost_seconds", 0.0), 1),
                "frame_lag_s": round(m1.get("frame_lag_seconds", 0.0), 2),
            }
            res["farms_cpu_pct"] = round(100 * (c1[2] - c0[2]) / wall, 1)
            rates = sorted((f1.get(k, 0) - f0.get(k, 0)) / wall for k in f1) or [0.0]
            res["tile_fps"] = {
                "min": round(rates[0], 2),
                "p10": round(pct(rates, 10), 2),
                "p50": round(pct(rates, 50), 2),
                "max": round(rates[-1], 2),
                "tiles_below_0.5fps": sum(1 for r in rates if r < 0.5) + max(0, n_tiles - len(f1)),
            }
            res["loadavg_during_max"] = max(during, key=lambda x: x[0]) if during else None
            st = await ev(page, STATES_JS, 60)
            res["tile_states_end"] = {s: sum(1 for v in st.values() if v == s) for s in set(st.values())}
            say(f"window done: {res['tile_fps']}, hub {res['hub_cpu_pct']} %")

            # the enlarged tile: full-quality WebRTC; the hub asks the agent for the camera's full
            # rate (heartbeat), so the picture rate rises from the live rate after a few seconds
            bkey = next(k for k in st if not k.startswith(victim + "/"))
            await ev(page, BIG_JS, 15)
            await page.click(f".tile[data-camera='{bkey}']")
            series = []  # the hub's received fps for the camera, every 2 s
            t_big = time.monotonic()
            while time.monotonic() - t_big < args.enlarged_seconds:
                await asyncio.sleep(2)
                cams = (await ev(page, STATUS_JS, 15))["cameras"]
                series.append(
                    next(c["fps"] for c in cams if f"{c['site']}/{c['room']}/{c['camera']}" == bkey)
                )
            big = await ev(page, "window.__big", 15)
            times = big["times"]
            end = times[-1] if times else 0.0
            recent = [t for t in times if t >= end - 10_000]
            res["enlarged"] = {
                "first_frame_s": round(big["first"] / 1000, 1) if big["first"] is not None else None,
                "fps_last_10s": round((len(recent) - 1) / ((recent[-1] - recent[0]) / 1000), 1)
                if len(recent) > 1
                else 0.0,
                "hub_fps_every_2s": series,
            }
            say(f"enlarged {bkey}: {res['enlarged']}")
            await page.click("#enlarged-close")

            # offline flip: kill one camera's agent
            vkey = next(k for k in st if k.startswith(victim + "/"))
            os.killpg(victim_farm.pid, signal.SIGKILL)
            t_kill = time.monotonic()
            flip = None
            js = f"document.querySelector(\".tile[data-camera='{vkey}']\").dataset.state"
            while time.monotonic() - t_kill < 30:
                try:
                    s = await ev(page, js, 5)
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
        stop_all([*farms, hub])
        if not args.keep:  # now, not at exit: bench/hub_analysis.py runs one set-up after another
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def table(res: dict[str, Any]) -> str:
    fps = res.get("tile_fps", {})
    rows = [
        ("cameras / tiles", f"{res.get('cameras')} / {res.get('tiles')}"),
        ("cameras online (after s)", f"{res.get('cameras_online')} ({res.get('cameras_online_after_s')})"),
        ("hub CPU, nobody watching (%)", str(res.get("hub_cpu_idle_wall_pct"))),
        ("GET /healthz, nobody watching (s)", json.dumps(res.get("healthz_s_no_viewer"))),
        ("analysis, nobody watching", json.dumps(res.get("analysis_no_viewer"))),
        ("login to wall shown (s)", str(res.get("login_to_wall_s"))),
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
        (
            "enlarged tile: first frame (s) / fps last 10 s / hub fps every 2 s",
            "{first_frame_s} / {fps_last_10s} / {hub_fps_every_2s}".format(
                **(
                    res.get("enlarged")
                    or {"first_frame_s": None, "fps_last_10s": None, "hub_fps_every_2s": None}
                )
            ),
        ),
        (
            "analysis, wall open: frames/s per camera / ms per frame / lag s",
            "{fps_per_camera} / {frame_cost_ms} / {frame_lag_s}".format(
                **(
                    res.get("analysis")
                    or {"fps_per_camera": None, "frame_cost_ms": None, "frame_lag_s": None}
                )
            ),
        ),
        ("offline flip (s)", str(res.get("offline_flip_s"))),
        (
            "load avg before / max during / after",
            f"{res.get('loadavg_before')} / {res.get('loadavg_during_max')} / {res.get('loadavg_after')}",
        ),
        ("CPUs", str(res.get("cpus"))),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)


def _kv(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=60, help="measuring window")
    ap.add_argument("--fill-timeout", type=float, default=60, help="max wait for a full wall")
    ap.add_argument("--farms", type=int, default=2, help="processes running the simulated cameras")
    ap.add_argument("--enlarged-seconds", type=float, default=20, help="watching one tile enlarged")
    ap.add_argument("--idle-seconds", type=float, default=10, help="window with nobody watching")
    ap.add_argument("--settle-seconds", type=float, default=0, help="wait before that window")
    ap.add_argument("--no-wall", action="store_true", help="stop after that window (no browser)")
    ap.add_argument("--hub-analysis", action="store_true", help="every site 'analysis: hub'")
    ap.add_argument("--detection", nargs="*", default=[], type=_kv, metavar="KEY=VALUE",
                    help="detection settings, e.g. analysis_fps=1 runtime=openvino")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (hub and farm logs)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--farm", default=None, help=argparse.SUPPRESS)  # internal: simulated cameras
    ap.add_argument("--sites", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.farm:
        run_farm(args.farm, [s for s in args.sites.split(",") if s], args.seconds)
        return 0
    if not args.no_wall and not os.path.exists("/usr/bin/chromium"):
        print("bench/wall.py needs /usr/bin/chromium", file=sys.stderr)
        return 2
    res = asyncio.run(run(args))
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
