"""Live video to browsers over WebRTC: the browser POSTs an offer, the hub answers with the
recorder's relayed track for that camera.

Grid tiles ask for ``quality=grid``: the recorder's reduced track (``live_track(width=GRID_WIDTH,
fps=GRID_FPS)``, ``capture.recorder.ReducedTrack``) so that the hub encodes at most ``GRID_FPS``
frames/s at ``GRID_WIDTH`` pixels wide (aiortc re-encodes per viewer, so 60 tiles at
full rate would saturate the hub); an enlarged tile asks for ``quality=full`` (the recorder's own
rate and size).  Every stream is audit-logged when it starts (``live_view``) and when it ends
(``live_view_end`` with the seconds watched).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("evalwatch.dashboard")

GRID_FPS = 5.0
GRID_WIDTH = 320
CONNECT_TIMEOUT = 30.0


def _track_classes() -> tuple[Any, Any]:
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    return MediaStreamTrack, MediaStreamError


@dataclass(eq=False)
class LiveSession:
    pc: Any
    username: str
    target: str
    started: float
    established: bool = False
    #: The viewer's login session (``login_sessions`` row id): revoking it closes the stream.
    login: str = ""
    close: Callable[[], Awaitable[None]] | None = None
    #: Stops watching the login session (set by the route; called when the stream ends).
    unwatch: Callable[[], None] | None = None


class LiveManager:
    """Open peer connections to browsers; ``on_end(session)`` is awaited when one closes."""

    def __init__(self, cfg: Any, on_end: Callable[[LiveSession], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.on_end = on_end
        self.sessions: set[LiveSession] = set()
        self._ice_configured = False
        # Strong references to the per-viewer watchdog tasks (asyncio keeps only weak ones).
        self._watchdogs: set[asyncio.Task[None]] = set()
        # Grid thumbnails (created on the first thumbnail request) and their viewing audit.
        self.thumb_hub: ThumbHub | None = None
        self.thumb_audit = ThumbAudit()
        self._thumb_sweeper: asyncio.Task[None] | None = None

    def thumbs(self, recorder: Any) -> ThumbHub:
        if self.thumb_hub is None or self.thumb_hub.recorder is not recorder:
            self.thumb_hub = ThumbHub(recorder)
        return self.thumb_hub

    def sweep_thumb_viewings(self, on_end: Callable[[ThumbViewing], Awaitable[None]]) -> None:
        """Make sure viewings that stopped get their ``live_view_end`` even if nobody asks again."""
        if self._thumb_sweeper is not None and not self._thumb_sweeper.done():
            return

        async def sweep() -> None:
            while self.thumb_audit.viewing:
                await asyncio.sleep(1.0)
                for v in self.thumb_audit.expire():
                    try:
                        await on_end(v)
                    except Exception:
                        log.exception("live_view_end audit failed")

        self._thumb_sweeper = asyncio.create_task(sweep(), name="thumb-audit-sweeper")

    def _rtc_configuration(self) -> Any:
        try:
            from capture.ice import configure_ice, rtc_configuration
        except ImportError:  # pragma: no cover - capture is part of the hub install
            from aiortc import RTCConfiguration

            return RTCConfiguration(iceServers=[])
        if not self._ice_configured:
            configure_ice(self.cfg.hub.ice_interfaces)
            self._ice_configured = True
        return rtc_configuration(self.cfg.hub.stun_urls, self.cfg.hub.turn_urls)

    async def answer(
        self, offer_sdp: str, offer_type: str, track: Any, username: str, target: str, login: str = ""
    ) -> tuple[dict[str, str], LiveSession]:
        """Answer ``offer_sdp`` with ``track``; raises ``ValueError`` for an unusable offer."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(configuration=self._rtc_configuration())
        sess = LiveSession(pc, username, target, time.time(), login=login)
        self.sessions.add(sess)
        closed = asyncio.Event()

        async def _close() -> None:
            if closed.is_set():
                return
            closed.set()
            self.sessions.discard(sess)
            if sess.unwatch is not None:
                sess.unwatch()
            with contextlib.suppress(Exception):
                track.stop()
            with contextlib.suppress(Exception):
                await pc.close()
            try:
                await self.on_end(sess)
            except Exception:
                log.exception("live_view_end audit failed")

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed", "disconnected"):
                await _close()

        async def _watchdog() -> None:
            await asyncio.sleep(CONNECT_TIMEOUT)
            if pc.connectionState != "connected":
                await _close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type=offer_type))
            if not any(t.kind == "video" for t in pc.getTransceivers()):
                raise ValueError("offer has no video")
            pc.addTrack(track)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as e:
            await _close()
            raise ValueError(str(e)) from e
        sess.established = True
        sess.close = _close
        sess_task = asyncio.create_task(_watchdog())
        self._watchdogs.add(sess_task)
        sess_task.add_done_callback(self._watchdogs.discard)
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}, sess

    async def close_login(self, login: str) -> int:
        """Close every stream watched under login session ``login`` (revoked); how many."""
        mine = [s for s in list(self.sessions) if login and s.login == login]
        for s in mine:
            if s.close is not None:
                await s.close()
        return len(mine)

    async def close_all(self) -> None:
        for s in list(self.sessions):
            with contextlib.suppress(Exception):
                await s.pc.close()
        self.sessions.clear()
        if self._thumb_sweeper is not None:
            self._thumb_sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._thumb_sweeper
        if self.thumb_hub is not None:
            await self.thumb_hub.close()


