"""A minimal hub for the capture tests, the fault tests and ``bench/ingest.py``.

``python -m capture.testing --config CFG --port P --store dir:PATH`` serves the ingest router and
a :class:`~capture.recorder.Recorder` on 127.0.0.1 with uvicorn — just the capture stage, without
analysis or the dashboard (``evalwatch hub`` composes the real thing).  ``--store`` picks the
segment store: ``dir:PATH`` (:class:`DirSegmentStore`, a durable file-per-segment store with the
same interface as ``storage.segments.SegmentStore``) or ``s3`` (the real SegmentStore on
``storage.s3``, ``storage.database_url`` and ``storage.wal_dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from capture.ingest import make_router
from capture.recorder import BufferedFrameSink, Recorder
from capture.spool import fmt_time, parse_time
from config.models import EvalwatchConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentMeta:
    site: str
    room: str
    camera: str
    start: datetime
    end: datetime
    content_type: str = "video/mp4"
    source: str = "live"


@dataclass(frozen=True)
class SegmentRecord:
    id: str
    meta: SegmentMeta
    sha256: str
    size: int


class SegmentConflict(Exception):
    """Different bytes for an already stored (camera, start)."""


class DirSegmentStore:
    """Durable segment store on a directory: ``root/site/room/camera/<start>_<end>.mp4``.

    Idempotent for identical bytes at the same (camera, start); different bytes at the same key
    raise ``ValueError``.  Writes are atomic (tmp + fsync + rename).  Mirrors the interface of
    ``storage.segments.SegmentStore`` for tests that must not depend on S3.
    """

    meta_class = SegmentMeta

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.puts = 0
        self.duplicates = 0

    def _dir(self, site: str, room: str, camera: str) -> Path:
        return self.root / site / room / camera

    async def put(self, meta: Any, data: bytes) -> SegmentRecord:
        return await asyncio.to_thread(self._put, meta, data)

    def _put(self, meta: Any, data: bytes) -> SegmentRecord:
        d = self._dir(meta.site, meta.room, meta.camera)
        d.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(data).hexdigest()
        for old in d.glob(f"{fmt_time(meta.start)}_*.mp4"):
            if hashlib.sha256(old.read_bytes()).hexdigest() == sha:
                self.duplicates += 1
                return SegmentRecord(old.stem, meta, sha, len(data))
            raise SegmentConflict(f"a different segment is already stored at {meta.camera} {meta.start}")
        name = f"{fmt_time(meta.start)}_{fmt_time(meta.end)}"
        tmp = d / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / f"{name}.mp4")
        (d / f"{name}.json").write_text(json.dumps({"source": meta.source, "sha256": sha}))
        self.puts += 1
        return SegmentRecord(name, meta, sha, len(data))

    def list(self, site: str, room: str, camera: str) -> list[tuple[datetime, datetime, Path]]:
        out = []
        for p in self._dir(site, room, camera).glob("*.mp4"):
            a, b = p.stem.split("_")
            out.append((parse_time(a), parse_time(b), p))
        return sorted(out)

    async def missing_ranges(
        self, site: str, room: str, camera: str, start: datetime, end: datetime, tolerance_s: float = 0.5
    ) -> builtins.list[tuple[datetime, datetime]]:
        have = await asyncio.to_thread(self.list, site, room, camera)
        return gaps([(a, b) for a, b, _ in have], start, end, tolerance_s)


def gaps(
    have: list[tuple[datetime, datetime]], start: datetime, end: datetime, tolerance_s: float = 0.5
) -> list[tuple[datetime, datetime]]:
    """Sub-ranges of [start, end) not covered by ``have`` (gaps <= tolerance are ignored)."""
    out: list[tuple[datetime, datetime]] = []
    cur = start
    for a, b in sorted(have):
        if b <= cur:
            continue
        if a > cur and (a - cur).total_seconds() > tolerance_s:
            out.append((cur, min(a, end)))
        cur = max(cur, b)
        if cur >= end:
            break
    if cur < end and (end - cur).total_seconds() > tolerance_s:
        out.append((cur, end))
    return [(a, b) for a, b in out if b > a]


async def _baseline_recorders(recorder: Recorder, cfg: EvalwatchConfig, out: Path) -> None:
    """Bench baseline: record every live track on the hub with aiortc MediaRecorder (re-encode)."""
    from aiortc.contrib.media import MediaRecorder

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    recs: dict[str, Any] = {}
    try:
        while True:
            for site, room, cam in cfg.cameras():
                name = f"{site.id}-{room.id}-{cam.id}"
                if name in recs:
                    continue
                track = recorder.live_track(site.id, room.id, cam.id)
                if track is None:
                    continue
                mr = MediaRecorder(str(out / f"{name}.mp4"))
                mr.addTrack(track)
                await mr.start()
                recs[name] = mr
            await asyncio.sleep(1.0)
    finally:
        for mr in recs.values():
            with contextlib.suppress(Exception):
                await mr.stop()


def build_app(
    cfg: EvalwatchConfig, store: Any, sink: Any = None, baseline_dir: Path | None = None
) -> tuple[FastAPI, Recorder]:
    recorder = Recorder(cfg, sink)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db = getattr(store, "db", None)
        if db is not None:  # the real SegmentStore: migrate, buckets, WAL recovery
            await asyncio.to_thread(db.upgrade)
            await store.objects.ensure_buckets()
            await store.start()
        await recorder.start()
        base = asyncio.create_task(_baseline_recorders(recorder, cfg, baseline_dir)) if baseline_dir else None
        try:
            yield
        finally:
            if base is not None:
                base.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await base
            await recorder.close()
            if db is not None:
                await (getattr(store, "close", None) or store.stop)()
                db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(make_router(recorder, store, cfg))

    @app.get("/test/status")
    async def status() -> JSONResponse:
        sink_info = {"submitted": getattr(sink, "submitted", None), "dropped": getattr(sink, "dropped", None)}
        return JSONResponse(
            {
                "cameras": [
                    {
                        "camera": s.camera,
                        "online": s.online,
                        "frames": s.frames,
                        "fps": s.fps,
                        "segments": s.segments,
                        "connection": s.connection,
                        "agent": s.agent,
                    }
                    for s in recorder.status()
                ],
                "sink": sink_info,
                "time": datetime.now(UTC).isoformat(),
            }
        )

    return app, recorder


def make_store(spec: str, cfg: EvalwatchConfig) -> Any:
    if spec.startswith("dir:"):
        return DirSegmentStore(spec[4:])
    if spec == "s3":
        from storage.db import Database
        from storage.objects import ObjectStore
        from storage.segments import SegmentStore

        st = cfg.storage
        return SegmentStore(
            ObjectStore(st.s3),
            Database(st.database_url),
            Path(st.wal_dir),
            st.s3.bucket_segments,
            retry_max_s=2.0,
        )
    raise SystemExit(f"unknown --store {spec!r} (dir:PATH or s3)")


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from config import load_config

    ap = argparse.ArgumentParser(prog="python -m capture.testing")
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--baseline-dir", help="bench: also re-encode every track with MediaRecorder here")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = load_config(args.config)
    base = Path(args.baseline_dir) if args.baseline_dir else None
    app, _rec = build_app(cfg, make_store(args.store, cfg), BufferedFrameSink(256), base)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- helpers for tests and the bench ---------------------------------------------------------------


def make_clip(
    path: str | Path, seconds: float = 4.0, width: int = 320, height: int = 240, fps: int = 15
) -> Path:
    """A small H.264 MP4 with moving content (a bar sweeping across a gradient)."""
    import av
    import numpy as np

    path = Path(path)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        base = np.tile(np.linspace(0, 200, width, dtype=np.uint8), (height, 1))
        for i in range(int(seconds * fps)):
            img = np.stack([base, np.roll(base, i * 4, axis=1), np.full_like(base, 80)], axis=-1)
            x = (i * 7) % width
            img[:, x : x + 12] = 255
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def write_config(
    path: str | Path,
    *,
    port: int,
    sites: dict[str, dict[str, list[tuple[str, str]]]],
    tokens: dict[str, str],
    spool_dir: str | Path,
    segment_seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: float = 15.0,
    bitrate_kbps: int = 250,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an evalwatch YAML (+ secrets file with the agent ``tokens``) for tests/bench.

    ``sites`` = {site: {room: [(camera, source), ...]}}.
    """
    import yaml

    path = Path(path)
    secrets = path.with_name(path.stem + ".secrets.yaml")
    secrets.write_text(yaml.safe_dump({f"sites.{s}.agent_token": t for s, t in tokens.items()}))
    os.chmod(secrets, 0o600)
    doc: dict[str, Any] = {
        "hub": {"listen_host": "127.0.0.1", "listen_port": port, "ice_interfaces": ["127.0.0.1"]},
        "storage": {"segment_seconds": segment_seconds},
        "capture": {
            "spool_dir": str(spool_dir),
            "heartbeat_seconds": 1.0,
            "reconnect_min_seconds": 0.5,
            "reconnect_max_seconds": 3.0,
            "bitrate_kbps": bitrate_kbps,
        },
        "rules": {"offline_seconds": 3.0},
        "secrets_file": str(secrets),
        "sites": [
            {
                "id": s,
                "rooms": [
                    {
                        "id": r,
                        "cameras": [
                            {"id": c, "source": str(src), "width": width, "height": height, "fps": fps}
                            for c, src in cams
                        ],
                    }
                    for r, cams in rooms.items()
                ],
            }
            for s, rooms in sites.items()
        ],
    }
    for k, v in (extra or {}).items():
        doc.setdefault(k, {}).update(v)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that a test can cut (close listener + all connections, so
    clients see refused/reset connections) and restore — a site's uplink going down."""

    def __init__(self, listen_port: int, target_port: int):
        import threading

        self.listen_port, self.target_port = listen_port, target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        self._writers |= {w, tw}
        await asyncio.gather(self._pipe(r, tw), self._pipe(tr, w))
        self._writers -= {w, tw}

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
