"""Ingest benchmark: N concurrent site agents streaming 640x480@15fps to one hub on this machine.

    python bench/ingest.py                     # sweep 10,20,40 streams, 30 s window each
    python bench/ingest.py --streams 40 --window 60

For each N, two runs with the same agents and source clip:

* **evalwatch** — agents encode + spool + upload their own MP4 segments, publish live over
  WebRTC; the hub (``capture.testing`` = Recorder + ingest router + a directory segment store)
  decodes the live track for status/analysis sampling and stores the uploaded bytes.
* **baseline** — agents publish live only (``--no-live`` off, archive off); the hub records every
  track with aiortc ``MediaRecorder`` (decode + re-encode on the hub).

Measured: streams archived with 0 lost segments (agent spool vs hub store), hub CPU (from
/proc, % of one core, per stream), agents' CPU (separate processes, reported so the hub number
is not flattered), received fps at the hub, archive MB per camera-hour.  Agents run in a few
"farm" processes (several Agent objects per process) to fit the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from capture.spool import Spool  # noqa: E402
from capture.testing import make_clip, write_config  # noqa: E402
from storage.s3server import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        except (FileNotFoundError, IndexError):
            pass
    return total


def farm(cfg_path: str, sites: list[str], archive: bool, seconds: float) -> None:
    """Run several agents in one process (bench helper)."""
    from capture.agent import Agent, _setup_logging
    from config import load_config

    _setup_logging("WARNING")
    cfg = load_config(cfg_path)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        agents = [Agent(cfg, s, preset="veryfast") for s in sites]
        if not archive:  # baseline: no segment encoding/upload, live only
            for a in agents:
                a.live_enabled = True
        await asyncio.gather(*(a.run(stop, duration=seconds) for a in agents))

    if not archive:
        import capture.agent as ag

        class _NoEncoder:
            def __init__(self, writer: Any, max_queue: int = 0) -> None:
                self.writer, self.dropped = writer, 0

            def submit(self, frame: Any, ts: float) -> None:
                pass

            def stop(self, timeout: float = 0) -> None:
                pass

        ag.EncoderThread = _NoEncoder  # type: ignore[misc,assignment]
    asyncio.run(main())


def run_once(n: int, clip: Path, window: float, baseline: bool, procs_per_farm: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"evalwatch-bench-{n}-"))
    port = free_port()
    sites = {f"b{i:03d}": {"r": [("c", str(clip))]} for i in range(n)}
    cfg_path = write_config(
        tmp / "cfg.yaml",
        port=port,
        sites=sites,
        tokens={s: f"bench-token-{s}-0123456789" for s in sites},
        spool_dir=tmp / "spool",
        segment_seconds=10.0,
        width=640,
        height=480,
        fps=15.0,
        bitrate_kbps=250,
        extra={"capture": {"heartbeat_seconds": 5.0}, "rules": {"offline_seconds": 5.0}},
    )
    hub_argv = [
        sys.executable,
        "-m",
        "capture.testing",
        "--config",
        str(cfg_path),
        "--port",
        str(port),
        "--store",
        f"dir:{tmp / 'store'}",
        "--log-level",
        "WARNING",
    ]
    if baseline:
        hub_argv += ["--baseline-dir", str(tmp / "baseline")]
    hub_log = open(tmp / "hub.log", "wb")
    hub = subprocess.Popen(hub_argv, cwd=ROOT, stdout=hub_log, stderr=subprocess.STDOUT)
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/test/status", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    names = list(sites)
    groups = [names[i : i + procs_per_farm] for i in range(0, n, procs_per_farm)]
    total_s = window + 20
    farms = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--_farm",
                str(cfg_path),
                ",".join(g),
                "0" if baseline else "1",
                str(total_s),
            ],
            cwd=ROOT,
            stdout=open(tmp / f"farm{i}.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for i, g in enumerate(groups)
    ]
    def status() -> dict[str, Any]:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}/test/status", timeout=60).json())
        except httpx.HTTPError:  # an overloaded hub (the baseline) may not answer at all
            return {"cameras": [], "unresponsive": True}

    time.sleep(12)  # connect + warm up
    st0 = status()
    h0, a0, t0 = cpu_seconds([hub.pid]), cpu_seconds([f.pid for f in farms]), time.monotonic()
    time.sleep(window)
    h1, a1, t1 = cpu_seconds([hub.pid]), cpu_seconds([f.pid for f in farms]), time.monotonic()
    st1 = status()
    for f in farms:
        try:
            f.wait(total_s + 60)
        except subprocess.TimeoutExpired:
            f.kill()
    time.sleep(3)
    hub.send_signal(signal.SIGTERM)
    try:
        hub.wait(30)
    except subprocess.TimeoutExpired:
        hub.kill()
        hub.wait()
    el = t1 - t0
    frames = sum(c["frames"] for c in st1["cameras"]) - sum(c["frames"] for c in st0["cameras"])
    res: dict[str, Any] = {
        "mode": "baseline" if baseline else "evalwatch",
        "streams": n,
        "hub_cpu_pct": round(100 * (h1 - h0) / el, 1),
        "hub_cpu_pct_per_stream": round(100 * (h1 - h0) / el / n, 2),
        "agents_cpu_pct": round(100 * (a1 - a0) / el, 1),
        "hub_fps_per_stream": round(frames / el / n, 2),
        "online": sum(1 for c in st1["cameras"] if c["online"]),
        "hub_unresponsive": bool(st0.get("unresponsive") or st1.get("unresponsive")),
    }
    if baseline:
        files = list((tmp / "baseline").glob("*.mp4"))
        mb = sum(p.stat().st_size for p in files) / 1e6
        res["archive_mb_per_cam_hour"] = round(mb / n / (total_s / 3600), 1)
    else:
        spool = Spool(tmp / "spool", 10**6)
        lost = 0
        ok_streams = 0
        mb = 0.0
        secs = 0.0
        for s in sites:
            local = {x.start for x in spool.segments(s, "r", "c")}
            stored = {p.name.split("_")[0] for p in (tmp / "store" / s / "r" / "c").glob("*.mp4")}
            from capture.spool import fmt_time

            missing = [t for t in local if fmt_time(t) not in stored]
            lost += len(missing)
            ok_streams += not missing and bool(local)
            for p in (tmp / "store" / s / "r" / "c").glob("*.mp4"):
                mb += p.stat().st_size / 1e6
            for x in spool.segments(s, "r", "c"):
                secs += (x.end - x.start).total_seconds()
        res["segments_lost"] = lost
        res["streams_archived_0_lost"] = ok_streams
        res["archive_mb_per_cam_hour"] = round(mb / (secs / 3600), 1) if secs else None
    res["tmp"] = str(tmp)
    return res


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_farm":
        farm(sys.argv[2], sys.argv[3].split(","), sys.argv[4] == "1", float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="10,20,40", help="comma-separated sweep")
    ap.add_argument("--window", type=float, default=30.0, help="measurement window per run, s")
    ap.add_argument("--agents-per-process", type=int, default=10)
    ap.add_argument("--source", help="640x480@15 clip (default: sample_videos/*.mp4 or generated)")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    clip = Path(args.source) if args.source else None
    if clip is None:
        found = sorted((ROOT / "sample_videos").glob("*.mp4"))
        clip = found[0] if found else make_clip(Path(tempfile.mkdtemp()) / "bench.mp4", 10, 640, 480, 15)
    print(f"source: {clip}", flush=True)
    rows = []
    for n in [int(x) for x in args.streams.split(",")]:
        for baseline in [False] if args.no_baseline else [False, True]:
            r = run_once(n, clip, args.window, baseline, args.agents_per_process)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print(
        "\n| streams | mode | 0-lost streams | lost segs | hub CPU % | hub CPU %/stream | agents CPU % "
        "| hub fps/stream | MB per cam-hour |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['streams']} | {r['mode']} | {r.get('streams_archived_0_lost', '-')} | "
            f"{r.get('segments_lost', '-')} | {r['hub_cpu_pct']} | {r['hub_cpu_pct_per_stream']} | "
            f"{r['agents_cpu_pct']} | {r['hub_fps_per_stream']} | {r['archive_mb_per_cam_hour']} |"
        )
    for n in sorted({r["streams"] for r in rows}):
        ours = next((r for r in rows if r["streams"] == n and r["mode"] == "evalwatch"), None)
        base = next((r for r in rows if r["streams"] == n and r["mode"] == "baseline"), None)
        if ours and base and ours["hub_cpu_pct"] and ours["archive_mb_per_cam_hour"]:
            print(
                f"N={n}: baseline/evalwatch hub CPU = {base['hub_cpu_pct'] / ours['hub_cpu_pct']:.2f}x, "
                f"archive size = {base['archive_mb_per_cam_hour'] / ours['archive_mb_per_cam_hour']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
