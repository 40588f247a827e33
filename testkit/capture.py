"""A minimal hub for the capture tests, the fault tests and ``bench/ingest.py``.

``python -m testkit.capture --config CFG --port P --store dir:PATH`` serves the ingest router and
a :class:`~capture.recorder.Recorder` on 127.0.0.1 (``--host ADDR``, repeatable, to listen
elsewhere too) with uvicorn — just the capture stage, without analysis or the dashboard
(``evalwatch hub`` composes the real thing).  ``--store`` picks the
segment store: ``dir:PATH`` (:class:`DirSegmentStore`, a durable file-per-segment store with the
same interface as ``storage.segments.SegmentStore``) or ``s3`` (the real SegmentStore on
``storage.s3``, ``storage.database_url`` and ``storage.wal_dir``).  With ``--store s3 --node-id
ID`` it is one hub node of several sharing that database and S3 (``bench/ingest.py --hubs``): a
``storage.leases.LeaseManager`` (``hub.lease_*``) takes its share of the config's sites, the
ingest API answers 421 + the holder for the others, and every append is fenced, like
``evalwatch hub`` does.
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
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from capture.ingest import make_router
from capture.recorder import BufferedFrameSink, Recorder
from capture.spool import fmt_stamp, parse_stamp
from config.models import EvalwatchConfig
from storage.segments import SegmentConflict, SegmentMeta, SegmentRecord

log = logging.getLogger(__name__)


class DirSegmentStore:
    """Durable segment store on a directory: ``root/site/room/camera/<start>_<end>.mp4``.

    Idempotent for identical bytes at the same (camera, start); different bytes at the same key
    raise :class:`storage.segments.SegmentConflict`.  Writes are atomic (tmp + fsync + rename).
    Mirrors the interface of ``storage.segments.SegmentStore`` for tests that must not depend on
    S3 or a database: the same ``SegmentMeta`` in, a ``SegmentRecord`` out (numbered per store;
    no hash chain, so ``prev_hash``/``link_hash`` are empty).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.puts = 0
        self.duplicates = 0
        self._ids: dict[str, int] = {}

    def _dir(self, site: str, room: str, camera: str) -> Path:
        return self.root / site / room / camera

    async def put(self, meta: SegmentMeta, data: bytes) -> SegmentRecord:
        return await asyncio.to_thread(self._put, meta, data)

    def _record(self, meta: SegmentMeta, name: str, sha: str, size: int) -> SegmentRecord:
        key = f"{meta.site}/{meta.room}/{meta.camera}/{name}.mp4"
        n = self._ids.setdefault(key, len(self._ids) + 1)
        return SegmentRecord(
            id=n, site=meta.site, room=meta.room, camera=meta.camera, start=meta.start, end=meta.end,
            key=key, sha256=sha, size=size, content_type=meta.content_type, source=meta.source, seq=n,
            prev_hash="", link_hash="", uploaded=True, created_at=datetime.now(UTC),
        )

    def _put(self, meta: SegmentMeta, data: bytes) -> SegmentRecord:
        d = self._dir(meta.site, meta.room, meta.camera)
        d.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(data).hexdigest()
        for old in d.glob(f"{fmt_stamp(meta.start)}_*.mp4"):
            if hashlib.sha256(old.read_bytes()).hexdigest() == sha:
                self.duplicates += 1
                return self._record(meta, old.stem, sha, len(data))
            raise SegmentConflict(f"a different segment is already stored at {meta.camera} {meta.start}")
        name = f"{fmt_stamp(meta.start)}_{fmt_stamp(meta.end)}"
        tmp = d / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / f"{name}.mp4")
        (d / f"{name}.json").write_text(json.dumps({"source": meta.source, "sha256": sha}))
        self.puts += 1
        return self._record(meta, name, sha, len(data))

    def list(self, site: str, room: str, camera: str) -> list[tuple[datetime, datetime, Path]]:
        out = []
        for p in self._dir(site, room, camera).glob("*.mp4"):
            a, b = p.stem.split("_")
            out.append((parse_stamp(a), parse_stamp(b), p))
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
    cfg: EvalwatchConfig,
    store: Any,
    sink: Any = None,
    baseline_dir: Path | None = None,
    leases: Any = None,
    own_leases: bool = False,
) -> tuple[FastAPI, Recorder]:
    """The app; ``leases`` (a ``LeaseManager``) answers which sites this node serves — with
    ``own_leases`` the app starts it (after the migration, before the store's WAL recovery) and
    stops it (releasing the sites) on shutdown."""
    recorder = Recorder(cfg, sink)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db = getattr(store, "db", None)
        if db is not None:  # the real SegmentStore: migrate, buckets, WAL recovery
            await asyncio.to_thread(db.upgrade)
            await store.objects.ensure_buckets()
            if own_leases:
                await leases.start()
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
                if own_leases:
                    await leases.stop()
                db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(make_router(recorder, store, cfg, leases=leases))

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


