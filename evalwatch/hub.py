"""``evalwatch hub`` — one process that composes every hub-side stage and serves the dashboard.

Start-up order, top to bottom:

1. config (secrets filled from the secrets file);
2. the embedded S3 server, unless ``storage.s3.embedded`` is false or ``EVALWATCH_S3_ENDPOINT``
   points at one someone else runs (``evalwatch run`` does that);
3. database migrations, then the config's sites/rooms/cameras/seats mirrored into the DB; the
   site leases (``storage.leases``: this node's share of the sites, all of them on SQLite);
4. object store buckets, the segment store and its write-ahead uploader;
5. event bus, detector, event persistence, the disk watch (``evalwatch.diskwatch``: ``disk_full``
   alerts), analysis pipeline of the hub-analysed sites (it reads the running sessions through
   :func:`db_sessions`); for the edge-analysed sites (``analysis: agent``) the edge hub
   (``evalwatch.edgehub``: sessions for the agents, their incidents, and the check pipeline on
   sampled frames); the retention purge job (``evalwatch.retention``, APScheduler on
   ``storage.purge_cron``); the chain anchor job (``evalwatch.anchors``, APScheduler on
   ``storage.anchor_cron``, and the anchor store of ``storage.anchor``); the frame router (the
   recorder's sink);
6. the recorder and its ingest routes; with PostgreSQL the cross-node alert relay
   (``dashboard.notify``, started by the dashboard); the dashboard app (its lifespan also starts the
   early-warning job, ``dashboard.earlywarn``, on ``warnings.cron``); uvicorn.

Shutdown runs the same list backwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from config import ConfigError, EvalwatchConfig, load_config
from evalwatch.logs import setup_logging

if TYPE_CHECKING:
    from analysis.live import ActiveSessionLike, SessionSource
    from dashboard.services import Services
    from storage.db import Database

log = logging.getLogger("evalwatch.hub")


def db_sessions(db: Database) -> SessionSource:
    """The pipeline's session source: ``sessions.lifecycle.aactive_sessions`` read from ``db``
    (injected here so that the analysis does not import the sessions stage)."""
    from sessions.lifecycle import aactive_sessions

    async def source(site: str, room: str) -> Sequence[ActiveSessionLike]:
        return await aactive_sessions(db, site, room)

    return source


def sync_inventory(db: Database, cfg: EvalwatchConfig) -> None:
    """Mirror the config's sites, rooms, cameras and seats into the DB (config is the source).

    Several hub nodes starting at once on one database may insert the same row together: the
    loser's transaction fails on the primary key and is simply run again (it now updates)."""
    from sqlalchemy.exc import IntegrityError

    try:
        _sync_inventory(db, cfg)
    except IntegrityError:
        _sync_inventory(db, cfg)


def _sync_inventory(db: Database, cfg: EvalwatchConfig) -> None:
    from storage.models import Camera, Room, Seat, Site

    with db.session() as s:
        for site in cfg.sites:
            s.merge(Site(id=site.id, name=site.name))
            for room in site.rooms:
                s.merge(Room(site_id=site.id, id=room.id, name=room.name))
                for cam in room.cameras:
                    s.merge(
                        Camera(site_id=site.id, room_id=room.id, id=cam.id, name=cam.name,
                               width=cam.width, height=cam.height, fps=cam.fps)
                    )
                for seat in room.seats:
                    s.merge(
                        Seat(site_id=site.id, room_id=room.id, id=seat.id, camera_id=seat.camera or "",
                             polygon=[list(p) for p in seat.polygon], row=seat.row, col=seat.col)
                    )
        s.commit()


