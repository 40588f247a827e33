"""Small real-ish services for dashboard tests and benchmarks (no S3 server, no recorder).

``make_services(tmp_path)`` returns :class:`dashboard.services.Services` with a SQLite
:class:`storage.db.Database` (schema created), an in-memory object store, the real
:class:`analysis.bus.EventBus`, a :class:`FakeRecorder` and a config of ``sites`` x ``rooms`` x
``cameras`` with one user per role (password ``<role>-password-1``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from config.models import EvalwatchConfig
from dashboard.services import Services

ROLE_USERS = {
    "admin": "admin",
    "supervisor": "sup",
    "auditor": "aud",
    "observer": "obs",
}


def password_of(role: str) -> str:
    return f"{role}-password-1"


def make_config(
    sites: int = 2,
    rooms: int = 2,
    cameras: int = 1,
    secret: str = "test-secret-key-0123456789",  # noqa: S107
    **hub: Any,
) -> EvalwatchConfig:
    return EvalwatchConfig.model_validate(
        {
            "hub": {"secret_key": secret, "force_password_change": False, **hub},
            "users": [
                {"username": u, "role": r, "password": password_of(r), "display_name": f"{r} user"}
                for r, u in ROLE_USERS.items()
            ],
            "sites": [
                {
                    "id": f"site{s}",
                    "name": f"Site {s}",
                    "rooms": [
                        {
                            "id": f"room{r}",
                            "cameras": [{"id": f"cam{c}", "source": "x.mp4"} for c in range(1, cameras + 1)],
                            "seats": [
                                {"id": f"s{c}", "camera": f"cam{c}", "polygon": [[0, 0], [0.5, 0], [0.5, 1]]}
                                for c in range(1, cameras + 1)
                            ],
                        }
                        for r in range(1, rooms + 1)
                    ],
                }
                for s in range(1, sites + 1)
            ],
            "secrets_file": None,
        }
    )


class MemoryObjects:
    """In-memory stand-in for ``storage.objects.ObjectStore`` (get/put, ranged reads)."""

    def __init__(self, cfg: Any = None) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.fail = False
        self.cfg = cfg

    async def list(self, bucket: str, prefix: str = "") -> list[Any]:
        from storage.objects import ObjectInfo

        if self.fail:
            raise ConnectionError("simulated S3 outage")
        return [
            ObjectInfo(bucket=b, key=k, size=len(v))
            for (b, k), v in sorted(self.data.items())
            if b == bucket and k.startswith(prefix)
        ]

    async def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "", **_: Any) -> None:
        self.data[(bucket, key)] = data

    async def get_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if self.fail:
            raise ConnectionError("simulated S3 outage")
        from storage.objects import ObjectMissing

        try:
            b = self.data[(bucket, key)]
        except KeyError:
            raise ObjectMissing(f"{bucket}/{key}") from None
        return b[offset : None if length is None else offset + length]


@dataclass
class FakeStatus:
    site: str
    room: str
    camera: str
    online: bool = True
    fps: float = 15.0
    last_frame_age: float | None = 0.1


class FakeRecorder:
    """``status()`` from a dict; ``live_track`` returns a synthetic moving-colour track."""

    def __init__(self, cfg: EvalwatchConfig) -> None:
        self.statuses = {(s.id, r.id, c.id): FakeStatus(s.id, r.id, c.id) for s, r, c in cfg.cameras()}

    def status(self) -> list[FakeStatus]:
        return list(self.statuses.values())

    def live_track(
        self, site: str, room: str, camera: str, *, width: int | None = None, fps: float | None = None
    ) -> Any | None:
        from capture.recorder import ReducedTrack

        st = self.statuses.get((site, room, camera))
        if st is None or not st.online:
            return None
        track = synthetic_track()
        return ReducedTrack(track, width=width, fps=fps) if width or fps else track


def synthetic_track(width: int = 320, height: int = 240, fps: int = 10) -> Any:
    """An aiortc video track whose picture changes every frame (a moving bar)."""
    import numpy as np
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    class Moving(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def recv(self) -> VideoFrame:
            pts, tb = await self.next_timestamp()
            img = np.full((height, width, 3), 40, dtype=np.uint8)
            x = (self.n * 8) % width
            img[:, x : x + 24] = (255, 200, 0)
            self.n += 1
            f = VideoFrame.from_ndarray(img, format="bgr24")
            f.pts, f.time_base = pts, tb
            return f

    return Moving()


def make_database(path: Path) -> Any:
    from storage.db import Database

    db = Database(f"sqlite:///{path}")
    db.upgrade()  # the real migrations, so every package's tables (sessions too) exist
    return db


def make_services(
    tmp_path: Path,
    *,
    bus: Any | None = None,
    cfg: EvalwatchConfig | None = None,
    recorder: Any | None = "fake",
) -> Services:
    from analysis.bus import EventBus
    from capture.notices import RoomNotices

    cfg = cfg or make_config()
    db = make_database(tmp_path / "dash.db")
    return Services(
        cfg=cfg,
        db=db,
        objects=MemoryObjects(cfg.storage.s3),
        segments=None,
        bus=bus if bus is not None else EventBus(),
        recorder=FakeRecorder(cfg) if recorder == "fake" else recorder,
        notices=RoomNotices(db),  # no recorder: notices wait for a heartbeat answer
    )


def add_event(db: Any, **kw: Any) -> int:
    """Insert an event row (defaults: site1/room1/cam1, rule phone, status new); returns its id."""
    from datetime import UTC

    from storage.models import EventRow

    row = {
        "site": "site1",
        "room": "room1",
        "camera": "cam1",
        "seat": "s1",
        "rule": "phone",
        "started_at": datetime.now(UTC),
        "confidence": 0.9,
        "status": "new",
        **kw,
    }
    with db.session() as s:
        e = EventRow(**row)
        s.add(e)
        s.commit()
        return int(e.id)


@contextlib.asynccontextmanager
async def running_app(services: Services) -> AsyncIterator[Any]:
    """The dashboard app over ``services`` with its lifespan entered (the ``app`` fixture of the
    ASGI tests, ``tests/conftest.py``)."""
    from dashboard.app import create_app

    app = create_app(services)
    async with app.router.lifespan_context(app):
        yield app


async def asgi_login(app: Any, role: str, client: tuple[str, int] = ("10.1.2.3", 5555)) -> Any:
    """An ``httpx.AsyncClient`` on ``app`` (in process, from ``client``'s address) logged in as
    ``role``'s user, its CSRF header set."""
    import httpx

    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=client), base_url="http://testserver")
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