def make_store(spec: str, cfg: EvalwatchConfig, fence: Any = None) -> Any:
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
            fence=fence,
        )
    raise SystemExit(f"unknown --store {spec!r} (dir:PATH or s3)")


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from config import load_config

    ap = argparse.ArgumentParser(prog="python -m testkit.capture")
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--host", action="append", help="listen address (repeatable; default 127.0.0.1)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--baseline-dir", help="bench: also re-encode every track with MediaRecorder here")
    ap.add_argument("--node-id", help="with --store s3: one hub node of several (site leases, 421)")
    ap.add_argument("--public-url", help="with --node-id: this node's URL (default http://127.0.0.1:PORT)")
    args = ap.parse_args(argv)
    if args.node_id and args.store != "s3":
        ap.error("--node-id needs --store s3 (the leases live in storage.database_url)")
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = load_config(args.config)
    base = Path(args.baseline_dir) if args.baseline_dir else None
    leases = None
    if args.node_id:
        from storage.db import Database
        from storage.leases import LeaseManager

        url = args.public_url or f"http://127.0.0.1:{args.port}"
        leases = LeaseManager(Database(cfg.storage.database_url), args.node_id, url,
                              [site.id for site in cfg.sites], ttl_s=cfg.hub.lease_ttl_seconds,
                              renew_s=cfg.hub.lease_renew_seconds)  # fmt: skip
    store = make_store(args.store, cfg, leases.fence if leases else None)
    app, _rec = build_app(
        cfg, store, BufferedFrameSink(256), base, leases=leases, own_leases=leases is not None
    )
    hosts = args.host or ["127.0.0.1"]
    if len(hosts) == 1:
        uvicorn.run(app, host=hosts[0], port=args.port, log_level="warning", access_log=False)
        return 0
    socks = []
    for h in hosts:  # several addresses: one listening socket each
        s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((h, args.port))
        socks.append(s)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=socks)
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


ONE_CAMERA_TOKEN = "token-s1-xxxxxxxxxxxxxxxx"  # noqa: S105 - a test fixture, not a secret


def one_camera_config(
    tmp: Path, source: str | Path, port: int, *, capture: dict[str, Any] | None = None
) -> EvalwatchConfig:
    """Tests: site ``s1`` / room ``r1`` / camera ``c1`` playing ``source`` (320x240 @ 15), agent
    token :data:`ONE_CAMERA_TOKEN`, spool and config in ``tmp``, 2 s segments, hub on ``port``;
    ``capture`` overrides capture settings."""
    from config import load_config

    path = write_config(
        tmp / "cfg.yaml",
        port=port,
        sites={"s1": {"r1": [("c1", str(source))]}},
        tokens={"s1": ONE_CAMERA_TOKEN},
        spool_dir=tmp / "spool",
        segment_seconds=2.0,
        extra={"capture": capture} if capture else None,
    )
    return load_config(path)


async def serve_app(app: Any, port: int) -> tuple[Any, asyncio.Task[None]]:
    """Tests: run ``app`` with uvicorn on 127.0.0.1:``port`` in this loop until it accepts
    requests; returns ``(server, task)`` — stop with ``server.should_exit = True; await task``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"test server did not start on port {port}")
    return server, task


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


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be used here (not root, no ``unshare``/``nsenter``/``ip``, ...)."""


