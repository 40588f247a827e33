"""Ingest benchmark: N concurrent camera streams (640x480 @ 15 fps) into one hub (or several) on this machine.

    python bench/ingest.py                              # 10,20,40 streams, 30 s window, + baseline
    python bench/ingest.py --streams 40 --window 60 --no-baseline
    python bench/ingest.py --streams 40 --live-fps 5,0 --no-baseline   # new and old live rate
    python bench/ingest.py --agent-cpu 3                # real agent process: CPU per camera
    python bench/ingest.py --agent-cpu 1 --live-fps 5,0 # ... with and without the live encoder
    python bench/ingest.py --streams 10 --window 60 --hubs 1,2 --json out.json  # 1 hub, then 2 hubs

What is measured is the **hub** (``python -m testkit.capture``: the real Recorder + ingest router
+ a directory segment store, one process).  The agents are *simulated* so that they do not starve
the hub on a 2-core machine: the sample clip is encoded ONCE up front by the agent's own
``SegmentWriter`` (same x264 settings, same 10 s wall-clock segments) and, for every live rate
below the camera's, by the agent's own ``LiveEncoder`` (``capture.live_fps``: Constrained Baseline,
keyframe every 2 s, SPS/PPS in-band), and every simulated camera

* streams the live packets over real aiortc WebRTC in real time, looping, through the agent's own
  ``PacketTrack`` (offer on ``POST /api/ingest/offer``, like the agent): with ``--live-fps R``
  (default: the config default, 5) the LiveEncoder's packets at R fps, like the agent now; with
  ``--live-fps 0`` (or ``none``: ``live_fps: null``) the archive encoder's packets at the camera's
  15 fps, like the agent before the live encoder; ``--live-fps 5,0`` runs both, and
* at every UTC multiple of ``segment_seconds`` PUTs the next pre-made segment on the real ingest
  API (sha256 header, retries with backoff like the agent) and heartbeats every 5 s.

Simulated cameras run in ``--cams-per-process`` asyncio processes.  Modes, one after the other
with the same clip and stream count:

* **evalwatch** — live WebRTC + segment upload; the hub decodes the live track (status, analysis
  sampling at ``detection.analysis_fps``) and stores the agents' bytes as they are;
* **baseline** — live WebRTC only (always the archive packets at 15 fps, whatever
  ``--live-fps`` says); the hub records every track with aiortc ``MediaRecorder`` (decode +
  re-encode on the hub, the naive design).  Run once per stream count.

Reported per run: streams archived with 0 lost segments (segments the simulators produced vs
objects in the hub's store after a drain), hub CPU (utime+stime of the hub process from /proc,
% of one core, total and per stream), simulators' CPU, frames per second per stream the hub
decoded, archive MB per camera-hour, the live rate used (``live_fps``: the agents' config value,
null = archive packets; ``live_stream_fps``: the rate actually sent) and the 1-minute load average
before the run.

``--hubs 1,2`` (issue #14) runs, for each stream count, the same simulated cameras into 1 hub
node, then into 2, on a shared PostgreSQL (``testkit.pg``: a throwaway server, a fresh
database per run; or the server of ``EVALWATCH_TEST_PG_URL``) and one shared SeaweedFS S3
server.  Each node is ``python -m testkit.capture --store s3 --node-id hub-K``: the capture stage
with the real ``SegmentStore`` (database rows + hash chains, S3 objects, appends fenced by the
site's lease) and a ``storage.leases.LeaseManager`` (default TTL/renewal) — no analysis, no
dashboard, like the single-hub runs.  The lease table splits the sites over the nodes before the
cameras start; every simulated agent knows all the nodes' URLs (``sites[].hub_urls``), starts at
the first and follows the 421s to its site's holder, like ``capture.agent``.  Reported per run:
streams, hubs, the sites each node held, streams archived with 0 lost segments (a database row
for every segment start the simulators produced), lost / produced / duplicated segments, CPU of
each hub process, total and per stream, and per live frame the hubs decoded (``hub CPU
ms/frame``: what stays comparable when a loaded machine starves the hubs and they decode fewer
frames), the simulators' CPU and the 1-minute load before and after; then a table with each
run's total hub CPU per stream over the 1-hub run's.  Exit 1 if any segment was lost.
``--json FILE`` writes the runs' results (any mode).

``--agent-cpu N`` instead runs one real ``evalwatch agent`` process with N cameras against the
bench hub, once per ``--live-fps`` value (written as ``capture.live_fps`` into its config, ``0`` →
``null``: no second encoder), and reports its CPU per camera; with two values, their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.models import CaptureConfig  # noqa: E402
from storage.s3server import free_port  # noqa: E402
from testkit.capture import make_clip, write_config  # noqa: E402
from testkit.procs import tempdir_removed_at_exit  # noqa: E402

#: ``--keep``: leave the runs' work folders (configs, logs, SeaweedFS data) in /tmp.
KEEP_WORK = False


def workdir(prefix: str) -> Path:
    """A run's work folder, removed when the bench exits unless ``--keep``."""
    return Path(tempdir_removed_at_exit(prefix, keep=KEEP_WORK))

TICK = os.sysconf("SC_CLK_TCK")
W, H, FPS = 640, 480, 15.0
SEG_S = 10.0
BITRATE_KBPS = 200  # config/default.yaml
DEFAULT_LIVE_FPS: float | None = CaptureConfig.model_fields["live_fps"].default


def parse_live_fps(spec: str) -> list[float | None]:
    """``"5"`` → [5.0]; ``"5,0"`` → [5.0, None]; ``0``/``none``/``null`` = no live encoder."""
    out: list[float | None] = []
    for x in spec.split(","):
        x = x.strip().lower()
        if x in ("0", "0.0", "none", "null"):
            out.append(None)
            continue
        v = float(x)
        if not 0 < v <= 60:
            raise argparse.ArgumentTypeError(f"--live-fps {x}: must be in (0, 60], or 0/none")
        out.append(v)
    return out


