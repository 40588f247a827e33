"""Scale benchmark (issue 11 item 4): one hub with N edge-analysed cameras, and one real agent.

**Simulated runs** (``--cameras 60 120 240``): the real hub (``python -m evalwatch hub``, its own
process, with its embedded SeaweedFS S3 server, SQLite DB, dashboard, the check pipeline of edge
sites) and headless Chromium logged in as a supervisor on the alerts view.  N sites (one camera
each, the sample rooms of ``bench/latency.py`` in turn), all ``analysis: agent`` (the default),
run as real :class:`capture.agent.Agent` objects in ``--farms`` processes, each with:

* a **live WebRTC stream** at ``capture.live_fps`` (5/s): ``bench/latency.py``'s
  ``PacketSource`` replaying H.264 packets pre-encoded once (``latency.preencode``), so the hub
  receives and decodes every stream;
* **segment uploads** by the agent's own uploader: at every UTC multiple of ``segment_seconds``
  (10 s) the next segment pre-encoded once by ``bench/ingest.py``'s ``prepare`` (the agent's own
  ``SegmentWriter``) is placed in the agent's spool (a hard link, as the segmenter would rename
  it there) and the agent PUTs it, retries and backfills exactly as in production;
* **incident updates** replayed from a real analysis of the sample clips: each clip is analysed
  once by ``evalwatch.edge.EdgeAnalyser`` (``AnalysisCore`` at ``analysis_fps``, the default
  detector) and every update document it emitted — opened / updated / closed, boxes, snapshot
  JPEG — is re-emitted at its video time (looping with the clip; fresh ``uid`` per loop, times
  rebased to now) into the agent's ``capture.incidents.IncidentSpool`` through
  ``Agent.incident_ready``, and the agent's incident uploader POSTs it to
  ``/api/ingest/incidents``.  The agent's heartbeat carries the analysis progress (2 analysed
  frames/s per camera), so the hub's ``analysis_offline`` check sees a healthy agent.

**Real-agent runs** (``--agent-cameras 1 4``): the same hub and browser with one real
``evalwatch agent`` process (edge analysis with ``evalwatch.edge.EdgeAnalyser``, decode of the
sample clips, x264 archive + live encoder, uploads) for a site with 1 or 4 sample rooms.

Measured per run (``{"runs": [...]}`` with ``--json FILE``; null where a field does not apply):

* ``hub_cpu_pct``: utime+stime of the hub process tree (hub + SeaweedFS) over the window, % of
  one core (from ``/proc``);
* ``lost_segments``: segments in the agents' spools (everything they produced, complete files)
  that are not, after a drain, both a row in the hub's DB and an object in S3;
* ``alert_p95_s``: per agent incident: browser receipt of its ``opened`` message on
  ``/ws/events`` (``window.evalwatch.received``, as ``bench/latency.py``) minus the time the
  agent's analysis enqueued it (just before ``Agent.incident_ready`` spooled it); same clock;
* ``seat_check_interval_s`` (real agent): p95 over every seat of the seconds between two
  detector runs on that seat's crop (phones, and people the whole frame misses, are looked for
  only there); also the whole-frame detection interval per camera;
* ``agent_cpu_pct_per_camera`` (real agent): utime+stime of the agent process / cameras.

Also reported: the CPU of the hub's main (event-loop) thread, ``GET /healthz`` waits during the
window, the hub check pipeline's analysed frames/s per camera (``/metrics``), the agents' farm
CPU, alerts detected but never received, the hub's own alerts (``analysis_offline`` …), and
where the alert latency goes (``alert_stages_p50_p95_s``: agent spool → POST start, POST →
hub fan-out, fan-out → browser).  ``--check-fps`` sets every site's ``analysis_check_fps``.

The load average (1/5/15 min) before, max during and after, and the CPU count are printed with
every run.

Usage: ``python bench/scale.py [--cameras 60 120 240] [--agent-cameras 1 4] [--seconds 60]
[--json out.json]``; ``--cameras 4 --agent-cameras --seconds 20`` is a cheap smoke run.  Needs
/usr/bin/chromium.  The analysis of the clips is cached in ``$TMPDIR/evalwatch-scale-cache``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import math
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hubproc import stop_all  # noqa: E402
from bench.latency import CHROMIUM_ARGS, CLIPS, SUP_PW, loadavg, pct  # noqa: E402
from bench.wall import _kv, analysis_metrics, tree, tree_cpu  # noqa: E402
from testkit.hub import write_system_config  # noqa: E402
from testkit.procs import tempdir_removed_at_exit  # noqa: E402

SEG_S = 10.0  # bench/ingest.py's segment length; the hub's storage.segment_seconds here
TIME_FIELDS = ("started_at", "ended_at", "footage_start", "footage_end")
CACHE = Path(tempfile.gettempdir()) / "evalwatch-scale-cache"
CAMS_PER_FARM = 60
CLK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# The page's main-thread lag: how late a 100 ms timer fires (s), one sample per tick.
LAG_JS = """
(() => {
  const lag = (window.__lag = []);
  let due = performance.now() + 100;
  setInterval(() => {
    const now = performance.now();
    lag.push(Math.max(0, now - due) / 1000);
    due = now + 100;
  }, 100);
})()
"""


def write_config(tmp: Path, cameras: int, agent_rooms: list[str], check_fps: float | None = None,
                 detection: dict[str, Any] | None = None) -> Path:
    """``s001``… one sample room each (simulated), and ``edge`` with ``agent_rooms`` (real agent);
    ``check_fps``: every site's ``analysis_check_fps`` (None: the default); ``detection``:
    settings of the config's ``detection`` section (the real agent runs the hub's)."""
    import yaml

    sites = {f"s{i:03d}": [CLIPS[(i - 1) % len(CLIPS)]] for i in range(1, cameras + 1)}
    if agent_rooms:
        sites["edge"] = agent_rooms
    path = write_system_config(
        tmp,
        sites,
        users=[{"username": "sup", "role": "supervisor", "password": SUP_PW}],
        segment_seconds=SEG_S,
    )
    if check_fps is not None or detection:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for site in doc["sites"]:
            if check_fps is not None:
                site["analysis_check_fps"] = check_fps
        doc.setdefault("detection", {}).update(detection or {})
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# -- the incident script: one real edge analysis of each sample clip -------------------------------


def _offset(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def analyse_clip(clip: str) -> dict[str, Any]:
    """Every update document ``EdgeAnalyser`` emits on ``sample_videos/<clip>.mp4`` (one camera),
    with the video time of the frame that caused it and times as offsets from the clip start."""
    from analysis.detectors import load_detector
    from analysis.video import iter_video_frames
    from config import load_config
    from config.loader import load_room
    from evalwatch.edge import EdgeAnalyser

    cfg = load_config(str(ROOT / "config" / "default.yaml"), load_secrets=False)
    room = load_room(ROOT / "sample_videos" / f"{clip}.room.yaml")
    d = cfg.detection
    det = load_detector(d.backend, d.model_path, person_threshold=d.person_threshold,
                        phone_threshold=d.phone_threshold, threads=d.threads)
    ea = EdgeAnalyser(det, "x", [room], cfg)
    out: list[dict[str, Any]] = []
    now = [0.0]

    def emit(doc: dict[str, Any]) -> None:
        for f in TIME_FIELDS:
            doc[f] = _offset(doc[f])
        out.append({"t": now[0], "doc": doc})

    ea._emit = emit
    cam = room.cameras[0].id
    last = 0.0
    for t, frame in iter_video_frames(ROOT / "sample_videos" / f"{clip}.mp4", d.analysis_fps):
        now[0] = last = t
        ea.offer(room.id, cam, t, frame)
        ea.step()
    ea.finish()
    return {"clip": clip, "duration": last, "updates": out}


def incident_script(clips: list[str]) -> dict[str, Any]:
    """``analyse_clip`` of each clip, cached by clip content."""
    CACHE.mkdir(exist_ok=True)
    out = {}
    for clip in clips:
        data = (ROOT / "sample_videos" / f"{clip}.mp4").read_bytes()
        room = (ROOT / "sample_videos" / f"{clip}.room.yaml").read_bytes()
        h = hashlib.sha256(data + room + (ROOT / "config" / "default.yaml").read_bytes()).hexdigest()[:16]
        path = CACHE / f"incidents-{clip}-{h}.json"
        if not path.exists():
            say(f"analysing {clip} once (EdgeAnalyser, cached in {path})")
            path.write_text(json.dumps(analyse_clip(clip)))
        out[clip] = json.loads(path.read_text())
    return out


# -- simulated agents (farm processes) --------------------------------------------------------------


class Replayer:
    """One thread per farm: emits every simulated camera's scripted updates when due."""

    def __init__(self, record: Path):
        self.heap: list[tuple[float, int, ReplayAnalyser, int, int]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.n = 0
        self.record = open(record, "a", buffering=1)  # closed with the process
        threading.Thread(target=self._run, name="replayer", daemon=True).start()

    def schedule(self, a: ReplayAnalyser, loop: int, i: int) -> None:
        ups = a.script["updates"]
        if not ups:
            return
        if i >= len(ups):
            loop, i = loop + 1, 0
        due = a.t0 + loop * a.period + ups[i]["t"]
        with self.lock:
            self.n += 1
            heapq.heappush(self.heap, (due, self.n, a, loop, i))
        self.wake.set()

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                nxt = self.heap[0] if self.heap else None
            if nxt is None or nxt[0] > time.time():
                self.wake.clear()
                self.wake.wait(0.5 if nxt is None else min(0.5, nxt[0] - time.time()))
                continue
            with self.lock:
                _due, _n, a, loop, i = heapq.heappop(self.heap)
            a.fire(loop, i, self.record)
            self.schedule(a, loop, i + 1)


class ReplayAnalyser:
    """``capture.agent.EdgeAnalyserLike`` of a simulated camera: replays a clip's analysis."""

    def __init__(self, site: str, room: str, camera: str, script: dict[str, Any], fps: float,
                 replayer: Replayer):
        self.site, self.room, self.camera = site, room, camera
        self.script, self.fps, self.replayer = script, fps, replayer
        # the updates of one pass over the clip; the video loops (latency.preencode: <= 60 s)
        self.period = min(60.0, float(script["duration"]) + 1.0 / fps)
        self.t0 = 0.0
        self.emit: Callable[[dict[str, Any]], None] | None = None

    def offer(self, room: str, camera: str, ts: float, frame: Any) -> None:
        pass  # PacketSource hands no decoded frames

    def set_sessions(self, rooms: dict[str, Any]) -> None:
        pass

    def status(self) -> dict[str, Any]:
        n = max(0, int((time.time() - self.t0) * self.fps))
        return {"running": True, "analysis_fps": self.fps, "errors": 0,
                "cameras": {f"{self.room}/{self.camera}": {"frames": n, "last_frame_at": time.time()}}}

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit, self.t0 = emit, time.time()
        self.replayer.schedule(self, 0, 0)

    def stop(self) -> None:
        self.emit = None

    def fire(self, loop: int, i: int, record: Any) -> None:
        if self.emit is None:
            return
        src = self.script["updates"][i]["doc"]
        doc = dict(src, site=self.site, room=self.room, camera=self.camera, session_id=None)
        doc["uid"] = hashlib.sha256(f"{self.site}/{self.t0}/{loop}/{src['uid']}".encode()).hexdigest()[:24]
        base = self.t0 + loop * self.period
        for f in TIME_FIELDS:
            v = src[f]
            doc[f] = None if v is None else datetime.fromtimestamp(base + v, UTC).isoformat()
        t = time.time()  # detection: the analysis hands the update to the agent's spool now
        self.emit(doc)
        if doc["action"] == "opened":
            record.write(json.dumps({"uid": doc["uid"], "t": t, "rule": doc["rule"]}) + "\n")


def farm(cfg_path: str, sites: list[str], work: Path) -> None:
    """Simulated agents for ``sites`` in this process (module docstring)."""
    import bench.latency as lat
    import capture.agent as agent_mod
    from capture.agent import Agent, _setup_logging
    from capture.spool import Spool
    from config import load_config

    _setup_logging("WARNING")
    cfg = load_config(cfg_path)
    lat.PACKETS.update(pickle.loads((work / "packets.pkl").read_bytes()))
    prep: dict[str, str] = json.loads((work / "segments.json").read_text())
    scripts: dict[str, Any] = json.loads((work / "script.json").read_text())
    seg_files = {clip: sorted(Path(d).glob("seg*.mp4")) for clip, d in prep.items()}
    agent_mod.CameraSource = lat.PacketSource  # type: ignore[misc,assignment]
    replayer = Replayer(work / f"detections-{os.getpid()}.jsonl")
    probe_posts(work)
    stop_file = work / "stop-producing"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        agents = []
        cams: list[tuple[Agent, str, str, list[Path]]] = []
        for s in sites:
            room = cfg.site(s).rooms[0]
            cam = room.cameras[0]
            clip = Path(cam.source).stem
            an = ReplayAnalyser(s, room.id, cam.id, scripts[clip], cfg.detection.analysis_fps, replayer)
            a = Agent(cfg, s, analyser=an)
            a.spool = Spool(Path(cfg.capture.spool_dir) / s, cfg.capture.spool_max_mb)
            agents.append(a)
            cams.append((a, room.id, cam.id, seg_files[clip]))

        async def produce() -> None:
            # like the segmenter: the first (partial) segment is not counted; one per boundary
            boundary = math.ceil(time.time() / SEG_S) * SEG_S
            k = 0
            while not stop.is_set():
                await asyncio.sleep(max(0.0, boundary + SEG_S - time.time()))
                if stop_file.exists():
                    return
                a0 = datetime.fromtimestamp(boundary, UTC)
                a1 = datetime.fromtimestamp(boundary + SEG_S, UTC)
                for a, room, cam, segs in cams:
                    dst = a.spool.path_for(a.site_id, room, cam, a0, a1)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    part = dst.with_name(dst.name + ".part")
                    os.link(segs[k % len(segs)], part)
                    os.replace(part, dst)
                    a.segment_ready()
                boundary += SEG_S
                k += 1

        prod = asyncio.create_task(produce())
        await asyncio.gather(*(a.run(stop=stop) for a in agents))
        prod.cancel()
        replayer.stop.set()

    asyncio.run(main())


def probe_posts(work: Path) -> None:
    """Record when the agent's uploader starts and ends the POST of each ``opened`` update (the
    alert latency's agent-side share)."""
    import capture.agent as agent_mod
    from capture.incidents import IncidentSpool

    uids: dict[str, str] = {}
    posts = open(work / f"posts-{os.getpid()}.jsonl", "a", buffering=1)  # closed with the process
    orig_put, orig_send = IncidentSpool.put, agent_mod.Agent._send_incident

    def put(self: IncidentSpool, doc: dict[str, Any]) -> Path:
        path = orig_put(self, doc)
        if doc.get("action") == "opened":
            uids[str(path)] = doc["uid"]
        return path

    async def send(self: Any, path: Path) -> None:
        uid, t = uids.pop(str(path), None), time.time()
        await orig_send(self, path)
        if uid is not None:
            posts.write(json.dumps({"uid": uid, "post": t, "acked": time.time()}) + "\n")

    IncidentSpool.put = put  # type: ignore[method-assign]
    agent_mod.Agent._send_incident = send  # type: ignore[method-assign]


# -- the real agent, instrumented -------------------------------------------------------------------


def real_agent(cfg_path: str, site: str, work: Path) -> int:
    """``evalwatch agent`` (edge analysis) with two probes: when each seat crop and each whole
    frame is detected, and when each incident is handed to the spool."""
    import analysis.core as core_mod
    import capture.agent as agent_mod
    import evalwatch.edge as edge_mod

    crops: dict[str, list[float]] = {}
    frames: dict[str, list[float]] = {}
    rects: dict[int, str] = {}
    record = open(work / f"detections-{os.getpid()}.jsonl", "a", buffering=1)

    orig_make = edge_mod.make_analyser

    def make(cfg: Any, site_id: str, rooms: Any) -> Any:
        ea = orig_make(cfg, site_id, rooms)
        for core in ea.cores:  # one per worker thread (detection.workers)
            for key, st in core.cameras.items():
                for ci, r in enumerate(st.crops):
                    rects[id(r)] = f"{key}#{ci}"
        return ea

    orig_crop = core_mod._crop

    def crop(frame: Any, r: Any) -> Any:
        k = rects.get(id(r))
        if k is not None:
            crops.setdefault(k, []).append(time.time())
        return orig_crop(frame, r)

    orig_need = core_mod.AnalysisCore._needs_detection

    def need(self: Any, st: Any, t: float, frame: Any, tamper: Any) -> bool:
        yes = orig_need(self, st, t, frame, tamper)
        if yes:
            frames.setdefault(st.key, []).append(time.time())
        return yes

    orig_ready = agent_mod.Agent.incident_ready

    def ready(self: Any, doc: dict[str, Any]) -> None:
        t = time.time()
        orig_ready(self, doc)
        if doc.get("action") == "opened":
            record.write(json.dumps({"uid": doc["uid"], "t": t, "rule": doc["rule"]}) + "\n")

    edge_mod.make_analyser = make  # type: ignore[assignment]
    probe_posts(work)
    core_mod._crop = crop
    core_mod.AnalysisCore._needs_detection = need  # type: ignore[method-assign]
    agent_mod.Agent.incident_ready = ready  # type: ignore[method-assign]
    try:
        return edge_mod.cli(["--config", cfg_path, "--site", site, "--log-level", "WARNING"])
    finally:
        (work / "seats.json").write_text(json.dumps({"crops": crops, "frames": frames}))


# -- one run ----------------------------------------------------------------------------------------


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def produced_segments(spool_root: Path) -> dict[str, tuple[str, str, str, datetime]]:
    """Every complete segment in the agents' spools → its object key (``SegmentMeta.key``)."""
    from capture.spool import parse_stamp
    from storage.segments import SegmentMeta

    out = {}
    for p in spool_root.rglob("*.mp4"):
        cam, room, site = p.parent.name, p.parent.parent.name, p.parent.parent.parent.name
        a, b = p.stem.split("_")
        meta = SegmentMeta(site=site, room=room, camera=cam, start=parse_stamp(a), end=parse_stamp(b))
        out[meta.key()] = (site, room, cam, meta.start)
    return out


async def archived(cfg: Any) -> tuple[set[str], set[str]]:
    """(keys of segment rows in the hub's DB, object keys in the segments bucket)."""
    from storage.objects import ObjectStore

    db = cfg.storage.database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        rows = {r[0] for r in con.execute("select key from segments")}
    objs = await ObjectStore(cfg.storage.s3).list(cfg.storage.s3.bucket_segments)
    return rows, {o.key for o in objs}


def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds of one thread (``/proc/PID/task/TID/stat``), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


async def _metrics(url: str, token: str) -> dict[str, float]:
    try:
        return await analysis_metrics(url, token)
    except Exception:  # an overloaded hub: no figure rather than no run
        return {}


def intervals(times: dict[str, list[float]], a: float, b: float) -> list[float]:
    out: list[float] = []
    for ts in times.values():
        ts = [t for t in ts if a <= t <= b]
        out += [y - x for x, y in itertools.pairwise(ts)]
    return out


async def run(
    sim: int, agent_rooms: list[str], args: argparse.Namespace, shared: dict[str, Any]
) -> dict[str, Any]:
    import httpx
    from playwright.async_api import async_playwright

    from config import load_config
    from dashboard.security import metrics_token

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-scalebench-"))
    work = tmp / "work"
    work.mkdir()
    for name in ("packets.pkl", "segments.json", "script.json"):
        os.symlink(shared[name], work / name)
    cfg_path = write_config(tmp, sim, agent_rooms, args.check_fps, dict(args.detection))
    cfg = load_config(str(cfg_path))
    assert cfg.hub.secret_key is not None
    mtok = metrics_token(cfg.hub.secret_key.get_secret_value())
    kind = "simulated" if sim else "edge agent"
    res: dict[str, Any] = {
        "cameras": sim or len(agent_rooms), "mode": kind, "hub_cpu_pct": None, "lost_segments": None,
        "alert_p95_s": None, "seat_check_interval_s": None, "agent_cpu_pct_per_camera": None,
        "seconds": args.seconds, "cpus": os.cpu_count(), "loadavg_before": loadavg(), "tmp": str(tmp),
        "check_fps": cfg.sites[0].analysis_check_fps,
    }
    say(f"run: {res['cameras']} cameras ({kind}), load {res['loadavg_before']}")
    logs = tmp / "logs"
    logs.mkdir()
    hub = _spawn([sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg_path)], logs / "hub.log")
    farms: list[subprocess.Popen[bytes]] = []
    agent: subprocess.Popen[bytes] | None = None
    url = cfg.hub.url
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            for _ in range(240):
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.5)
            sites = [s.id for s in cfg.sites if s.id != "edge"]
            nf = max(1, min(args.farms or math.ceil(len(sites) / CAMS_PER_FARM), len(sites)))
            for k in range(nf if sites else 0):
                argv = [sys.executable, str(ROOT / "bench" / "scale.py"), "--farm", str(cfg_path)]
                argv += ["--sites", ",".join(sites[k::nf]), "--work", str(work)]
                farms.append(_spawn(argv, logs / f"farm-{k}.log"))
            if agent_rooms:
                argv = [sys.executable, str(ROOT / "bench" / "scale.py"), "--real-agent", str(cfg_path)]
                argv += ["--sites", "edge", "--work", str(work)]
                agent = _spawn(argv, logs / "agent.log")
            r = await c.post("/api/auth/login", json={"username": "sup", "password": SUP_PW})
            r.raise_for_status()
            total = len(cfg.cameras())
            online = 0
            t_wait = time.monotonic()
            while time.monotonic() - t_wait < 240:
                with contextlib.suppress(httpx.HTTPError):
                    cams = (await c.get("/api/cameras/status")).json()["cameras"]
                    online = sum(1 for x in cams if x["online"])
                if online >= total:
                    break
                await asyncio.sleep(1)
            res["cameras_online"] = online
            say(f"{online}/{total} cameras online after {time.monotonic() - t_wait:.0f} s")

            async with async_playwright() as p:
                ctx = await p.chromium.launch_persistent_context(
                    tempdir_removed_at_exit("evalwatch-scalebench-chromium-"),
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True,
                )
                page = await ctx.new_page()
                page.set_default_timeout(60_000)
                await page.goto(url + "/login")
                await page.fill("#username", "sup")
                await page.fill("#password", SUP_PW)
                await page.click("#login-submit")
                await page.wait_for_selector("body[data-ready='1']", state="attached")
                await page.evaluate("location.hash = 'alerts'")
                await asyncio.sleep(args.warmup)
                await page.evaluate("window.evalwatch.received.length = 0")
                await page.evaluate(LAG_JS)
                hub_pids = tree(hub.pid)
                agent_pids = tree(agent.pid) if agent else []
                farm_pids = [q for f in farms for q in tree(f.pid)]
                c0 = (tree_cpu(hub_pids), tree_cpu(agent_pids), tree_cpu(farm_pids), time.monotonic())
                loop0 = thread_cpu(hub.pid, hub.pid)
                m0 = await _metrics(url, mtok)
                w0 = time.time()
                during: list[list[float]] = []
                health: list[float] = []  # GET /healthz: how long the hub's event loop keeps us waiting
                wsq: list[float] = []  # the hub's per-browser WebSocket queues (messages waiting)
                t_end = time.monotonic() + args.seconds
                while time.monotonic() < t_end:
                    await asyncio.sleep(min(5.0, max(0.0, t_end - time.monotonic())))
                    during.append(loadavg())
                    q = time.monotonic()
                    with contextlib.suppress(httpx.HTTPError):
                        await c.get("/healthz")
                        health.append(time.monotonic() - q)
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        text = (await c.get("/metrics", headers={"Authorization": f"Bearer {mtok}"})).text
                        wsq += [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                                if ln.startswith('evalwatch_queue_depth{queue="ws"}')]
                    try:
                        n = await asyncio.wait_for(page.evaluate("window.evalwatch.received.length"), 30)
                    except TimeoutError:
                        n = "? (browser busy)"
                    left = int(t_end - time.monotonic())
                    say(f"{left:4d} s left, {n} messages received, load {during[-1]}")
                c1 = (tree_cpu(hub_pids), tree_cpu(agent_pids), tree_cpu(farm_pids), time.monotonic())
                loop1 = thread_cpu(hub.pid, hub.pid)
                m1 = await _metrics(url, mtok)
                w1 = time.time()
                wall = c1[3] - c0[3]
                res["hub_cpu_pct"] = round(100 * (c1[0] - c0[0]) / wall, 1)
                # the hub's main thread: its event loop (HTTP, WebRTC, WebSocket, ingest handlers)
                res["hub_loop_cpu_pct"] = round(100 * (loop1 - loop0) / wall, 1)
                res["farms_cpu_pct"] = round(100 * (c1[2] - c0[2]) / wall, 1) if farms else None
                if agent_rooms:
                    per_cam = 100 * (c1[1] - c0[1]) / wall / len(agent_rooms)
                    res["agent_cpu_pct_per_camera"] = round(per_cam, 1)
                res["loadavg_during_max"] = max(during, key=lambda x: x[0]) if during else None
                if health:
                    res["healthz_p50_max_s"] = [round(pct(health, 50), 3), round(max(health), 3)]
                if wsq:
                    res["hub_ws_queue_p50_max"] = [pct(wsq, 50), max(wsq)]
                with contextlib.suppress(TimeoutError):
                    lags = await asyncio.wait_for(page.evaluate("window.__lag.slice()"), 30)
                    if lags:
                        res["page_main_thread_lag_p50_max_s"] = [round(pct(lags, 50), 3), round(max(lags), 3)]
                if m0 and m1:  # the hub's check of the edge cameras (its analysis pipeline)
                    res["hub_check_fps_per_camera"] = round(
                        (m1.get("frames_total", 0) - m0.get("frames_total", 0)) / wall / len(cfg.cameras()), 3
                    )
                    res["hub_check_frame_cost_ms"] = round(1000 * m1.get("frame_cost_seconds", 0.0), 1)
                with contextlib.suppress(httpx.HTTPError):
                    cams = (await c.get("/api/cameras/status")).json()["cameras"]
                    res["cameras_online_end"] = sum(1 for x in cams if x["online"])

                # drain: no new segments, the agents' last ones uploaded, the alerts still coming
                (work / "stop-producing").touch()
                if agent is not None:
                    stop_all([agent], 60, reap=True)  # the agent uploads what its spool holds, exits
                produced = produced_segments(Path(cfg.capture.spool_dir))
                missing = set(produced)
                # Late is not lost (the agents' spools hold them): wait while the backlog shrinks,
                # up to --drain s; what is still missing then counts as lost.
                t_drain = progress = time.monotonic()
                late = None
                while time.monotonic() - t_drain < args.drain and time.monotonic() - progress < 30:
                    await asyncio.sleep(max(2.0, SEG_S / 2))
                    produced = produced_segments(Path(cfg.capture.spool_dir))
                    rows, objs = await archived(cfg)
                    before, missing = missing, {k for k in produced if k not in rows or k not in objs}
                    if len(missing) < len(before):
                        progress = time.monotonic()
                    if time.monotonic() - t_drain > SEG_S + 2:
                        late = len(missing) if late is None else late
                        if not missing:
                            break
                res["segments_produced"] = len(produced)
                res["segments_late_after_boundary_s"] = [late, SEG_S + 2]
                res["drain_s"] = round(time.monotonic() - t_drain, 1)
                res["lost_segments"] = len(missing)
                res["lost_examples"] = sorted(missing)[:5]
                received = await asyncio.wait_for(page.evaluate(
                    "window.evalwatch.received.map(r => ({uid: r.event.uid, phase: r.event.phase,"
                    " origin: r.event.origin, rule: r.event.rule, at: r.at, hub: r.hub_sent_at}))"), 60)
                await ctx.close()

        detected: dict[str, float] = {}
        for f in work.glob("detections-*.jsonl"):
            for ln in f.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    d = json.loads(ln)
                    detected[d["uid"]] = d["t"]
        posted: dict[str, tuple[float, float]] = {}
        for f in work.glob("posts-*.jsonl"):
            for ln in f.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    d = json.loads(ln)
                    posted[d["uid"]] = (d["post"], d["acked"])
        lat: list[float] = []
        stages: dict[str, list[float]] = {"agent_spool_to_post": [], "post_to_hub_push": [],
                                          "hub_push_to_browser": []}
        seen: set[str] = set()
        for r in received:
            uid = str(r["uid"])
            if r["phase"] == "opened" and uid in detected and uid not in seen:
                seen.add(uid)
                lat.append(r["at"] - detected[uid])
                if uid in posted and r.get("hub"):
                    stages["agent_spool_to_post"].append(posted[uid][0] - detected[uid])
                    stages["post_to_hub_push"].append(r["hub"] - posted[uid][0])
                    stages["hub_push_to_browser"].append(r["at"] - r["hub"])
        # where the alert latency goes (p50, p95): agent spool + uploader queue; POST, hub ingest,
        # DB row and bus; WebSocket fan-out to the browser
        res["alert_stages_p50_p95_s"] = {k: [round(pct(v, 50), 3), round(pct(v, 95), 3)]
                                         for k, v in stages.items() if v}
        in_window = [u for u, t in detected.items() if w0 <= t <= w1 - 5]
        res["alerts"] = len(lat)
        res["alerts_detected_in_window"] = len(in_window)
        res["alerts_not_received"] = sum(1 for u in in_window if u not in seen)
        # the hub's own incidents (checks: analysis_mismatch / analysis_offline, camera_offline)
        hub_opened = [r for r in received if r["phase"] == "opened" and r.get("origin") == "hub"
                      and w0 <= r["at"] <= w1]
        res["hub_alerts"] = len(hub_opened)
        res["hub_alert_rules"] = sorted({r["rule"] for r in hub_opened})
        if lat:
            res["alert_p50_s"] = round(pct(lat, 50), 3)
            res["alert_p95_s"] = round(pct(lat, 95), 3)
            res["alert_max_s"] = round(max(lat), 3)
        seats_file = work / "seats.json"
        if agent_rooms and seats_file.exists():
            seats = json.loads(seats_file.read_text())
            ci = intervals(seats["crops"], w0, w1)
            fi = intervals(seats["frames"], w0, w1)
            if ci:
                res["seat_check_interval_s"] = round(pct(ci, 95), 2)
                res["seat_check_interval_mean_max_s"] = [round(sum(ci) / len(ci), 2), round(max(ci), 2)]
                res["seats"] = len(seats["crops"])
            if fi:
                res["frame_detect_interval_p50_p95_max_s"] = [round(pct(fi, 50), 2), round(pct(fi, 95), 2),
                                                               round(max(fi), 2)]
        res["loadavg_after"] = loadavg()
    except Exception as e:  # e.g. an overloaded hub never serves the dashboard: keep what was seen
        res["error"] = repr(e)[:300]
        res["loadavg_after"] = loadavg()
    finally:
        stop_all([*farms, *([agent] if agent else []), hub], reap=True)
        if not getattr(args, "keep", False):
            shutil.rmtree(tmp, ignore_errors=True)
            res["tmp"] = None  # removed; --keep keeps the hub's and agents' logs
    return res