class NetnsLink:
    """A separate network namespace joined to this one by a veth pair: a site's uplink that a test
    can really cut — TCP *and* UDP (the WebRTC media), unlike :class:`TcpProxy`.

    ``start()`` creates the namespace, held by ``unshare --net cat`` (``cat`` reads a pipe from
    this process, so it exits when this process dies, even by SIGKILL), and the pair
    ``evw<x>h`` = :attr:`host_ip` ``10.213.<x>.1/30`` here ↔ ``evw<x>a`` = :attr:`ns_ip`
    ``10.213.<x>.2/30`` in the namespace (plus ``lo`` up there).  ``<x>`` is a random free number
    in 1..254; the host interface name is the lock between concurrent runs.  Run a process in the
    namespace with ``[*link.exec_prefix, *argv]`` (``nsenter --net=...``).

    ``cut()`` takes the host end down: the namespace end loses its carrier, nothing passes in
    either direction, and the process inside gets no error — its packets just vanish, as when a
    site's uplink dies.  ``restore()`` brings it back up (the kernel re-adds the host's routes).
    ``close()`` (idempotent) deletes the pair and ends the holder; the namespace itself disappears
    when the last process in it exits.  Nothing is mounted (no ``ip netns add``), so nothing is
    left behind.  Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): ``start()`` raises
    :class:`NetnsUnavailable` otherwise.
    """

    PREFIX = "10.213"

    def __init__(self) -> None:
        self.x = 0
        self.host_ip = self.ns_ip = self.host_if = self.ns_if = ""
        self._holder: subprocess.Popen[bytes] | None = None
        self._made_link = False

    @property
    def exec_prefix(self) -> list[str]:
        assert self._holder is not None, "start() first"
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--"]

    def __enter__(self) -> NetnsLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def start(self) -> NetnsLink:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise NetnsUnavailable(f"{tool!r} not found")
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        own_ns = os.readlink("/proc/self/ns/net")
        holder = subprocess.Popen(
            ["unshare", "--net", "--", "cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._holder = holder
        deadline = time.monotonic() + 10
        while True:  # until the holder runs in a namespace of its own
            if holder.poll() is not None:
                err = holder.stderr.read().decode(errors="replace").strip() if holder.stderr else ""
                raise NetnsUnavailable(f"unshare --net failed (exit {holder.returncode}): {err}")
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{holder.pid}/ns/net") != own_ns:
                    break
            if time.monotonic() > deadline:
                raise NetnsUnavailable("unshare --net did not start within 10 s")
            time.sleep(0.01)
        used = self._run(["ip", "-o", "-4", "addr", "show"]).stdout + self._run(["ip", "-4", "route"]).stdout
        numbers = list(range(1, 255))
        random.shuffle(numbers)
        for x in numbers:
            if f"{self.PREFIX}.{x}." in used:
                continue
            host_if, ns_if = f"evw{x}h", f"evw{x}a"
            # The peer is created right inside the namespace: no window with both ends here.
            veth = ["type", "veth", "peer", "name", ns_if, "netns", str(holder.pid)]
            r = self._run(["ip", "link", "add", host_if, *veth], check=False)
            if r.returncode == 0:
                break
            if "exists" in r.stderr:  # another run holds this number
                continue
            raise NetnsUnavailable(f"ip link add {host_if} type veth ...: {r.stderr.strip()}")
        else:
            raise NetnsUnavailable(f"no free {self.PREFIX}.x.0/30 subnet / evw<x>h name")
        self._made_link = True
        self.x, self.host_if, self.ns_if = x, host_if, ns_if
        self.host_ip, self.ns_ip = f"{self.PREFIX}.{x}.1", f"{self.PREFIX}.{x}.2"
        inside, pid = self.exec_prefix, holder.pid
        self._run([*inside, "ip", "link", "set", "lo", "up"])
        self._run([*inside, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", ns_if])
        self._run([*inside, "ip", "link", "set", ns_if, "up"])
        self._run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", host_if])
        self._run(["ip", "link", "set", host_if, "up"])
        log.info(
            "netns link %s %s <-> %s %s (namespace of pid %d)", host_if, self.host_ip, ns_if, self.ns_ip, pid
        )

    def cut(self) -> None:
        """The uplink goes down: no packet passes in either direction (TCP and UDP)."""
        self._run(["ip", "link", "set", self.host_if, "down"])

    def restore(self) -> None:
        self._run(["ip", "link", "set", self.host_if, "up"])

    def close(self) -> None:
        if self._made_link:
            self._made_link = False
            r = self._run(["ip", "link", "del", self.host_if], check=False)  # deletes both ends
            if r.returncode != 0 and "Cannot find" not in r.stderr:
                log.warning("netns link: ip link del %s: %s", self.host_if, r.stderr.strip())
        holder, self._holder = self._holder, None
        if holder is not None:
            if holder.stdin is not None:
                holder.stdin.close()  # cat sees EOF and exits
            try:
                holder.wait(5)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
            if holder.stderr is not None:
                holder.stderr.close()
