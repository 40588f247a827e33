"""Live wall grid path: shared JPEG thumbnails per camera (``GET .../thumb.jpg``).

The recorder here is real where it matters: each camera's frames go through an aiortc
``MediaRelay`` and the real :class:`capture.recorder.ReducedTrack` (as ``Recorder.live_track``
builds them); only the agent's WebRTC link is replaced by a synthetic moving-picture track.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from dashboard.live import THUMB_STALE
from dashboard.services import Services
from storage.models import AuditLog
from testkit.dashboard import ROLE_USERS, FakeStatus, make_services, password_of, synthetic_track

BASE = "http://testserver"


class RelayRecorder:
    """``live_track`` like ``capture.recorder.Recorder``: relay subscription + ReducedTrack."""

    def __init__(self, cfg: Any) -> None:
        from aiortc.contrib.media import MediaRelay

        self.relay = MediaRelay()
        self.statuses = {(s.id, r.id, c.id): FakeStatus(s.id, r.id, c.id) for s, r, c in cfg.cameras()}
        self.sources: dict[tuple[str, str, str], Any] = {
            k: synthetic_track(640, 480, 15) for k in self.statuses
        }
        self.subscriptions = 0

    def status(self) -> list[FakeStatus]:
        return list(self.statuses.values())

    def live_track(
        self, site: str, room: str, camera: str, *, width: int | None = None, fps: float | None = None
    ) -> Any | None:
        from capture.recorder import ReducedTrack

        src = self.sources.get((site, room, camera))
        if src is None:
            return None
        self.subscriptions += 1
        return ReducedTrack(self.relay.subscribe(src, buffered=False), width=width, fps=fps)

    def stop_camera(self, key: tuple[str, str, str]) -> None:
        """The agent goes away: its track ends and the recorder no longer has one."""
        self.sources.pop(key).stop()


@pytest.fixture
def services(tmp_path: Path) -> Services:
    s = make_services(tmp_path, recorder=None)
    s.recorder = RelayRecorder(s.cfg)
    return s


async def login(c: httpx.AsyncClient, role: str) -> None:
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text


def decode(jpeg: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return np.asarray(img)


async def fresh(c: httpx.AsyncClient, url: str, etag: str = "", within: float = 5.0) -> httpx.Response:
    """The next picture newer than ``etag`` (polling like a tile)."""
    deadline = time.monotonic() + within
    while True:
        r = await c.get(url, headers={"If-None-Match": etag} if etag else {})
        if r.status_code == 200:
            return r
        assert r.status_code in (304, 409), r.text  # 409 until the first frame arrived
        assert time.monotonic() < deadline, f"no new picture from {url} within {within} s"
        await asyncio.sleep(0.1)


async def test_thumbnails_change_and_stopped_camera_goes_offline(app: Any, services: Services) -> None:
    rec = services.recorder
    assert isinstance(rec, RelayRecorder)
    st = app.state.dash
    st.live.thumb_audit.gap = 60.0  # one viewing per user and camera during the test
    cams = list(rec.statuses)[:3]
    assert len(cams) == 3
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        await login(c, "supervisor")
        urls = [f"/api/live/{s}/{r}/{cam}/thumb.jpg" for s, r, cam in cams]
        for url in urls:
            first = await fresh(c, url)
            assert first.headers["content-type"] == "image/jpeg"
            a = decode(first.content)
            assert a.shape[1] == 320, a.shape  # reduced for the grid
            second = await fresh(c, url, first.headers["etag"])
            b = decode(second.content)
            assert second.headers["etag"] != first.headers["etag"]
            assert float(np.abs(a.astype(int) - b.astype(int)).mean()) > 0.5, "picture did not change"
            # nothing new yet: 304 without a body
            again = await c.get(url, headers={"If-None-Match": second.headers["etag"]})
            assert again.status_code in (200, 304)
        # one subscription per camera however many requests (shared by every viewer)
        assert rec.subscriptions == len(cams)

        # a second viewer gets the very same JPEG, no new subscription
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c2:
            await login(c2, "observer")
            r2 = await fresh(c2, urls[0])
            assert r2.status_code == 200
        assert rec.subscriptions == len(cams)

        # the camera stops: the tile's request says offline within a few seconds
        rec.stop_camera(cams[0])
        t0 = time.monotonic()
        while True:
            r = await c.get(urls[0])
            if r.status_code == 409:
                assert r.json()["code"] == "err.camera_offline"
                break
            assert time.monotonic() - t0 < THUMB_STALE + 2, "stopped camera still served"
            await asyncio.sleep(0.2)
        assert time.monotonic() - t0 <= THUMB_STALE + 2
        # the others keep streaming
        r = await fresh(c, urls[1])
        assert r.status_code == 200

        # auditors may not watch live
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c3:
            await login(c3, "auditor")
            assert (await c3.get(urls[1])).status_code == 403

    # audited per viewing, not per picture; the viewings end after the gap
    st.live.thumb_audit.gap = 0.2
    await asyncio.sleep(2.5)
    with services.db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action.in_(("live_view", "live_view_end")))))
    starts = [(r.actor, r.target) for r in rows if r.action == "live_view"]
    ends = [(r.actor, r.target) for r in rows if r.action == "live_view_end"]
    sup, obs = ROLE_USERS["supervisor"], ROLE_USERS["observer"]
    want = {(sup, "/".join(k)) for k in cams} | {(obs, "/".join(cams[0]))}
    assert sorted(starts) == sorted(want), starts
    assert sorted(ends) == sorted(want), ends
    assert all((r.details or {}).get("quality") == "thumb" for r in rows)


async def test_batched_thumbnails_for_the_wall(app: Any, services: Services) -> None:
    import base64

    rec = services.recorder
    assert isinstance(rec, RelayRecorder)
    keys = ["/".join(k) for k in list(rec.statuses)[:3]]
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        await login(c, "observer")
        seqs = dict.fromkeys(keys, 0)
        pictures: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        deadline = time.monotonic() + 10
        while any(len(v) < 2 for v in pictures.values()):
            assert time.monotonic() < deadline, {k: len(v) for k, v in pictures.items()}
            r = await c.get("/api/live/thumbs", params={"c": [*(f"{k}:{seqs[k]}" for k in keys), "x/y/z:0"]})
            assert r.status_code == 200, r.text
            for k, f in r.json()["frames"].items():
                assert f["seq"] != seqs[k]  # only new pictures are sent
                seqs[k] = f["seq"]
                pictures[k].append(decode(base64.b64decode(f["jpeg"])))
            await asyncio.sleep(0.3)
        for k, (a, b) in ((k, v[:2]) for k, v in pictures.items()):
            assert float(np.abs(a.astype(int) - b.astype(int)).mean()) > 0.5, f"{k}: picture did not change"
        rec.stop_camera(tuple(keys[1].split("/")))  # type: ignore[arg-type]
        t0 = time.monotonic()
        while True:
            r = await c.get("/api/live/thumbs", params={"c": [f"{k}:{seqs[k]}" for k in keys]})
            if keys[1] in r.json()["offline"]:
                break
            assert time.monotonic() - t0 < THUMB_STALE + 2, "stopped camera not reported offline"
            await asyncio.sleep(0.2)
        assert keys[0] not in r.json()["offline"]