def prepare_shared(args: argparse.Namespace, clips: list[str]) -> dict[str, Any]:
    """Once per invocation: the incident script, pre-made segments, pre-encoded live packets."""
    import bench.ingest as ing
    import bench.latency as lat
    from config import load_config

    shared = Path(tempdir_removed_at_exit("evalwatch-scalebench-shared-"))
    script = incident_script(clips)
    (shared / "script.json").write_text(json.dumps(script))
    for clip, s in script.items():
        opened = sum(1 for u in s["updates"] if u["doc"]["action"] == "opened")
        say(f"{clip}: {len(s['updates'])} updates ({opened} incidents) in {s['duration']:.0f} s")
    default = load_config(str(ROOT / "config" / "default.yaml"), load_secrets=False)
    live_fps = default.capture.live_fps or ing.FPS
    segs, packets = {}, {}
    for clip in clips:
        src = str(ROOT / "sample_videos" / f"{clip}.mp4")  # cam.source, as load_room resolves it
        h = hashlib.sha256(Path(src).read_bytes()).hexdigest()[:16]
        seg_dir = CACHE / f"seg-{clip}-{h}"
        pk = CACHE / f"live-{clip}-{h}-{live_fps:g}.pkl"
        if not list(seg_dir.glob("seg*.mp4")) or not pk.exists():
            say(f"pre-encoding {clip} once: segments (bench/ingest.py) and live packets at {live_fps:g} fps")
            ing.prepare(Path(src), seg_dir, [])
            pk.write_bytes(pickle.dumps(lat.preencode(src, ing.W, ing.H, round(live_fps))))
        segs[clip] = str(seg_dir)
        packets[(src, round(live_fps))] = pickle.loads(pk.read_bytes())
    (shared / "segments.json").write_text(json.dumps(segs))
    (shared / "packets.pkl").write_bytes(pickle.dumps(packets))
    return {name: str(shared / name) for name in ("packets.pkl", "segments.json", "script.json")}


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| cameras | mode | hub CPU % | farms CPU % | lost / produced segs | alerts (not recv.) "
            "| alert p50 / p95 / max s | hub-origin alerts | hub check fps/camera "
            "| seat check p95 (mean, max) s "
            "| agent CPU %/camera | load before / max / after | CPUs |")
    lines = [head, "|---" * 13 + "|"]
    for r in runs:
        sc = r.get("seat_check_interval_s")
        seat = "None" if sc is None else f"{sc} {r.get('seat_check_interval_mean_max_s')}"
        lines.append(
            f"| {r['cameras']} | {r['mode']} | {r['hub_cpu_pct']} | {r.get('farms_cpu_pct')} "
            f"| {r['lost_segments']} / {r.get('segments_produced')} "
            f"| {r.get('alerts')} ({r.get('alerts_not_received')}) "
            f"| {r.get('alert_p50_s')} / {r['alert_p95_s']} / {r.get('alert_max_s')} "
            f"| {r.get('hub_alerts')} {r.get('hub_alert_rules') or ''} | {r.get('hub_check_fps_per_camera')} "
            f"| {seat} "
            f"| {r['agent_cpu_pct_per_camera']} "
            f"| {r['loadavg_before']} / {r.get('loadavg_during_max')} / {r.get('loadavg_after')} "
            f"| {r['cpus']} |" + (f" error: {r['error']}" if r.get("error") else "")
        )
    return "\n".join(lines)