def live_stream_fps(live_fps: float | None) -> float:
    """The rate the agent sends live: ``live_fps`` if below the camera's (second encoder), else
    the camera's own (the archive encoder's packets) — ``CameraPipe``'s rule."""
    return live_fps if live_fps is not None and live_fps < FPS else FPS


def packets_file(prep: Path, live_fps: float | None) -> Path:
    fps = live_stream_fps(live_fps)
    return prep / "packets.pkl" if fps >= FPS else prep / f"live_{fps:g}.pkl"


def fmt_live(live_fps: float | None) -> str:
    fps = live_stream_fps(live_fps)
    return f"{fps:g} (live enc)" if fps < FPS else f"{fps:g} (archive pkts)"


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        except (FileNotFoundError, IndexError):
            pass
    return total


# -- 1. encode the clip once ---------------------------------------------------------------------


def _wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"pre-encode: timed out waiting for {what}")
        time.sleep(0.001)


def prepare(clip: Path, out: Path, live_rates: list[float | None], seconds: float = 60.0) -> Path:
    """Encode ``seconds`` of ``clip`` (looped, W x H @ FPS) with the agent's SegmentWriter and,
    for every rate of ``live_rates`` below FPS, the agent's LiveEncoder, fed the same frames.

    Writes ``out/segNN.mp4`` (SEG_S each), ``out/packets.pkl`` = the very packets the segments
    hold, as the agent sends them live without a live encoder, and ``out/live_<fps>.pkl`` = the
    live encoder's packets over the same span.  Each ``.pkl`` = {"fps", "period" (s, the loop
    length), "packets": [(annexb, rel_ts, key)]}.
    """
    import av

    from capture.live_encoder import LiveEncoder
    from capture.segmenter import SegmentWriter
    from capture.spool import Spool

    out.mkdir(parents=True, exist_ok=True)
    spool = Spool(out / "spool", 10_000)
    packets: list[tuple[bytes, float, bool]] = []
    t0 = 1_700_000_000.0  # a multiple of SEG_S: segments [t0 + k*SEG_S, ...)
    w = SegmentWriter(
        spool,
        "p",
        "r",
        "c",
        width=W,
        height=H,
        fps=FPS,
        segment_seconds=SEG_S,
        bitrate_kbps=BITRATE_KBPS,
        on_packet=lambda d, ts, k: packets.append((d, ts - t0, k)),
    )
    # The agent's second encoder(s), same settings as CameraPipe's (preset veryfast = the agent's
    # default, keyframe every 2 s, SPS/PPS in-band), fed every frame; each takes its 1/fps grid.
    rates = sorted({live_stream_fps(r) for r in live_rates} - {FPS})
    live: dict[float, tuple[LiveEncoder, list[tuple[bytes, float, bool]], list[int]]] = {}

    def collect(into: list[tuple[bytes, float, bool]]) -> Callable[[bytes, float, bool], None]:
        return lambda d, ts, k: into.append((d, ts - t0, k))

    for r in rates:
        lp: list[tuple[bytes, float, bool]] = []
        enc = LiveEncoder(
            width=W,
            height=H,
            fps=r,
            max_fps=FPS,
            on_packet=collect(lp),
            bitrate_kbps=BITRATE_KBPS,
            label=f"bench-{r:g}",
        )
        live[r] = (enc, lp, [0])
    n_total = round(seconds * FPS)
    n = 0
    while n < n_total:
        with av.open(str(clip)) as c:
            for frame in c.decode(video=0):
                f = frame.reformat(width=W, height=H, format="yuv420p")
                ts = t0 + n / FPS
                for enc, _, taken in live.values():
                    # Faster than real time: never let its 2-frame queue overflow (no drops).
                    _wait_until(lambda: taken[0] - enc.frames_encoded <= 1, "live encoder")  # noqa: B023
                    taken[0] += enc.offer(f, ts)
                w.write(f, ts)
                n += 1
                if n >= n_total:
                    break
    w.write(frame.reformat(width=W, height=H, format="yuv420p"), t0 + n / FPS)  # closes the last
    for r, (enc, _, taken) in live.items():
        _wait_until(lambda: enc.frames_encoded >= taken[0], f"live encoder {r:g} fps")  # noqa: B023
        enc.stop(30)  # joins after the frame in progress: all its packets are out
        if enc.dropped or enc.last_error:
            raise RuntimeError(f"live encoder {r:g} fps: dropped {enc.dropped}, {enc.last_error}")
    segs = [s for s in spool.segments() if (s.end - s.start).total_seconds() >= SEG_S - 1e-3]
    for i, s in enumerate(segs):
        s.path.replace(out / f"seg{i:02d}.mp4")
    period = len(segs) * SEG_S
    keep = round(period * FPS)
    doc = {"fps": FPS, "period": period, "packets": packets[:keep]}
    (out / "packets.pkl").write_bytes(pickle.dumps(doc))
    for r, (_, lp, _) in live.items():
        doc = {"fps": r, "period": period, "packets": [p for p in lp if p[1] < period - 1e-6]}
        packets_file(out, r).write_bytes(pickle.dumps(doc))
    return out


# -- 2. simulated agents (separate processes) ----------------------------------------------------