@contextlib.asynccontextmanager
async def running_hub(cfg: EvalwatchConfig) -> AsyncIterator[Services]:
    """Start every hub service for ``cfg``; stop them all on exit."""
    from analysis.bus import EventBus
    from analysis.detectors import detector_from_config
    from analysis.live import AnalysisPipeline
    from analysis.store import EventStore
    from capture.agentstatus import AgentMonitor
    from capture.ingest import LiveCredentials, make_router
    from capture.notices import RoomNotices
    from capture.recorder import Recorder
    from dashboard.notify import EventRelay
    from dashboard.services import Services
    from evalwatch.edgehub import EdgeHub, FrameRouter
    from evalwatch.memtrim import MallocTrim, tune_malloc
    from storage.agents import CredentialStore
    from storage.db import Database
    from storage.leases import LeaseManager
    from storage.objects import ObjectStore
    from storage.pgnotify import default_node_id
    from storage.segments import SegmentStore

    # Before the decoders and the detector allocate: large blocks outside the arenas (#17).
    tune_malloc(cfg.hub.malloc_mmap_threshold_kb)
    async with contextlib.AsyncExitStack() as stack:
        if cfg.storage.s3.embedded:
            from storage.s3server import SeaweedServer

            server = SeaweedServer.from_config(cfg.storage.s3, anchor=cfg.storage.anchor)
            # Killed with the hub, even by SIGKILL (no orphaned server holding the ports and the
            # data dir, issue #17): the death signal follows the thread that starts it, so it is
            # started from this (the main) thread; the loop serves nothing yet.
            server.die_with_parent = True
            server.start()
            stack.push_async_callback(server.astop)
            log.info("embedded S3 server ready endpoint=%s", server.endpoint)

        db = Database(cfg.storage.database_url, sqlite_cache_kb=cfg.storage.sqlite_cache_kb)
        stack.callback(db.dispose)
        await db.aupgrade()
        await asyncio.to_thread(sync_inventory, db, cfg)
        # Which sites this node ingests (several nodes on PostgreSQL; SQLite: all of them).
        # Before the segment store: its WAL recovery appends only under a held lease.
        leases = LeaseManager(
            db, cfg.hub.node_id or default_node_id(), cfg.hub.url, [site.id for site in cfg.sites],
            ttl_s=cfg.hub.lease_ttl_seconds, renew_s=cfg.hub.lease_renew_seconds,
        )
        await leases.start()
        stack.push_async_callback(leases.stop)

        objects = ObjectStore(cfg.storage.s3)
        # Footage and snapshots are evidence: write-once buckets (object lock in
        # storage.s3.lock_mode, governance or compliance) keeping every object for the retention
        # period.  Exports are working files.
        s3c = cfg.storage.s3
        await objects.ensure_buckets(
            [s3c.bucket_segments, s3c.bucket_snapshots], lock_days=cfg.storage.retention_days,
            mode=s3c.lock_mode,
        )
        await objects.ensure_buckets([s3c.bucket_exports])
        segments = SegmentStore(
            objects, db, Path(cfg.storage.wal_dir), cfg.storage.s3.bucket_segments,
            guard=segment_guard(cfg), fence=leases.fence,
        )
        await segments.start()
        stack.push_async_callback(segments.stop)

        bus = EventBus()
        d = cfg.detection
        detector = await asyncio.to_thread(detector_from_config, d)
        # The bus gets each incident update from the store, once its row has a database id.
        events = EventStore(
            db, objects, cfg.storage.s3.bucket_snapshots, bus, Path(cfg.storage.wal_dir) / "snapshots"
        )
        await events.start()
        stack.push_async_callback(events.close)
        # Full disks (WAL, SQLite, agents' spools): disk_full alerts and /metrics gauges.
        from evalwatch.diskwatch import DiskWatch

        disks = DiskWatch(cfg, events)
        await disks.start()
        stack.push_async_callback(disks.stop)
        hub_rooms = [(site.id, room) for site in cfg.sites if site.analysis == "hub" for room in site.rooms]
        edge_sites = [site for site in cfg.sites if site.analysis == "agent"]
        pipeline = AnalysisPipeline(
            detector, hub_rooms, detection_cfg=d, rules_cfg=cfg.rules, sink=events, sessions=db_sessions(db),
        )
        await pipeline.start()
        stack.push_async_callback(pipeline.stop)

        # Edge sites: the agents analyse; the hub serves them sessions, stores their incidents
        # and checks them with its own detector on sampled frames (its own instance: the two
        # pipelines run in different threads).
        edge = EdgeHub(cfg, events, db_sessions(db))
        check: AnalysisPipeline | None = None
        if edge_sites:
            check_fps = max(s.analysis_check_fps for s in edge_sites)
            check = AnalysisPipeline(
                await asyncio.to_thread(detector_from_config, d) if hub_rooms else detector,
                [(site.id, room) for site in edge_sites for room in site.rooms],
                detection_cfg=d.model_copy(update={"analysis_fps": check_fps}), rules_cfg=cfg.rules,
                sink=edge, sessions=db_sessions(db),
            )
            await check.start()
            stack.push_async_callback(check.stop)
            await edge.start()
            stack.push_async_callback(edge.stop)
            log.info("edge analysis sites=%s check_fps=%.2f", [s.id for s in edge_sites], check_fps)

        # Scheduled jobs (purge, anchor, early warnings) run on one node of several: the one
        # holding the jobs lock (PostgreSQL advisory lock; SQLite: this node).
        from storage.joblock import JobLeader

        jobs = JobLeader(cfg.storage.database_url, leases.node_id)
        await jobs.start()
        stack.push_async_callback(jobs.stop)

        # The retention purge (storage/retention.py), on storage.purge_cron.
        from evalwatch.retention import RetentionJob

        retention = RetentionJob(cfg, db, objects, jobs)
        retention.start()
        stack.push_async_callback(retention.stop)

        # The signed chain heads, anchored hourly and at each session close: the feed observers
        # keep, and the anchor store outside the hub (storage.anchor) when configured.
        from evalwatch.anchors import AnchorJob, anchorer_for
        from sessions.signing import HubKey

        anchorer = await anchorer_for(
            cfg, db, await asyncio.to_thread(HubKey.load_or_create, cfg.storage.data_dir)
        )
        anchor_job = AnchorJob(cfg, anchorer, jobs)
        anchor_job.start()
        stack.push_async_callback(anchor_job.stop)

        recorder = Recorder(cfg, frame_sink=FrameRouter(pipeline, check, edge))
        await recorder.start()
        stack.push_async_callback(recorder.close)

        # Native memory freed by FFmpeg / onnxruntime / aiortc threads back to the system.
        trim = MallocTrim(cfg.hub.malloc_trim_seconds)
        trim.start()
        stack.push_async_callback(trim.stop)

        # Several hub nodes on one PostgreSQL database: alerts cross nodes over LISTEN/NOTIFY
        # (started and stopped with the dashboard's alert fan-out).  SQLite: one node, no relay.
        relay = EventRelay.for_config(cfg, db)
        if relay is not None:
            log.info("cross-node alerts over PostgreSQL channel=%s node=%s",
                     relay.channel.channel, relay.node_id)
        monitor = AgentMonitor()
        credentials = CredentialStore(db)
        live_credentials = LiveCredentials()
        sweeper = asyncio.create_task(live_credentials.run(credentials, recorder), name="live-credentials")
        stack.callback(sweeper.cancel)
        notices = RoomNotices(db, recorder)  # notices in the room: to the agents, their reports
        yield Services(
            cfg=cfg, db=db, objects=objects, segments=segments, bus=bus, recorder=recorder,
            pipeline=pipeline if hub_rooms or check is None else check, agents=monitor, disks=disks,
            extra_routers=[make_router(recorder, segments, cfg, edge=edge, disks=disks,
                                       agent_auth=credentials, monitor=monitor,
                                       live_credentials=live_credentials, leases=leases,
                                       notices=notices)],
            relay=relay, anchors=anchorer, leases=leases, notices=notices, jobs=jobs,
            on_stopping=[edge.wake_pollers],
        )