FIELDS = ("cameras", "hub_cpu_pct", "lost_segments", "alert_p95_s", "seat_check_interval_s",
          "agent_cpu_pct_per_camera")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cameras", type=int, nargs="*", default=[60, 120, 240], help="simulated edge cameras")
    ap.add_argument("--agent-cameras", type=int, nargs="*", default=[1, 4],
                    help="cameras of the real edge agent (1..5 sample rooms), one run each")
    ap.add_argument("--seconds", type=float, default=60, help="measuring window per run")
    ap.add_argument("--warmup", type=float, default=5, help="seconds after every camera is online")
    ap.add_argument("--drain", type=float, default=240, help="max seconds to wait for late segments")
    ap.add_argument("--farms", type=int, default=0, help=f"farm processes (default: 1 per {CAMS_PER_FARM})")
    ap.add_argument("--check-fps", type=float, default=None,
                    help="every site's analysis_check_fps (default: the config default, 0.5)")
    ap.add_argument("--detection", nargs="*", default=[], type=_kv, metavar="KEY=VALUE",
                    help="detection settings, e.g. seat_check_s=0.5 runtime=onnxruntime")
    ap.add_argument("--json", default=None, help="also write {'runs': [...]} here")
    ap.add_argument("--keep", action="store_true", help="keep each run's temporary directory (logs)")
    ap.add_argument("--farm", default=None, help=argparse.SUPPRESS)  # internal: simulated agents
    ap.add_argument("--real-agent", default=None, help=argparse.SUPPRESS)  # internal: probed agent
    ap.add_argument("--sites", default="", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.farm:
        farm(args.farm, [s for s in args.sites.split(",") if s], Path(args.work))
        return 0
    if args.real_agent:
        return real_agent(args.real_agent, args.sites, Path(args.work))
    if not os.path.exists("/usr/bin/chromium"):
        print("bench/scale.py needs /usr/bin/chromium (make system-deps)", file=sys.stderr)
        return 2
    if any(not 1 <= k <= len(CLIPS) for k in args.agent_cameras):
        print(f"--agent-cameras: 1..{len(CLIPS)}", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} cores, load {loadavg()}", flush=True)
    shared = prepare_shared(args, list(CLIPS))
    runs = []
    plan: list[tuple[int, list[str]]] = [(n, []) for n in args.cameras]
    plan += [(0, list(CLIPS[:k])) for k in args.agent_cameras]
    for n, rooms in plan:
        try:
            r = asyncio.run(run(n, rooms, args, shared))
        except Exception as e:  # keep the other runs' figures
            mode = "simulated" if n else "edge agent"
            r = {"cameras": n or len(rooms), "mode": mode, "error": repr(e)[:300]}
            r |= {k: None for k in FIELDS if k not in r} | {"cpus": os.cpu_count(), "loadavg_before": None}
        print(json.dumps(r), flush=True)
        runs.append(r)
    print(table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