class HubList:
    """The hub nodes a simulated agent knows (``sites[].hub_urls``): requests go to the current
    one; a 421 names the holder (``X-Evalwatch-Holder``), which becomes the current one, and the
    request is sent again there — the agent's rule (``capture.agent``).  A 421 without a holder
    (the site is being reassigned) tries the next node after a short pause."""

    def __init__(self, http: Any, urls: list[str]) -> None:
        self.http = http
        self.urls = urls
        self.url = urls[0]
        self.switches = 0

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(2 * len(self.urls) + 2):
            r = await self.http.request(method, self.url + path, **kw)
            if r.status_code != 421:
                return r
            holder = (r.headers.get("x-evalwatch-holder") or "").rstrip("/")
            if holder and holder in self.urls and holder != self.url:
                self.url = holder
            else:
                self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
                await asyncio.sleep(0.5 * (attempt + 1))
            self.switches += 1
        return r


async def _sim_camera(
    hubs: HubList,
    site: str,
    prep: Path,
    packets: list[tuple[bytes, float, bool]],
    period: float,
    stop: asyncio.Event,
    upload: bool,
) -> dict[str, Any]:
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from capture.agent import PacketTrack
    from capture.ice import rtc_configuration

    seg_bytes = await asyncio.to_thread(lambda: [p.read_bytes() for p in sorted(prep.glob("seg*.mp4"))])
    res: dict[str, Any] = {"site": site, "produced": [], "uploaded": [], "live_packets": 0, "errors": []}
    pc = RTCPeerConnection(configuration=rtc_configuration([], []))
    track = PacketTrack(max_backlog=10_000)
    tr = pc.addTransceiver(track, direction="sendonly")
    tr.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    )
    await pc.setLocalDescription(await pc.createOffer())
    body = {"site": site, "room": "r", "camera": "c", "sdp": pc.localDescription.sdp, "type": "offer"}
    r = await hubs.call("POST", "/api/ingest/offer", json=body)
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(**r.json()))

    async def live() -> None:
        # Paced by the packets' own capture times (the live encoder's 1/live_fps grid, or the
        # archive's 1/FPS), looping every `period` seconds.
        i, start = 0, time.monotonic()
        while not stop.is_set():
            loop_n, j = divmod(i, len(packets))
            data, rel, key = packets[j]
            await asyncio.sleep(max(0.0, start + loop_n * period + rel - time.monotonic()))
            if stop.is_set():
                break
            track.push(data, time.time(), key)
            i += 1

    async def put(start: float, k: int) -> None:
        data = seg_bytes[k % len(seg_bytes)]
        a = datetime.fromtimestamp(start, UTC).isoformat()
        b = datetime.fromtimestamp(start + SEG_S, UTC).isoformat()
        res["produced"].append(a)
        delay = 0.5
        for _ in range(30):
            try:
                rr = await hubs.call(
                    "PUT",
                    f"/api/ingest/segments/{site}/r/c",
                    params={"start": a, "end": b, "source": "live"},
                    content=data,
                    headers={
                        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
                        "Content-Type": "video/mp4",
                    },
                )
                if rr.status_code in (200, 201):
                    res["uploaded"].append(a)
                    return
                res["errors"].append(f"HTTP {rr.status_code}")
                if rr.status_code < 500:
                    return
            except Exception as e:
                res["errors"].append(f"{type(e).__name__}: {e}"[:200])
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    async def segments() -> None:
        # Like the agent: the first (partial) segment is not counted; then one per boundary.
        boundary = math.ceil(time.time() / SEG_S) * SEG_S
        k = 0
        pending: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(max(0.0, boundary + SEG_S - time.time()))
            if stop.is_set():
                break
            t = asyncio.create_task(put(boundary, k))
            pending.add(t)
            t.add_done_callback(pending.discard)
            boundary += SEG_S
            k += 1
        if pending:
            await asyncio.wait(pending, timeout=30)

    async def heartbeat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await hubs.call(
                    "POST", "/api/ingest/heartbeat", json={"site": site, "agent": {}, "cameras": []}
                )
            await asyncio.sleep(5)

    tasks = [asyncio.create_task(live()), asyncio.create_task(heartbeat())]
    if upload:
        tasks.append(asyncio.create_task(segments()))
    await stop.wait()
    if upload:
        await tasks[-1]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    res["live_packets"] = track.sent_packets
    res["hub"], res["hub_switches"] = hubs.url, hubs.switches
    track.stop()
    await pc.close()
    return res