def segment_guard(cfg: EvalwatchConfig) -> Any:
    """The segment store's guard for ``storage.late_sealed_footage``: ``refuse`` refuses footage
    overlapping a sealed session window (#12 finding 4); ``archive`` (default) has none -- such
    footage is archived, and the replay badge and range exports show it as added after the seal
    (``sessions.sealed.added_after_seal``)."""
    from sessions.sealed import sealed_conflict

    return sealed_conflict if cfg.storage.late_sealed_footage == "refuse" else None


def uvicorn_config(cfg: EvalwatchConfig, app: Any, tls: TlsOptions | None = None) -> Any:
    """The hub's uvicorn settings.  ``proxy_headers=False``: uvicorn would otherwise believe
    X-Forwarded-For from 127.0.0.1 (its default ``forwarded_allow_ips``) and hand the dashboard a
    spoofed client address; the dashboard applies ``hub.trusted_proxies`` itself
    (``dashboard.policy.client_ip``, finding 6 of issue #12).  ``tls``: :func:`tls_options`, checked
    once by the caller."""
    import uvicorn

    return uvicorn.Config(
        app, host=cfg.hub.listen_host, port=cfg.hub.listen_port, log_config=None,
        access_log=False, lifespan="on", proxy_headers=False,
        # What a stop waits for open requests (hub.shutdown_grace_s).  Agents' long polls (up to
        # 25 s) are answered when the stop begins (HubServer); alert WebSockets uvicorn closes.
        timeout_graceful_shutdown=cfg.hub.shutdown_grace_s,
        **(tls or {}),
    )


def hub_server(config: Any, on_stopping: list[Callable[[], None]]) -> Any:
    """A ``uvicorn.Server`` for the hub (issue #17):

    * it calls ``on_stopping`` when its stop begins (SIGTERM, Ctrl-C), before it waits up to
      ``timeout_graceful_shutdown`` for open connections: the hub's long-lived answers end at
      once instead of holding the stop;
    * ``serve()`` returns after a SIGTERM/SIGINT instead of re-raising it: uvicorn's own
      ``capture_signals`` raises the signal again once the web server has stopped, and a
      re-raised SIGTERM killed the process there, before :func:`running_hub` had stopped the
      recorder, the analysis and the embedded SeaweedFS (which the parent-death signal then
      SIGKILLed).  A second signal during that clean-up acts at once (the handlers are restored).
    """
    import signal
    import threading

    import uvicorn
    from uvicorn.server import HANDLED_SIGNALS

    class HubServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)
            log.info("web server stopped; stopping the hub's services")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for fn in on_stopping:
                try:
                    fn()
                except Exception:  # one failing hook must not keep the others from running
                    log.exception("stop hook %r failed", fn)
            await super().shutdown(sockets)

    return HubServer(config)