# -- grid thumbnails ------------------------------------------------------------------------------

THUMB_FPS = 2.0  # pictures per second a grid tile gets (one JPEG per camera, shared by all viewers)
THUMB_WIDTH = 320
THUMB_STALE = 3.0  # no new frame for this long: the camera is offline for the wall (409)
THUMB_IDLE = 20.0  # a camera's thumbnailer stops when nobody asked for this long
THUMB_QUALITY = 70


class Thumb:
    """The latest reduced frame of one camera and its JPEG (encoded lazily, once per frame)."""

    def __init__(self) -> None:
        self.seq = 0
        self.frame: Any = None
        self.at = 0.0  # monotonic time of the latest frame
        self.asked = time.monotonic()
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.task: asyncio.Task[None] | None = None


def encode_jpeg(frame: Any, quality: int = THUMB_QUALITY, width: int = THUMB_WIDTH) -> bytes:
    """A grid thumbnail of a decoded frame: at most ``width`` px wide (aspect kept), JPEG.  The
    downscale and colour conversion are one swscale pass; runs in a worker thread."""
    import cv2

    if frame.width > width:
        h = max(2, round(frame.height * width / frame.width / 2) * 2)
        img = frame.reformat(width=width, height=h, format="bgr24").to_ndarray()
    else:
        img = frame.to_ndarray(format="bgr24")
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any bgr24 array
        raise ValueError("jpeg encoding failed")
    return bytes(buf)


