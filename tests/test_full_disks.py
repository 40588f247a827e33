"""Full disks (issue #17 item 4), on real 2 MB tmpfs mounts (root only; skipped otherwise).

* The hub's WAL disk fills while S3 is down: ``put`` refuses the next segment with
  :class:`WalFull` (the agent keeps it and retries) instead of leaving half an entry; every
  segment it acknowledged stays whole in the WAL and reaches S3 once it is back, with a chain that
  verifies; ``DiskWatch`` opens a ``disk_full`` alert and ``/metrics`` shows the disk, both clear
  when space is back.
* An agent's spool disk is smaller than its quota and then filled by something else: the spool
  evicts oldest first (uploaded segments before unsent ones), the camera keeps recording the
  newest footage, and its heartbeat report raises ``disk_full`` for the site on the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from pydantic import SecretStr

from config.models import EvalwatchConfig, S3Config
from storage.common import CameraId, utcnow

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class Sink:
    """The incident store as the disk watch sees it: collects the updates."""

    def __init__(self) -> None:
        self.updates: list[Any] = []

    async def handle(self, update: Any) -> None:
        self.updates.append(update)

    def of(self, site: str, room: str) -> list[tuple[str, str]]:
        return [
            (u.action, u.event.rule) for u in self.updates if (u.event.site, u.event.room) == (site, room)
        ]


@root_only
async def test_hub_wal_disk_full(object_store, s3_server, unique_site: str, tmp_path: Path) -> None:
    import httpx

    from dashboard.app import create_app
    from dashboard.security import metrics_token
    from dashboard.services import Services
    from evalwatch.diskwatch import DiskWatch
    from storage.db import Database
    from storage.objects import ObjectStore
    from storage.segments import SegmentMeta, SegmentStore, WalFull
    from storage.verify import verify_chain

    cam = CameraId(unique_site, "r1", "cam1")
    with tmpfs(tmp_path / "wal") as wal:
        cfg = EvalwatchConfig.model_validate(
            {
                "hub": {"secret_key": "test-secret-key-0123456789"},
                "storage": {
                    "wal_dir": str(wal),
                    "database_url": f"sqlite:///{tmp_path / 'db' / 'x.db'}",
                    "disk_min_free_mb": 1,
                    "disk_alert_ratio": 0.95,
                },
                "secrets_file": None,
            }
        )
        db = Database(cfg.storage.database_url)
        db.upgrade()
        down = ObjectStore(
            S3Config(
                endpoint=f"127.0.0.1:{free_port()}", access_key=SecretStr("x"), secret_key=SecretStr("y")
            ),
            connect_timeout_s=0.2,
            retries=0,
        )
        store = SegmentStore(down, db, wal, s3_server.cfg.bucket_segments, retry_min_s=0.1, retry_max_s=0.2)
        sink = Sink()
        watch = DiskWatch(cfg, sink)
        await watch.check()
        assert watch.full() == [] and sink.of("_hub", "wal") == []
        t0 = utcnow().replace(microsecond=0)
        stored: list[Any] = []
        refused = None
        for i in range(12):  # 12 x 300 KB > 2 MB
            meta = SegmentMeta(
                site=cam.site,
                room=cam.room,
                camera=cam.camera,
                start=t0 + i * _s(10),
                end=t0 + (i + 1) * _s(10),
            )
            try:
                stored.append(await store.put(meta, bytes([i]) * 300_000))
            except WalFull as e:
                refused = (i, str(e))
                break
        assert refused is not None, "the 2 MB WAL never filled"
        assert "write-ahead disk" in refused[1] and "is full" in refused[1] and str(wal) in refused[1]
        assert len(stored) == refused[0] >= 3 and not any(r.uploaded for r in stored)
        # Nothing half-written is left, and every acknowledged segment is whole in the WAL.
        names = sorted(p.name for p in (wal / cam.site / cam.room / cam.camera).iterdir())
        assert names == sorted([f"{r.seq:08d}.seg" for r in stored] + [f"{r.seq:08d}.json" for r in stored])
        assert await store.pending_uploads() == len(stored)
        await watch.check()
        assert sink.of("_hub", "wal") == [("opened", "disk_full")] and watch.full() == ["hub_wal"]
        ev = sink.updates[-1].event
        assert ev.camera == "disk" and ev.details["free_bytes"] < 1024 * 1024
        app = create_app(Services(cfg=cfg, db=db, disks=watch))
        async with app.router.lifespan_context(app):
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            tok = metrics_token("test-secret-key-0123456789")
            text = (await c.get("/metrics", headers={"Authorization": f"Bearer {tok}"})).text
        assert 'evalwatch_disk_full{disk="hub_wal"} 1.0' in text
        assert (
            'evalwatch_disk_fill_ratio{disk="hub_wal"}' in text
            and 'evalwatch_disk_free_bytes{disk="hub_wal"}' in text
        )
        # S3 is back: the WAL drains in order, the disk empties, the alert closes.
        store.objects = object_store
        assert await store.flush() == 0
        res = await verify_chain(object_store, *cam.as_tuple(), expected_head=len(stored))
        assert res.ok and res.segments_checked == len(stored), str(res)
        await watch.check()
        assert sink.of("_hub", "wal") == [("opened", "disk_full"), ("closed", "disk_full")]
        assert watch.full() == []
        await store.stop()
        db.dispose()


def _s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def _frames(n: int, w: int = 320, h: int = 240) -> Iterator[Any]:
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    for _ in range(n):  # noise: every segment is as big as the bitrate lets it be
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        yield av.VideoFrame.from_ndarray(img, format="rgb24")


@root_only
async def test_agent_spool_disk_full(unique_site: str, tmp_path: Path) -> None:
    from capture.segmenter import SegmentWriter
    from capture.spool import Spool, SpooledSegment
    from evalwatch.diskwatch import DiskWatch

    with tmpfs(tmp_path / "spool") as root:
        # A 2 MB disk under a 100 MB quota; keep 1 MB free.
        spool = Spool(root, max_mb=100, min_free_mb=1)
        made: list[SpooledSegment] = []
        low_seen: list[bool] = []

        def on_segment(seg: SpooledSegment) -> None:
            if len(made) < 3:
                spool.mark_done(seg)  # the first three reached the hub
            made.append(seg)
            low_seen.append(spool.disk_low)

        writer = SegmentWriter(
            spool,
            unique_site,
            "r1",
            "cam1",
            width=320,
            height=240,
            fps=10,
            segment_seconds=1.0,
            bitrate_kbps=2000,
            preset="ultrafast",
            on_segment=on_segment,
        )
        t0 = 1_800_000_000.0
        frames = _frames(400)
        for i, frame in zip(range(200), frames, strict=False):
            writer.write(frame, t0 + i / 10)
        assert writer.last_error is None, writer.last_error
        assert any(low_seen) and spool.dropped_unsent > 0
        left = spool.segments()
        assert left and not any(s.done for s in left)  # uploaded ones went first
        starts = [s.start for s in made if s.path.name in {x.path.name for x in left}]
        assert starts == [s.start for s in made[-len(left) :]], "only the oldest unsent may go"
        assert spool.disk_report()["free_bytes"] >= 1024 * 1024 * 0.8  # type: ignore[operator]
        # Something else fills the disk: the spool gives way, the camera keeps recording.
        ballast = root / "ballast.bin"
        await asyncio.to_thread(ballast.write_bytes, b"\0" * 700_000)
        before = len(made)
        for i, frame in zip(range(200, 260), frames, strict=False):
            writer.write(frame, t0 + i / 10)
        assert writer.last_error is None, writer.last_error
        assert len(made) >= before + 5 and made[-1].path.exists()
        report = spool.disk_report()
        assert report["low"] is True
        sink = Sink()
        watch = DiskWatch(EvalwatchConfig(), sink)
        await watch.agent_report(unique_site, {"spool_disk": report})
        assert sink.of(unique_site, "_agent") == [("opened", "disk_full")]
        assert sink.updates[0].event.camera == "spool"
        await watch.agent_report(unique_site, {"spool_disk": "garbage"})  # ignored, no traceback
        # Space back, and the quota set to fit the disk (the operator's fix): the alert clears.
        ballast.unlink()
        spool.max_bytes = 400_000
        for i, frame in zip(range(260, 290), frames, strict=False):
            writer.write(frame, t0 + i / 10)
        writer.close()
        report = spool.disk_report()
        assert report["low"] is False
        await watch.agent_report(unique_site, {"spool_disk": report})
        assert sink.of(unique_site, "_agent") == [("opened", "disk_full"), ("closed", "disk_full")]
        assert {r.disk for r in watch.readings()} >= {f"agent_spool:{unique_site}"}


async def test_ingest_wal_full_and_spool_reports(tmp_path: Path) -> None:
    """Over the agents' API: a full WAL is a 507 naming it (the agent keeps the segment and
    retries: 5xx), and the heartbeat's spool disk report reaches the disk watch."""
    import hashlib
    from datetime import datetime, timedelta

    import httpx
    from fastapi import FastAPI

    from capture.ingest import make_router
    from capture.recorder import Recorder
    from evalwatch.diskwatch import DiskWatch
    from storage.segments import WalFull
    from testkit.capture import ONE_CAMERA_TOKEN, make_clip, one_camera_config

    class FullStore:
        async def put(self, meta: Any, data: bytes) -> Any:
            raise WalFull(
                "the hub's write-ahead disk (/data/wal) is full; segment x not archived, retry later"
            )

        async def missing_ranges(
            self, site: str, room: str, camera: str, start: datetime, end: datetime, tolerance_s: float = 0.5
        ) -> list[tuple[datetime, datetime]]:
            return [(start, end)]  # nothing archived

    clip = await asyncio.to_thread(make_clip, tmp_path / "clip.mp4", 2.0)
    cfg = one_camera_config(tmp_path, clip, free_port())
    sink = Sink()
    watch = DiskWatch(cfg, sink)
    app = FastAPI()
    app.include_router(make_router(Recorder(cfg, None), FullStore(), cfg, disks=watch))
    data = clip.read_bytes()
    end = utcnow() - timedelta(seconds=1)
    h = {"Authorization": f"Bearer {ONE_CAMERA_TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        r = await c.put(
            "/api/ingest/segments/s1/r1/c1",
            params={"start": (end - timedelta(seconds=2)).isoformat(), "end": end.isoformat()},
            content=data,
            headers={**h, "X-Content-SHA256": hashlib.sha256(data).hexdigest()},
        )
        assert r.status_code == 507 and "write-ahead disk (/data/wal) is full" in r.json()["detail"]
        low = {"path": "/spool", "total_bytes": 10**9, "free_bytes": 10**6, "fill_ratio": 0.999, "low": True}
        beat = {"site": "s1", "agent": {"spool_disk": low}, "cameras": []}
        assert (await c.post("/api/ingest/heartbeat", json=beat, headers=h)).status_code == 200
        assert sink.of("s1", "_agent") == [("opened", "disk_full")]
        beat["agent"] = {"spool_disk": {**low, "free_bytes": 5 * 10**8, "low": False}}
        assert (await c.post("/api/ingest/heartbeat", json=beat, headers=h)).status_code == 200
        assert sink.of("s1", "_agent") == [("opened", "disk_full"), ("closed", "disk_full")]
        # Footage past retention (180 days) is never asked back from a spool: the purge took it.
        for days, n in ((400, 0), (1, 1)):
            q = {
                "site": "s1",
                "room": "r1",
                "camera": "c1",
                "since": (end - timedelta(days=days)).isoformat(),
                "until": (end - timedelta(days=days) + timedelta(hours=1)).isoformat(),
            }
            r = await c.get("/api/ingest/missing", params=q, headers=h)
            assert r.status_code == 200 and len(r.json()["ranges"]) == n, r.text