class TlsOptions(TypedDict, total=False):
    """``uvicorn.Config``'s TLS keywords (none: plain HTTP)."""

    ssl_certfile: str
    ssl_keyfile: str


def tls_options(cfg: EvalwatchConfig) -> TlsOptions:
    """uvicorn's ``ssl_certfile``/``ssl_keyfile`` for ``hub.tls_cert``/``tls_key`` ({} without);
    ValueError naming the problem when the pair cannot serve HTTPS."""
    if not (cfg.hub.tls_cert and cfg.hub.tls_key):
        return {}
    from evalwatch.tls import check_pair

    check_pair(cfg.hub.tls_cert, cfg.hub.tls_key)
    return {"ssl_certfile": cfg.hub.tls_cert, "ssl_keyfile": cfg.hub.tls_key}


def use_self_signed(cfg: EvalwatchConfig) -> str:
    """``--self-signed``: the certificate in ``<storage.data_dir>/tls/`` (made on first use, then
    kept: agents pin it) becomes ``hub.tls_cert``/``tls_key``.  Returns its SHA-256."""
    from capture.tls import pretty_sha256
    from evalwatch.tls import cert_sha256, default_hosts, ensure_self_signed

    cert, key, created = ensure_self_signed(
        Path(cfg.storage.data_dir) / "tls", default_hosts([cfg.hub.listen_host])
    )
    cfg.hub.tls_cert, cfg.hub.tls_key = str(cert), str(key)
    fp = pretty_sha256(cert_sha256(cert))
    log.info("self-signed certificate %s cert=%s sha256=%s", "created" if created else "reused", cert, fp)
    return fp


async def serve(cfg: EvalwatchConfig) -> None:
    from dashboard.app import create_app

    tls = tls_options(cfg)  # before anything starts: a bad certificate is a clear start-up error
    async with running_hub(cfg) as hub:
        app = create_app(hub)
        server = hub_server(uvicorn_config(cfg, app, tls), hub.on_stopping)
        log.info("hub listening url=%s tls=%s", cfg.hub.url, bool(tls))
        await server.serve()


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evalwatch hub", description=__doc__)
    parser.add_argument("--config", default="config/default.yaml", help="config file (YAML)")
    parser.add_argument(
        "--self-signed", action="store_true",
        help="serve HTTPS with a self-signed certificate kept in <storage.data_dir>/tls/ (made on "
        "first use; its SHA-256, which agents pin, is printed) unless hub.tls_cert is set",
    )
    parser.add_argument(
        "--log-file", default=None, metavar="FILE",
        help="log to FILE, rotated by size (hub.log_max_mb, hub.log_backups); overrides hub.log_file",
    )
    # Diagnostic (issue #17): tracemalloc diffs in the log every MINUTES (evalwatch.memtrace).
    parser.add_argument("--trace-memory", type=float, default=None, metavar="MINUTES",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"evalwatch hub: configuration problems:\n{e}", file=sys.stderr)
        return 2
    if args.log_file:
        cfg.hub.log_file = args.log_file
    if cfg.hub.log_file:  # rotated by size (hub.log_max_mb, hub.log_backups)
        from evalwatch.logs import log_to_file

        try:
            log_to_file(cfg.hub.log_file, cfg.hub.log_max_mb, cfg.hub.log_backups)
        except OSError as e:
            print(f"evalwatch hub: hub.log_file {cfg.hub.log_file}: {e}", file=sys.stderr)
            return 2
    from evalwatch.memtrace import capture_from_env, from_env

    try:  # diagnostics (issue #17): tracemalloc diffs in the log, a memray capture to a file
        tracer = from_env(args.trace_memory)
    except ValueError as e:
        print(f"evalwatch hub: {e}", file=sys.stderr)
        return 2
    try:
        if args.self_signed and not cfg.hub.tls_cert:
            fp = use_self_signed(cfg)
            print(f"evalwatch hub: HTTPS with a self-signed certificate, sha256 {fp}\n"
                  f"  agents: sites[].hub_cert_sha256 or evalwatch agent --hub-cert-sha256 {fp}",
                  file=sys.stderr)
        tls_options(cfg)
        capture = capture_from_env()
    except (ValueError, OSError) as e:
        print(f"evalwatch hub: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # a start-up failure: say what failed, not a traceback
        log.exception("hub failed")
        print(f"evalwatch hub: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if tracer is not None:
            tracer.stop()
        if capture is not None:
            capture.stop()
    return 0