def sim_farm(
    hub_urls: list[str],
    sites_tokens: list[tuple[str, str]],
    prep: Path,
    packets_path: Path,
    seconds: float,
    upload: bool,
    out: Path,
) -> None:
    import httpx

    from capture.ice import configure_ice

    configure_ice(["127.0.0.1"])
    doc = pickle.loads(packets_path.read_bytes())
    packets, period = doc["packets"], float(doc["period"])

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        asyncio.get_running_loop().call_later(seconds, stop.set)
        clients = [
            httpx.AsyncClient(headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            for _, tok in sites_tokens
        ]
        results = await asyncio.gather(
            *(
                _sim_camera(HubList(c, hub_urls), s, prep, packets, period, stop, upload)
                for c, (s, _) in zip(clients, sites_tokens, strict=True)
            ),
            return_exceptions=True,
        )
        for c in clients:
            await c.aclose()
        doc = json.dumps([r if isinstance(r, dict) else {"error": repr(r)} for r in results])
        await asyncio.to_thread(out.write_text, doc)

    asyncio.run(main())


# -- 3. one run --------------------------------------------------------------------------------------


def _mp4_seconds(p: Path) -> float:
    import av

    try:
        with av.open(str(p)) as c:
            st = c.streams.video[0]
            return float(st.duration * st.time_base) if st.duration and st.time_base else 0.0
    except Exception:
        return 0.0


def bench_config(
    path: Path,
    port: int,
    sites: dict[str, Any],
    tokens: dict[str, str],
    tmp: Path,
    live_fps: float | None,
    storage: dict[str, Any] | None = None,
) -> Path:
    """The bench hub's config (the simulated cameras' size, rate and segments; ``storage``
    settings added for the ``--hubs`` nodes)."""
    extra: dict[str, Any] = {
        "capture": {"heartbeat_seconds": 5.0, "live_fps": live_fps},
        "rules": {"offline_seconds": 5.0},
    }
    if storage:
        extra["storage"] = storage
    return write_config(
        path,
        port=port,
        sites=sites,
        tokens=tokens,
        spool_dir=tmp / "spool",
        segment_seconds=SEG_S,
        width=W,
        height=H,
        fps=FPS,
        bitrate_kbps=BITRATE_KBPS,
        extra=extra,
    )


def _start_farms(
    urls: list[str],
    sites: dict[str, Any],
    tokens: dict[str, str],
    prep: Path,
    packets_path: Path,
    total_s: float,
    upload: bool,
    tmp: Path,
    per_proc: int,
) -> tuple[list[subprocess.Popen[bytes]], list[list[str]]]:
    """The simulator processes (``per_proc`` cameras each, one per site), knowing hub ``urls``."""
    names = list(sites)
    groups = [names[i : i + per_proc] for i in range(0, len(names), per_proc)]
    farms = []
    for i, g in enumerate(groups):
        spec = ",".join(f"{s}:{tokens[s]}" for s in g)
        farms.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--_sim",
                    ",".join(urls),
                    spec,
                    str(prep),
                    str(packets_path),
                    str(total_s),
                    "1" if upload else "0",
                    str(tmp / f"sim{i}.json"),
                ],
                cwd=ROOT,
                stdout=open(tmp / f"sim{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
        )
    return farms, groups


def _collect_sims(tmp: Path, n_groups: int) -> list[dict[str, Any]]:
    sims: list[dict[str, Any]] = []
    for i in range(n_groups):
        p = tmp / f"sim{i}.json"
        sims += json.loads(p.read_text()) if p.exists() else [{"error": "simulator wrote no result"}]
    return sims


