"""Ingest benchmark: N concurrent camera streams (640x480 @ 15 fps) into one hub on this machine.

    python bench/ingest.py                              # 10,20,40 streams, 30 s window, + baseline
    python bench/ingest.py --streams 40 --window 60 --no-baseline
    python bench/ingest.py --streams 40 --live-fps 5,0 --no-baseline   # new and old live rate
    python bench/ingest.py --agent-cpu 3                # real agent process: CPU per camera
    python bench/ingest.py --agent-cpu 1 --live-fps 5,0 # ... with and without the live encoder

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
import tempfile
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


async def _sim_camera(
    http: Any,
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
    r = await http.post("/api/ingest/offer", json=body)
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
                rr = await http.put(
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
                await http.post("/api/ingest/heartbeat", json={"site": site, "agent": {}, "cameras": []})
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
    track.stop()
    await pc.close()
    return res


def sim_farm(
    hub_url: str,
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
            httpx.AsyncClient(base_url=hub_url, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            for _, tok in sites_tokens
        ]
        results = await asyncio.gather(
            *(
                _sim_camera(c, s, prep, packets, period, stop, upload)
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
    tmp = Path(tempfile.mkdtemp(prefix=f"evalwatch-bench-{n}-{tag}-"))
    port = free_port()
    sites = {f"b{i:03d}": {"r": [("c", str(clip))]} for i in range(n)}
    tokens = {s: f"bench-token-{s}-0123456789" for s in sites}
    cfg_path = write_config(
        tmp / "cfg.yaml",
        port=port,
        sites=sites,
        tokens=tokens,
        spool_dir=tmp / "spool",
        segment_seconds=SEG_S,
        width=W,
        height=H,
        fps=FPS,
        bitrate_kbps=BITRATE_KBPS,
        extra={
            "capture": {"heartbeat_seconds": 5.0, "live_fps": live_fps},
            "rules": {"offline_seconds": 5.0},
        },
    )
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
    names = list(sites)
    groups = [names[i : i + per_proc] for i in range(0, n, per_proc)]
    farms = []
    for i, g in enumerate(groups):
        spec = ",".join(f"{s}:{tokens[s]}" for s in g)
        farms.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--_sim",
                    url,
                    spec,
                    str(prep),
                    str(packets_file(prep, live_fps)),
                    str(total_s),
                    "0" if baseline else "1",
                    str(tmp / f"sim{i}.json"),
                ],
                cwd=ROOT,
                stdout=open(tmp / f"sim{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
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
    sims: list[dict[str, Any]] = []
    for i in range(len(groups)):
        p = tmp / f"sim{i}.json"
        sims += json.loads(p.read_text()) if p.exists() else [{"error": "simulator wrote no result"}]
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


# -- agent CPU (real agent process, one camera or several) -------------------------------------------


def agent_cpu(
    clip: Path, cams: int, window: float, live_fps: float | None = DEFAULT_LIVE_FPS
) -> dict[str, Any]:
    """CPU of one real ``evalwatch agent`` process publishing ``cams`` cameras to a hub, its
    config with ``capture.live_fps: live_fps`` (None = null: no second, live encoder)."""
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="evalwatch-agentcpu-"))
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


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_sim":
        _, _, url, spec, prep, pkts, secs, upload, out = sys.argv
        st = [tuple(x.split(":", 1)) for x in spec.split(",")]
        sim_farm(url, st, Path(prep), Path(pkts), float(secs), upload == "1", Path(out))  # type: ignore[arg-type]
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
    args = ap.parse_args()
    live_rates: list[float | None] = list(dict.fromkeys(args.live_fps))  # dedupe, keep order
    clip = Path(args.source) if args.source else ROOT / "sample_videos" / "room_a.mp4"
    if not clip.exists():
        clip = make_clip(Path(tempfile.mkdtemp()) / "bench.mp4", 10, W, H, int(FPS))
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
    prep_dir = prepare(clip, Path(tempfile.mkdtemp(prefix="evalwatch-bench-prep-")), live_rates)
    print(
        f"pre-encoded: {len(list(prep_dir.glob('seg*.mp4')))} segments of {SEG_S:.0f} s in {prep_dir}",
        flush=True,
    )
    for lf in live_rates:
        d = pickle.loads(packets_file(prep_dir, lf).read_bytes())
        kb = sum(len(p[0]) for p in d["packets"]) * 8 / 1000 / d["period"]
        print(f"  live {fmt_live(lf)}: {len(d['packets'])} packets, {kb:.0f} kbit/s", flush=True)
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