async def chromium_context(p: Any, width: int = 1400, height: int = 900) -> Any:
    """A headless Debian Chromium context (Playwright's async API ``p``) with its own profile."""
    from testkit.hub import CHROMIUM, CHROMIUM_ARGS
    from testkit.procs import tempdir_removed_at_exit

    return await p.chromium.launch_persistent_context(
        tempdir_removed_at_exit(), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
        headless=True, viewport={"width": width, "height": height},
    )


async def ui_login(page: Any, url: str, role: str) -> None:
    """Log ``page`` in as ``role``'s user through the login page (cookies of an earlier login
    cleared first) and wait until the dashboard is ready."""
    await page.context.clear_cookies()
    await page.goto(url + "/login")
    await page.fill("#username", ROLE_USERS[role])
    await page.fill("#password", password_of(role))
    await page.click("#login-submit")
    await page.wait_for_selector("body[data-ready='1']", timeout=20_000)


@dataclass
class BrowserPage:
    """What :func:`dashboard_in_chromium` yields: the Playwright page, the dashboard's base URL
    and the page's uncaught errors (``pageerror``) and console errors, collected as they come."""

    page: Any
    url: str
    errors: list[str]
    console: list[str]


@contextlib.asynccontextmanager
async def dashboard_in_chromium(
    services: Services, width: int = 1400, height: int = 900
) -> AsyncIterator[BrowserPage]:
    """The dashboard over ``services`` on a real port (:func:`serving`) and a headless Chromium
    page on it (:func:`chromium_context`), both stopped on exit; log in with :func:`ui_login`."""
    from playwright.async_api import async_playwright

    from dashboard.app import create_app

    async with serving(create_app(services)) as addr, async_playwright() as p:
        ctx = await chromium_context(p, width, height)
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            out = BrowserPage(page, "http://" + addr, [], [])
            page.on("pageerror", lambda e: out.errors.append(str(e)))
            page.on("console", lambda m: out.console.append(m.text) if m.type == "error" else None)
            yield out
        finally:
            await ctx.close()


async def wait_for(pred: Any, within: float = 5.0, interval: float = 0.05) -> bool:
    end = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < end:
        if pred():
            return True
        await asyncio.sleep(interval)
    return bool(pred())


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with a real uvicorn on a free 127.0.0.1 port (lifespan on); yields
    ``"127.0.0.1:<port>"`` and stops the server on exit."""
    import uvicorn

    from storage.s3server import free_port

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                        lifespan="on"))
    task = asyncio.create_task(srv.serve())
    try:
        while not srv.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"127.0.0.1:{srv.config.port}"
    finally:
        srv.should_exit = True
        await task


async def raw_request(addr: str, request: str) -> tuple[int, dict[str, Any] | None]:
    """Send one raw HTTP/1.1 request to ``addr`` (any ``Host``, any upgrade) and read the status
    line and the JSON body (None when empty)."""
    import json

    host, port = addr.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request.encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
    finally:
        writer.close()
    return status, (json.loads(body) if body else None)


def ws_upgrade(addr: str, host: str, cookie: str, path: str = "/ws/events") -> str:
    """A raw WebSocket upgrade request for :func:`raw_request`."""
    import base64
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n"
            f"Cookie: {cookie}\r\n\r\n")


async def open_live_view(client: Any, path: str, timeout_s: float = 30.0) -> tuple[Any, float]:
    """A browser's live view: a recvonly aiortc peer connection whose offer is POSTed to ``path``
    (``/api/live/<site>/<room>/<camera>/offer``) with ``client`` (logged in, CSRF header set);
    returns it once a frame was decoded, and the seconds the offer's answer took.  The caller
    closes it."""
    import time

    from aiortc import RTCPeerConnection, RTCSessionDescription

    from capture.ice import configure_ice

    configure_ice(["127.0.0.1"])
    pc = RTCPeerConnection()
    first: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _track(track: Any) -> None:
        async def recv() -> None:
            await track.recv()
            if not first.done():
                first.set_result(True)

        asyncio.ensure_future(recv())  # noqa: RUF006

    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        t0 = time.monotonic()
        r = await client.post(path, json={"sdp": pc.localDescription.sdp, "type": "offer"})
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.json()["sdp"], type="answer"))
        await asyncio.wait_for(first, timeout_s)  # a decoded frame of the live stream
    except BaseException:
        await pc.close()
        raise
    return pc, took