def run_once(
    n: int,
    prep: Path,
    clip: Path,
    window: float,
    baseline: bool,
    per_proc: int,
    live_fps: float | None = DEFAULT_LIVE_FPS,
) -> dict[str, Any]:
    """One run; ``live_fps`` = the simulated agents' ``capture.live_fps`` (evalwatch mode only:
    the baseline always streams the archive packets at the camera's rate)."""
    import httpx

    if baseline:
        live_fps = None
    tag = "base" if baseline else f"ew-live{live_stream_fps(live_fps):g}"
    tmp = workdir(f"evalwatch-bench-{n}-{tag}-")
    port = free_port()
    sites = {f"b{i:03d}": {"r": [("c", str(clip))]} for i in range(n)}
    tokens = {s: f"bench-token-{s}-0123456789" for s in sites}
    cfg_path = bench_config(tmp / "cfg.yaml", port, sites, tokens, tmp, live_fps)
    argv = [sys.executable, "-m", "testkit.capture", "--config", str(cfg_path), "--port", str(port)]
    argv += ["--store", f"dir:{tmp / 'store'}", "--log-level", "WARNING"]
    if baseline:
        argv += ["--baseline-dir", str(tmp / "baseline")]
    load = os.getloadavg()[0]
    hub = subprocess.Popen(argv, cwd=ROOT, stdout=open(tmp / "hub.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/test/status", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    warm = 10.0
    total_s = warm + window + 2
    farms, groups = _start_farms(
        [url], sites, tokens, prep, packets_file(prep, live_fps), total_s, not baseline, tmp, per_proc
    )

    def status() -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{url}/test/status", timeout=30).json())
        except httpx.HTTPError:
            return {"cameras": [], "unresponsive": True}

    time.sleep(warm)
    st0 = status()
    h0, a0, t0 = cpu_seconds([hub.pid]), cpu_seconds([f.pid for f in farms]), time.monotonic()
    time.sleep(window)
    h1, a1, t1 = cpu_seconds([hub.pid]), cpu_seconds([f.pid for f in farms]), time.monotonic()
    st1 = status()
    for f in farms:
        try:
            f.wait(total_s + 90)
        except subprocess.TimeoutExpired:
            f.kill()
    hub.send_signal(signal.SIGTERM)
    try:
        hub.wait(60)
    except subprocess.TimeoutExpired:
        hub.kill()
        hub.wait()
    el = t1 - t0
    unresponsive = bool(st0.get("unresponsive") or st1.get("unresponsive"))
    per_fps = (
        []  # a hub that did not answer /test/status at both ends has no valid fps figure
        if unresponsive
        else [(b["frames"] - a["frames"]) / el for a, b in zip(st0["cameras"], st1["cameras"], strict=True)]
    )
    res: dict[str, Any] = {
        "mode": "baseline" if baseline else "evalwatch",
        "streams": n,
        "live_fps": live_fps,
        "live_stream_fps": live_stream_fps(live_fps),
        "load_before": round(load, 2),
        "hub_cpu_pct": round(100 * (h1 - h0) / el, 1),
        "hub_cpu_pct_per_stream": round(100 * (h1 - h0) / el / n, 2),
        "sims_cpu_pct": round(100 * (a1 - a0) / el, 1),
        "hub_fps_per_stream": round(sum(per_fps) / n, 2) if per_fps else 0.0,
        "hub_fps_min": round(min(per_fps), 2) if per_fps else 0.0,
        "online": sum(1 for c in st1["cameras"] if c["online"]),
        "hub_unresponsive": unresponsive,
    }
    sims = _collect_sims(tmp, len(groups))
    res["sim_errors"] = sum(1 for s in sims if "error" in s) + sum(len(s.get("errors", [])) for s in sims)
    if baseline:
        files = list((tmp / "baseline").glob("*.mp4"))
        secs = sum(_mp4_seconds(p) for p in files)
        mb = sum(p.stat().st_size for p in files) / 1e6
        res["archive_mb_per_cam_hour"] = round(mb / (secs / 3600), 1) if secs else None
        res["recorded_streams"] = len(files)
    else:
        from capture.spool import fmt_stamp, parse_stamp

        lost = ok = produced = 0
        mb = secs = 0.0
        for s in sims:
            if "error" in s:
                continue
            d = tmp / "store" / s["site"] / "r" / "c"
            stored = {p.name.split("_")[0] for p in d.glob("*.mp4")}
            exp = {fmt_stamp(datetime.fromisoformat(a)) for a in s["produced"]}
            produced += len(exp)
            miss = exp - stored
            lost += len(miss)
            ok += bool(exp) and not miss
            for p in d.glob("*.mp4"):
                mb += p.stat().st_size / 1e6
                a, b = p.stem.split("_")
                secs += (parse_stamp(b) - parse_stamp(a)).total_seconds()
        res["segments_produced"] = produced
        res["segments_lost"] = lost + sum(1 for s in sims if "error" in s)
        res["streams_archived_0_lost"] = ok
        res["archive_mb_per_cam_hour"] = round(mb / (secs / 3600), 1) if secs else None
    res["tmp"] = str(tmp)
    return res


# -- several hub nodes: shared PostgreSQL + S3, site leases (issue #14) -----------------------------


class SharedInfra:
    """What the hub nodes share for ``--hubs``: one throwaway PostgreSQL server
    (``testkit.pg``, the tests' own) with a fresh database per run, and one SeaweedFS S3
    server (``storage.s3server.SeaweedServer``, the hub's embedded one) with fresh site names
    per run."""

    def __init__(self, root: Path) -> None:
        import uuid

        from storage.s3server import SeaweedPorts, SeaweedServer, free_ports
        from testkit.pg import INSTALL_HINT as PG_INSTALL_HINT
        from testkit.pg import PgCluster, pg_bindir

        self.pg_url = os.environ.get("EVALWATCH_TEST_PG_URL")
        self.pg: Any = None
        if not self.pg_url:
            bindir = pg_bindir()
            if bindir is None:
                raise SystemExit(f"--hubs needs PostgreSQL: {PG_INSTALL_HINT}")
            self.pg = PgCluster(bindir)
            self.pg.start()
            self.pg_url = self.pg.server_url
        self.root = root
        self.access, self.secret = "bench", "bench-secret-" + uuid.uuid4().hex
        self.s3 = SeaweedServer(root / "seaweed", self.access, self.secret, SeaweedPorts(*free_ports(8)),
                                grace_s=3.0, die_with_parent=True)  # fmt: skip
        self.s3.start()
        self.runs = 0

    def database(self) -> str:
        from testkit.pg import create_database

        assert self.pg_url
        return create_database(self.pg_url)

    def s3_config(self) -> dict[str, Any]:
        return {"endpoint": self.s3.endpoint, "embedded": False, "access_key": self.access,
                "secret_key": self.secret}  # fmt: skip

    def close(self) -> None:
        import shutil

        self.s3.stop()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)  # the S3 server's data: throwaway


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(
                f"hub {url} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            httpx.get(f"{url}/test/status", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"hub {url} did not answer within {timeout}s")


def run_hubs(
    n: int,
    hubs: int,
    prep: Path,
    clip: Path,
    window: float,
    per_proc: int,
    infra: SharedInfra,
    live_fps: float | None = DEFAULT_LIVE_FPS,
) -> dict[str, Any]:
    """``n`` simulated cameras (one per site) into ``hubs`` hub nodes — ``python -m
    testkit.capture --store s3 --node-id hub-K``: the capture stage with the real SegmentStore
    (PostgreSQL rows + hash chain, S3 objects, fenced appends) and a ``LeaseManager`` — sharing
    one fresh PostgreSQL database and the S3 server.  The lease table splits the sites; every
    simulated agent knows all the hubs' URLs, starts at the first and follows the 421s to its
    site's holder.  Lost = segments the simulators produced without a row of that start."""
    import httpx
    from sqlalchemy import select

    from storage.db import Database
    from storage.leases import db_now
    from storage.models import Segment, SiteLease

    infra.runs += 1
    tag = f"x{infra.runs}"
    tmp = workdir(f"evalwatch-bench-{n}-hubs{hubs}-")
    db_url = infra.database()
    db = Database(db_url)
    db.upgrade()  # once, before the nodes start (they would race to create the schema)
    sites = {f"{tag}-b{i:03d}": {"r": [("c", str(clip))]} for i in range(n)}
    tokens = {s: f"bench-token-{s}-0123456789" for s in sites}
    ports = [free_port() for _ in range(hubs)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    procs: list[subprocess.Popen[bytes]] = []
    load = os.getloadavg()[0]
    for k, port in enumerate(ports):
        storage = {"database_url": db_url, "wal_dir": str(tmp / f"wal{k}"), "s3": infra.s3_config()}
        cfg_path = bench_config(tmp / f"hub{k}.yaml", port, sites, tokens, tmp, live_fps, storage)
        argv = [sys.executable, "-m", "testkit.capture", "--config", str(cfg_path), "--port", str(port),
                "--store", "s3", "--node-id", f"hub-{k}", "--public-url", urls[k],
                "--log-level", "WARNING"]  # fmt: skip
        procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=open(tmp / f"hub{k}.log", "wb"),
                                      stderr=subprocess.STDOUT))  # fmt: skip
    for k, url in enumerate(urls):
        _wait_http(url, procs[k], tmp / f"hub{k}.log")

    def held() -> dict[str, int]:
        with db.session() as s:
            rows = s.execute(select(SiteLease.node_id, SiteLease.site_id).where(
                SiteLease.site_id.in_(list(sites)), SiteLease.expires_at > db_now(s)))  # fmt: skip
            out: dict[str, int] = {}
            for node, _site in rows:
                out[str(node)] = out.get(str(node), 0) + 1
            return out

    # The lease table splits the sites (the first node up takes them all, then hands over the
    # others' share at its next renewal, hub.lease_renew_seconds).
    share = math.ceil(n / hubs)
    t_split = time.monotonic()
    while True:
        h = held()
        if len(h) == hubs and all(v <= share for v in h.values()) and sum(h.values()) == n:
            break
        if time.monotonic() - t_split > 90:
            raise RuntimeError(f"the lease table did not split {n} sites over {hubs} nodes: {h}")
        time.sleep(0.5)
    split_s = time.monotonic() - t_split
    leases = dict(sorted(held().items()))
    warm = 10.0
    total_s = warm + window + 2
    farms, groups = _start_farms(urls, sites, tokens, prep, packets_file(prep, live_fps), total_s, True, tmp,
                                 per_proc)  # fmt: skip

    def status(url: str) -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{url}/test/status", timeout=30).json())
        except httpx.HTTPError:
            return {"cameras": [], "unresponsive": True}

    time.sleep(warm)
    st0 = [status(u) for u in urls]
    h0, a0, t0 = [cpu_seconds([p.pid]) for p in procs], cpu_seconds([f.pid for f in farms]), time.monotonic()
    time.sleep(window)
    h1, a1, t1 = [cpu_seconds([p.pid]) for p in procs], cpu_seconds([f.pid for f in farms]), time.monotonic()
    st1 = [status(u) for u in urls]
    for f in farms:
        try:
            f.wait(total_s + 90)
        except subprocess.TimeoutExpired:
            f.kill()
    for p in procs:
        p.send_signal(signal.SIGTERM)  # the store drains its WAL to S3, the node releases its leases
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    el = t1 - t0
    sims = _collect_sims(tmp, len(groups))
    with db.session() as s:
        rows = list(s.scalars(select(Segment).where(Segment.site.in_(list(sites)))))
    db.dispose()
    from capture.spool import fmt_stamp

    by_site: dict[str, list[Segment]] = {}
    for r in rows:
        by_site.setdefault(r.site, []).append(r)
    lost = ok = produced = dup = 0
    for sim in sims:
        if "error" in sim:
            continue
        got = by_site.get(sim["site"], [])
        starts = [fmt_stamp(r.start.astimezone(UTC)) for r in got]
        dup += len(starts) - len(set(starts))
        exp = {fmt_stamp(datetime.fromisoformat(a)) for a in sim["produced"]}
        produced += len(exp)
        miss = exp - set(starts)
        lost += len(miss)
        ok += bool(exp) and not miss
    unresponsive = any(x.get("unresponsive") for x in st0 + st1)
    frames = 0.0
    if not unresponsive:
        for a, b in zip(st0, st1, strict=True):
            frames += sum(y["frames"] - x["frames"] for x, y in zip(a["cameras"], b["cameras"], strict=True))
    cpu = [round(100 * (b - a) / el, 1) for a, b in zip(h0, h1, strict=True)]
    return {
        "mode": "hubs",
        "streams": n,
        "hubs": hubs,
        "live_fps": live_fps,
        "live_stream_fps": live_stream_fps(live_fps),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "lease_split_s": round(split_s, 1),
        "sites_per_hub": leases,
        "hub_cpu_pct_each": cpu,
        "hub_cpu_pct": round(sum(cpu), 1),
        "hub_cpu_pct_per_stream": round(sum(cpu) / n, 2),
        "sims_cpu_pct": round(100 * (a1 - a0) / el, 1),
        # every hub decodes only the live tracks of the sites it holds: summed over the nodes
        "hub_fps_per_stream": round(frames / el / n, 2) if not unresponsive else 0.0,
        # CPU per live frame the hubs decoded: comparable when a loaded machine starves the hubs
        "hub_cpu_ms_per_frame": round(1000 * sum(b - a for a, b in zip(h0, h1, strict=True)) / frames, 2)
        if frames and not unresponsive
        else None,
        "online": sum(1 for st in st1 for c in st.get("cameras", []) if c["online"]),
        "hub_unresponsive": unresponsive,
        "segments_produced": produced,
        "segments_lost": lost + sum(1 for x in sims if "error" in x),
        "segments_duplicated": dup,
        "segments_not_in_s3": sum(1 for r in rows if not r.uploaded),
        "streams_archived_0_lost": ok,
        "rows_per_node": {
            str(k): sum(1 for r in rows if r.node_id == k) for k in sorted({r.node_id for r in rows}, key=str)
        },
        "hub_switches": sum(int(x.get("hub_switches", 0)) for x in sims),
        "sim_errors": sum(1 for x in sims if "error" in x) + sum(len(x.get("errors", [])) for x in sims),
        "tmp": str(tmp),
    }


# -- agent CPU (real agent process, one camera or several) -------------------------------------------


def agent_cpu(
    clip: Path, cams: int, window: float, live_fps: float | None = DEFAULT_LIVE_FPS
) -> dict[str, Any]:
    """CPU of one real ``evalwatch agent`` process publishing ``cams`` cameras to a hub, its
    config with ``capture.live_fps: live_fps`` (None = null: no second, live encoder)."""
    import httpx

    tmp = workdir("evalwatch-agentcpu-")
    port = free_port()
    cfg = write_config(
        tmp / "cfg.yaml",
        port=port,
        sites={"s": {"r": [(f"c{i}", str(clip.resolve())) for i in range(cams)]}},
        tokens={"s": "agentcpu-token-0123456789"},
        spool_dir=tmp / "spool",
        segment_seconds=SEG_S,
        width=W,
        height=H,
        fps=FPS,
        bitrate_kbps=BITRATE_KBPS,
        extra={"capture": {"live_fps": live_fps}, "rules": {"offline_seconds": 5.0}},
    )
    hub = subprocess.Popen(
        [sys.executable, "-m", "testkit.capture", "--config", str(cfg), "--port", str(port),
         "--store", f"dir:{tmp / 'store'}", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/test/status", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    load = os.getloadavg()[0]
    ag = subprocess.Popen(
        [sys.executable, "-m", "evalwatch", "agent", "--config", str(cfg), "--site", "s",
         "--duration", str(window + 15), "--log-level", "WARNING"],
        cwd=ROOT,
    )  # fmt: skip
    time.sleep(8)
    st0 = httpx.get(f"{url}/test/status", timeout=30).json()
    c0, t0 = cpu_seconds([ag.pid]), time.monotonic()
    time.sleep(window)
    st1 = httpx.get(f"{url}/test/status", timeout=30).json()
    c1, t1 = cpu_seconds([ag.pid]), time.monotonic()
    ag.wait()
    hub.terminate()
    hub.wait()
    fr = sum(c["frames"] for c in st1["cameras"]) - sum(c["frames"] for c in st0["cameras"])
    return {
        "cameras": cams,
        "live_fps": live_fps,
        "live_stream_fps": live_stream_fps(live_fps),
        "agent_cpu_pct_per_camera": round(100 * (c1 - c0) / (t1 - t0) / cams, 1),
        "hub_fps_per_camera": round(fr / (t1 - t0) / cams, 2),
        "load_before": round(load, 2),
    }


def parse_hubs(spec: str) -> list[int]:
    """``"1,2"`` → [1, 2]: hub nodes per run."""
    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hubs {spec!r}: a comma list of node counts, e.g. 1,2") from None
    if not out or not all(1 <= h <= 8 for h in out):
        raise argparse.ArgumentTypeError(f"--hubs {spec!r}: each node count must be 1..8")
    return list(dict.fromkeys(out))


def hubs_table(rows: list[dict[str, Any]]) -> list[str]:
    """The ``--hubs`` table and, per stream count, each run's total hub CPU per stream over the
    1-hub run's (the first run of the sweep when there is no 1-hub run)."""
    out = [
        "| streams | hubs | load before/after | sites per hub | 0-lost streams "
        "| lost/produced segs | dup | hub CPU % each | hub CPU % total | hub CPU %/stream | vs 1 hub "
        "| sims CPU % | hub fps/stream | hub CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = next((x for x in rows if x["streams"] == r["streams"] and x["hubs"] == 1), None)
        ref = ref or next(x for x in rows if x["streams"] == r["streams"])
        ratio = (
            f"{r['hub_cpu_pct_per_stream'] / ref['hub_cpu_pct_per_stream']:.2f}x"
            if ref["hub_cpu_pct_per_stream"]
            else "n/a"
        )
        out.append(
            f"| {r['streams']} | {r['hubs']} | {r['load_before']}/{r['load_after']} | "
            f"{'/'.join(str(v) for v in r['sites_per_hub'].values())} | {r['streams_archived_0_lost']} | "
            f"{r['segments_lost']}/{r['segments_produced']} | {r['segments_duplicated']} | "
            f"{' + '.join(str(c) for c in r['hub_cpu_pct_each'])} | {r['hub_cpu_pct']} | "
            f"{r['hub_cpu_pct_per_stream']} | {ratio} | {r['sims_cpu_pct']} | {r['hub_fps_per_stream']} | "
            f"{r['hub_cpu_ms_per_frame']} |"
        )
    return out


def main_hubs(args: argparse.Namespace, prep: Path, clip: Path, live_rates: list[float | None]) -> int:
    """``--hubs``: per stream count, one run per node count, same clip, same infrastructure."""
    infra = SharedInfra(workdir("evalwatch-bench-infra-"))
    rows: list[dict[str, Any]] = []
    try:
        for n in [int(x) for x in args.streams.split(",")]:
            for lf in live_rates:
                for h in args.hubs:
                    r = run_hubs(n, h, prep, clip, args.window, args.cams_per_process, infra, lf)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
                    if args.json:
                        args.json.write_text(json.dumps(rows, indent=1))
    finally:
        infra.close()
    print()
    for line in hubs_table(rows):
        print(line)
    lost = sum(r["segments_lost"] for r in rows)
    print(f"segments lost over all runs: {lost}; duplicated: {sum(r['segments_duplicated'] for r in rows)}")
    return 0 if lost == 0 else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_sim":
        _, _, url, spec, prep, pkts, secs, upload, out = sys.argv
        st = [tuple(x.split(":", 1)) for x in spec.split(",")]
        sim_farm(url.split(","), st, Path(prep), Path(pkts), float(secs), upload == "1", Path(out))  # type: ignore[arg-type]
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="10,20,40", help="comma-separated sweep")
    ap.add_argument("--window", type=float, default=30.0, help="measurement window per run, s")
    ap.add_argument("--cams-per-process", type=int, default=20, help="simulated cameras per process")
    ap.add_argument("--source", help="640x480@15 clip (default: sample_videos/room_a.mp4 or generated)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--agent-cpu", type=int, metavar="CAMS", help="only measure a real agent's CPU/camera")
    ap.add_argument(
        "--live-fps",
        type=parse_live_fps,
        default=[DEFAULT_LIVE_FPS],
        metavar="R[,R...]",
        help=f"agents' capture.live_fps (default {DEFAULT_LIVE_FPS}, the config default); 0 or none ="
        " no live encoder: the archive's packets live at the camera rate; comma list = one run each",
    )
    ap.add_argument(
        "--hubs",
        type=parse_hubs,
        metavar="H[,H...]",
        help="hub nodes per run, e.g. 1,2: for each stream count, one run per value, each on a shared"
        " PostgreSQL + S3 with site leases (no baseline runs)",
    )
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every run's result here")
    ap.add_argument("--keep", action="store_true", help="keep the runs' work folders (logs)")
    args = ap.parse_args()
    global KEEP_WORK
    KEEP_WORK = args.keep
    live_rates: list[float | None] = list(dict.fromkeys(args.live_fps))  # dedupe, keep order
    clip = Path(args.source) if args.source else ROOT / "sample_videos" / "room_a.mp4"
    if not clip.exists():
        clip = make_clip(workdir("evalwatch-bench-clip-") / "bench.mp4", 10, W, H, int(FPS))
    print(f"source: {clip}  machine: {os.cpu_count()} cores, load {os.getloadavg()}", flush=True)
    if args.agent_cpu:
        res = []
        for lf in live_rates:
            a = agent_cpu(clip, args.agent_cpu, args.window, lf)
            print(json.dumps(a), flush=True)
            res.append(a)
        if len(res) > 1:
            ref = res[-1]
            for a in res[:-1]:
                ratio = (
                    f"{a['agent_cpu_pct_per_camera'] / ref['agent_cpu_pct_per_camera']:.2f}x"
                    if ref["agent_cpu_pct_per_camera"]
                    else "n/a"
                )
                print(
                    f"agent CPU %/camera, live {fmt_live(a['live_fps'])} vs {fmt_live(ref['live_fps'])}: "
                    f"{a['agent_cpu_pct_per_camera']} vs {ref['agent_cpu_pct_per_camera']} = {ratio}"
                )
        return 0
    prep_dir = prepare(clip, workdir("evalwatch-bench-prep-"), live_rates)
    print(
        f"pre-encoded: {len(list(prep_dir.glob('seg*.mp4')))} segments of {SEG_S:.0f} s in {prep_dir}",
        flush=True,
    )
    for lf in live_rates:
        d = pickle.loads(packets_file(prep_dir, lf).read_bytes())
        kb = sum(len(p[0]) for p in d["packets"]) * 8 / 1000 / d["period"]
        print(f"  live {fmt_live(lf)}: {len(d['packets'])} packets, {kb:.0f} kbit/s", flush=True)
    if args.hubs:
        return main_hubs(args, prep_dir, clip, live_rates)
    rows = []
    for n in [int(x) for x in args.streams.split(",")]:
        for lf in live_rates:
            r = run_once(n, prep_dir, clip, args.window, False, args.cams_per_process, lf)
            print(json.dumps(r), flush=True)
            rows.append(r)
        if not args.no_baseline:
            r = run_once(n, prep_dir, clip, args.window, True, args.cams_per_process)
            print(json.dumps(r), flush=True)
            rows.append(r)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(
        "\n| streams | mode | live fps | load before | 0-lost streams | lost/produced segs | hub CPU % "
        "| hub CPU %/stream | sims CPU % | hub fps/stream (min) | MB per cam-hour |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lost = f"{r['segments_lost']}/{r['segments_produced']}" if "segments_lost" in r else "-"
        print(
            f"| {r['streams']} | {r['mode']} | {fmt_live(r['live_fps'])} | {r['load_before']} | "
            f"{r.get('streams_archived_0_lost', '-')} | {lost} | {r['hub_cpu_pct']} | "
            f"{r['hub_cpu_pct_per_stream']} | {r['sims_cpu_pct']} | "
            f"{r['hub_fps_per_stream']} ({r['hub_fps_min']}) | {r['archive_mb_per_cam_hour']} |"
        )
    for n in sorted({r["streams"] for r in rows}):
        ours_all = [r for r in rows if r["streams"] == n and r["mode"] == "evalwatch"]
        base = next((r for r in rows if r["streams"] == n and r["mode"] == "baseline"), None)
        if len(ours_all) > 1 and ours_all[-1]["hub_cpu_pct"]:
            ref = ours_all[-1]
            for o in ours_all[:-1]:
                print(
                    f"N={n}: evalwatch hub CPU live {fmt_live(o['live_fps'])} / "
                    f"{fmt_live(ref['live_fps'])} = {o['hub_cpu_pct'] / ref['hub_cpu_pct']:.2f}x "
                    f"({o['hub_cpu_pct']} vs {ref['hub_cpu_pct']} %)"
                )
        if base and base["hub_unresponsive"]:
            print(f"N={n}: baseline INVALID - its hub stopped answering (overloaded); no ratio")
            continue
        for ours in ours_all:
            if (
                base
                and ours["hub_cpu_pct"]
                and ours["archive_mb_per_cam_hour"]
                and base["archive_mb_per_cam_hour"]
            ):
                print(
                    f"N={n} (live {fmt_live(ours['live_fps'])}): baseline/evalwatch hub CPU = "
                    f"{base['hub_cpu_pct'] / ours['hub_cpu_pct']:.2f}x, archive MB/cam-h = "
                    f"{base['archive_mb_per_cam_hour'] / ours['archive_mb_per_cam_hour']:.2f}x, "
                    f"hub fps/stream {ours['hub_fps_per_stream']} vs {base['hub_fps_per_stream']}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
