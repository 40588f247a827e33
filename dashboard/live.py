"""Live video to browsers over WebRTC: the browser POSTs an offer, the hub answers with the
recorder's relayed track for that camera.

Grid tiles ask for ``quality=grid``: the track is wrapped so that the hub encodes at most
``GRID_FPS`` frames/s at ``GRID_WIDTH`` pixels wide (aiortc re-encodes per viewer, so 60 tiles at
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
from fractions import Fraction
from typing import Any

log = logging.getLogger("evalwatch.dashboard")

GRID_FPS = 5.0
GRID_WIDTH = 320
CONNECT_TIMEOUT = 30.0


def _track_classes() -> tuple[Any, Any]:
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    return MediaStreamTrack, MediaStreamError


def make_grid_track(source: Any, fps: float = GRID_FPS, width: int = GRID_WIDTH) -> Any:
    """A video track yielding at most ``fps`` frames/s of ``source`` scaled to ``width`` px wide."""
    media_stream_track, _ = _track_classes()

    class GridTrack(media_stream_track):  # type: ignore[misc, valid-type]
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._last = 0.0
            self._period = 1.0 / fps

        async def recv(self) -> Any:
            while True:
                frame = await source.recv()
                now = time.monotonic()
                if now - self._last >= self._period * 0.9:
                    self._last = now
                    break
            if frame.width > width:
                h = max(2, int(frame.height * width / frame.width) // 2 * 2)
                out = frame.reformat(width=width, height=h)
                out.pts, out.time_base = frame.pts, frame.time_base or Fraction(1, 90000)
                return out
            return frame

        def stop(self) -> None:
            super().stop()
            with contextlib.suppress(Exception):
                source.stop()

    return GridTrack()


@dataclass(eq=False)
class LiveSession:
    pc: Any
    username: str
    target: str
    started: float
    established: bool = False


class LiveManager:
    """Open peer connections to browsers; ``on_end(session)`` is awaited when one closes."""

    def __init__(self, cfg: Any, on_end: Callable[[LiveSession], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.on_end = on_end
        self.sessions: set[LiveSession] = set()
        self._ice_configured = False
        # Strong references to the per-viewer watchdog tasks (asyncio keeps only weak ones).
        self._watchdogs: set[asyncio.Task[None]] = set()

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
        self, offer_sdp: str, offer_type: str, track: Any, username: str, target: str
    ) -> dict[str, str]:
        """Answer ``offer_sdp`` with ``track``; raises ``ValueError`` for an unusable offer."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(configuration=self._rtc_configuration())
        sess = LiveSession(pc, username, target, time.time())
        self.sessions.add(sess)
        closed = asyncio.Event()

        async def _close() -> None:
            if closed.is_set():
                return
            closed.set()
            self.sessions.discard(sess)
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
        sess_task = asyncio.create_task(_watchdog())
        self._watchdogs.add(sess_task)
        sess_task.add_done_callback(self._watchdogs.discard)
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def close_all(self) -> None:
        for s in list(self.sessions):
            with contextlib.suppress(Exception):
                await s.pc.close()
        self.sessions.clear()
