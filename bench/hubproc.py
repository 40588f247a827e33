"""What the whole-system benches share: the hub as its own process, simulated camera farms,
and stopping them all (``bench/wall.py``, ``bench/hub_analysis.py``, ``bench/soak.py``).

* :func:`start_hub` — ``python -m evalwatch hub --config CFG`` in its own session (process
  group), output to a log file; :func:`wait_healthy` polls ``/healthz``.
* :func:`spawn_farm` — a process running simulated agents for some sites
  (``python bench/hubproc.py --farm CFG --sites a,b``): real :class:`capture.agent.Agent`
  objects whose camera source replays H.264 packets pre-encoded once from the room's clip
  (``bench/latency.py``'s :class:`~bench.latency.PacketSource`), so the hub does its full
  receive / decode / analysis work.  With ``segments=True`` each simulated camera also drops a
  segment pre-encoded once from its clip (``segment_seconds`` long, by the agent's own
  :class:`capture.segmenter.SegmentWriter`) into the agent's spool at every segment boundary,
  so the agent's uploader PUTs a real archive segment stream (``bench/soak.py``).
* :func:`stop_all` — SIGINT to each process group, SIGKILL after ``timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def start_hub(
    cfg_path: Path, log_path: Path, env: dict[str, str] | None = None, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """The hub as its own process (own session: :func:`stop_all` signals its whole group)."""
    with open(log_path, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "evalwatch", "hub", "--config", str(cfg_path), *(extra or [])],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
            env={**os.environ, **(env or {})},
        )


async def wait_healthy(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120  # noqa: ASYNC109
) -> None:
    """Until ``url/healthz`` answers 200; RuntimeError when ``proc`` exits or on timeout."""
    import httpx

    t_end = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while time.monotonic() < t_end:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"hub exited with code {proc.returncode} before it was healthy")
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"hub at {url} not healthy after {timeout:.0f} s")


def spawn_farm(
    cfg_path: Path, sites: list[str], seconds: float, log: Path, *, segments: bool = False
) -> subprocess.Popen[bytes]:
    """A process of simulated agents for ``sites`` (module docstring), alive ``seconds``."""
    cmd = [sys.executable, str(ROOT / "bench" / "hubproc.py"), "--farm", str(cfg_path),
           "--sites", ",".join(sites), "--seconds", str(seconds)]
    with open(log, "wb") as fh:
        return subprocess.Popen(
            cmd + (["--segments"] if segments else []),
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
        )


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 40, *, reap: bool = False) -> None:
    """SIGINT every process group, wait, SIGKILL the groups still there.  ``timeout`` outlasts a
    hub's clean stop with the embedded SeaweedFS (~15 s for weed alone, storage.s3).  ``reap``:
    then also SIGTERM (5 s later SIGKILL) every descendant that outlived its parent — a bench
    that only wants the machine clean; the soak leaves them, it counts them as orphans."""
    from testkit.procs import alive, descendants

    kids = {q for p in procs for q in descendants(p.pid)} if reap else set()
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [q for q in kids if alive(q)]
        for q in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(q, sig)
        if left and sig == signal.SIGTERM:
            time.sleep(5)


#: (clip, width, height, fps, seconds) -> the bytes of one pre-encoded archive segment.
SEGMENTS: dict[tuple[str, int, int, float, float], bytes] = {}


def presegment(clip: str, width: int, height: int, fps: float, seconds: float) -> bytes:
    """One archive segment of ``seconds`` from the start of ``clip``, made by the agent's own
    :class:`~capture.segmenter.SegmentWriter` (the same MP4 an agent uploads)."""
    import av

    from capture.spool import Spool

    key = (clip, width, height, fps, seconds)
    if key in SEGMENTS:
        return SEGMENTS[key]
    from capture.segmenter import SegmentWriter

    with tempfile.TemporaryDirectory(prefix="evalwatch-presegment-") as tmp:
        spool = Spool(tmp, max_mb=1024)
        w = SegmentWriter(spool, "s", "r", "c", width=width, height=height, fps=fps,
                          segment_seconds=seconds, bitrate_kbps=200)
        base = math.ceil(time.time() / seconds) * seconds  # on a boundary: a full segment
        n_frames = round(seconds * fps) + 1  # the last frame opens the next segment
        i = 0
        path = str(ROOT / clip) if not os.path.isabs(clip) else clip
        while i < n_frames:
            with av.open(path) as src:
                for frame in src.decode(video=0):
                    if i >= n_frames:
                        break
                    w.write(frame, base + i / fps)
                    i += 1
        segs = spool.segments()
        assert segs, f"no segment made from {clip}"
        SEGMENTS[key] = segs[0].path.read_bytes()
    return SEGMENTS[key]


def run_farm(cfg_path: str, sites: list[str], seconds: float, segments: bool = False) -> None:
    """``bench/latency.py``'s simulated agents, tolerating camera-source options it does not
    know; with ``segments`` they also spool a pre-encoded segment per boundary."""
    import bench.latency as lat
    from config import load_config

    cfg = load_config(cfg_path)
    seg_s = float(cfg.storage.segment_seconds)
    if segments:
        for site in sites:
            for room in cfg.site(site).rooms:
                for cam in room.cameras:
                    presegment(cam.source, cam.width, cam.height, cam.fps, seg_s)

    class Source(lat.PacketSource):
        def __init__(self, source: str, **kw: Any) -> None:
            known = ("width", "height", "fps", "loop", "on_frame", "label")
            super().__init__(source, **{k: v for k, v in kw.items() if k in known})
            self.size = (int(kw["width"]), int(kw["height"]))
            if segments:
                import threading

                self._seg_thread = threading.Thread(target=self._segments, name=f"seg-{self.label}",
                                                    daemon=True)

        def start(self) -> None:
            super().start()
            if segments:
                self._seg_thread.start()

        def _segments(self) -> None:
            """At every boundary, the pre-encoded segment for the window just ended."""
            from datetime import UTC, datetime

            pipe, agent = self.pipe, self.pipe.agent
            data = SEGMENTS[(self.source, *self.size, self.cam_fps, seg_s)]
            nxt = math.ceil(time.time() / seg_s) * seg_s + seg_s  # a full window from now
            while not self._stop.wait(max(0.0, nxt + 0.2 - time.time())):
                start = datetime.fromtimestamp(nxt - seg_s, tz=UTC)
                end = datetime.fromtimestamp(nxt, tz=UTC)
                spool = agent.spool
                path = spool.path_for(pipe.site, pipe.room, pipe.camera, start, end)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name("." + path.name + ".part")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                pipe.writer.segments_written += 1
                spool.enforce_quota()
                agent.segment_ready()
                nxt += seg_s

    lat.PacketSource = Source  # type: ignore[misc]
    lat.farm(cfg_path, sites, seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description="simulated camera farm (internal to the benches)")
    ap.add_argument("--farm", required=True, help="config file")
    ap.add_argument("--sites", default="")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--segments", action="store_true")
    args = ap.parse_args()
    run_farm(args.farm, [s for s in args.sites.split(",") if s], args.seconds, args.segments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