class ThumbHub:
    """Grid thumbnails: per camera, one reduced subscription to the recorder's live frames
    (``recorder.live_track(width=THUMB_WIDTH, fps=THUMB_FPS)``, started on the first request and
    stopped after ``THUMB_IDLE`` s without one) and one JPEG per new frame, shared by every viewer.

    This replaces a WebRTC peer connection per grid tile, whose per-viewer VP8/H.264 re-encode
    in aiortc does not fit 60 tiles on a small hub (see docs/dashboard.md, "Live wall at scale").
    """

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.thumbs: dict[tuple[str, str, str], Thumb] = {}
        self.encoded = 0
        self._encode_lock = asyncio.Lock()

    def _start(self, key: tuple[str, str, str], th: Thumb) -> bool:
        # Rate-limited only: the downscale happens in encode_jpeg, off the event loop, and only
        # for frames somebody asks for.
        track = self.recorder.live_track(*key, fps=THUMB_FPS)
        if track is None:
            return False
        th.task = asyncio.create_task(self._pump(th, track), name=f"thumb-{'/'.join(key)}")
        return True

    async def _pump(self, th: Thumb, track: Any) -> None:
        _, media_stream_error = _track_classes()
        try:
            while time.monotonic() - th.asked < THUMB_IDLE:
                frame = await track.recv()
                th.frame, th.at = frame, time.monotonic()
                th.seq += 1
        except media_stream_error:
            pass
        finally:
            th.task = None
            with contextlib.suppress(Exception):
                track.stop()

    async def get(self, site: str, room: str, camera: str) -> tuple[int, bytes, float] | None:
        """``(seq, jpeg, age_s)`` of the camera's latest picture, or None when it has no picture
        newer than ``THUMB_STALE`` s (offline, stalled, or its first frame is not there yet)."""
        return (await self.get_many([(site, room, camera)]))[(site, room, camera)]

    async def get_many(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[int, bytes, float] | None]:
        """:meth:`get` for several cameras; the JPEGs they lack are encoded in ONE worker-thread
        call (a whole wall costs one thread hop, not one per tile)."""
        now = time.monotonic()
        live: list[tuple[tuple[str, str, str], Thumb]] = []
        out: dict[tuple[str, str, str], tuple[int, bytes, float] | None] = {}
        for key in keys:
            th = self.thumbs.get(key)
            if th is None:
                th = self.thumbs[key] = Thumb()
            th.asked = now
            if th.task is None or th.task.done():
                self._start(key, th)
            if th.frame is None or now - th.at > THUMB_STALE:
                out[key] = None
            else:
                live.append((key, th))
        async with self._encode_lock:  # concurrent viewers: encode each picture once
            todo = [(th, th.seq, th.frame) for _, th in live if th.jpeg_seq != th.seq]
            if todo:
                jpegs = await asyncio.to_thread(lambda: [encode_jpeg(f) for _, _, f in todo])
                for (th, seq, _), jpeg in zip(todo, jpegs, strict=True):
                    th.jpeg, th.jpeg_seq = jpeg, seq
                self.encoded += len(todo)
        done = time.monotonic()
        for key, th in live:
            assert th.jpeg is not None
            out[key] = (th.jpeg_seq, th.jpeg, done - th.at)
        return out

    async def close(self) -> None:
        for th in self.thumbs.values():
            if th.task is not None:
                th.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await th.task
        self.thumbs.clear()


@dataclass(eq=False)
class ThumbViewing:
    """One user's continuous viewing of one camera's thumbnails (for the audit log)."""

    username: str
    role: str
    target: str
    ip: str | None
    started: float
    last: float


class ThumbAudit:
    """Audit ``live_view`` (``quality=thumb``) when a user starts watching a camera's thumbnails
    and ``live_view_end`` (seconds) once ``gap`` s pass without a request from them for it:
    one row pair per viewing instead of one per picture."""

    def __init__(self, gap: float = 15.0) -> None:
        self.gap = gap
        self.viewing: dict[tuple[str, str], ThumbViewing] = {}

    def touch(self, username: str, role: str, target: str, ip: str | None) -> tuple[bool, list[ThumbViewing]]:
        """Note a request; ``(starts_a_viewing, viewings_that_ended)``."""
        now = time.monotonic()
        ended = self.expire(now)
        v = self.viewing.get((username, target))
        if v is not None:
            v.last = now
            return False, ended
        self.viewing[(username, target)] = ThumbViewing(username, role, target, ip, now, now)
        return True, ended

    def expire(self, now: float | None = None, *, all_: bool = False) -> list[ThumbViewing]:
        now = time.monotonic() if now is None else now
        ended = [v for v in self.viewing.values() if all_ or now - v.last > self.gap]
        for v in ended:
            del self.viewing[(v.username, v.target)]
        return ended
