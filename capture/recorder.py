"""Hub side of the live path: answer agents' WebRTC offers and fan the received frames out.

One ``RTCPeerConnection`` per camera.  Each received track goes through an aiortc ``MediaRelay``;
the recorder's own consumer reads every frame (status: fps, last frame time) and offers each
decoded frame, *unconverted*, to the :class:`FrameSink` (analysis), which converts only the frames
it analyses — so the frame an analysis round takes is at most one frame interval old, and the
hub pays the colour conversion only for analysed frames.  Live viewers get
``live_track()``: a relay subscription, optionally reduced (size/rate) for the wall grid.  Nothing
in the receive loop blocks: the sink's ``submit`` must return at once.

The archive does *not* come from here: agents upload their own encoded segments (see
``capture.ingest``), so a hub crash or a network cut loses no footage.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import queue
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from capture.ice import configure_ice, rtc_configuration
from capture.live_encoder import CONTROL_CHANNEL
from config.models import EvalwatchConfig
from storage.common import CameraId

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Receives frames for analysis.  ``submit`` must not block (drop instead).

    ``frame`` is the decoded ``av.VideoFrame``; a sink converts the frames it uses with
    ``frame.to_ndarray(format="bgr24")`` (off the event loop).
    """

    def submit(self, camera: CameraId, ts: datetime, frame: av.VideoFrame) -> None: ...


class BufferedFrameSink:
    """A bounded drop-oldest buffer implementing :class:`FrameSink`; consumers ``await get()``."""

    def __init__(self, maxlen: int = 64):
        self._buf: collections.deque[tuple[CameraId, datetime, np.ndarray]] = collections.deque()
        self.maxlen = maxlen
        self.dropped = 0
        self.submitted = 0
        self._event = asyncio.Event()

    def submit(self, camera: CameraId, ts: datetime, frame: av.VideoFrame | np.ndarray) -> None:
        self.submitted += 1
        if len(self._buf) >= self.maxlen:
            self._buf.popleft()
            self.dropped += 1
        img = frame if isinstance(frame, np.ndarray) else frame.to_ndarray(format="bgr24")
        self._buf.append((camera, ts, img))
        self._event.set()

    def get_nowait(self) -> tuple[CameraId, datetime, np.ndarray] | None:
        return self._buf.popleft() if self._buf else None

    async def get(self) -> tuple[CameraId, datetime, np.ndarray]:
        while not self._buf:
            self._event.clear()
            await self._event.wait()
        return self._buf.popleft()

    def __len__(self) -> int:
        return len(self._buf)


@dataclass
class CameraStatus:
    site: str
    room: str
    camera: str
    online: bool
    connection: str  # "none" | aiortc connectionState
    fps: float
    bitrate_kbps: float  # archive bitrate, from uploaded segments
    last_frame_at: datetime | None
    frames: int
    dropped_frames: int  # frames the analysis sink could not take
    segments: int
    last_segment_end: datetime | None
    last_error: str | None
    agent: dict[str, Any] = field(default_factory=dict)  # last heartbeat entry for this camera
    agent_seen_at: datetime | None = None
    # live frames dropped because the hub fell behind decoding / handling them (bounded queues)
    backlog_dropped: int = 0


class _Cam:
    def __init__(self, ref: CameraId):
        self.ref = ref
        self.pc: RTCPeerConnection | None = None
        self.track: MediaStreamTrack | None = None
        self.consumer: asyncio.Task[None] | None = None
        self.frames = 0
        self.dropped = 0
        self.frame_times: collections.deque[float] = collections.deque(maxlen=64)
        self.last_frame_mono: float | None = None
        self.last_frame_at: datetime | None = None
        self.last_submit_mono = 0.0
        self.segments = 0
        self.seg_bytes: collections.deque[tuple[float, int]] = collections.deque(maxlen=32)
        self.last_segment_end: datetime | None = None
        self.last_error: str | None = None
        self.agent: dict[str, Any] = {}
        self.agent_seen_at: datetime | None = None
        self.full_viewers: list[MediaStreamTrack] = []  # unreduced live subscriptions
        self.control: Any = None  # the agent's "evalwatch-control" data channel, if it opened one
        self.full_rate_sent: bool | None = None  # last full_rate told over that channel
        # the live connection's bounded receive queues (encoded, decoded): frames they dropped
        self.backlog: list[tuple[DecodeBacklog, LatestFrames]] = []
        self.backlog_dropped = 0  # of earlier connections


ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def without_abs_send_time(sdp: str) -> str:
    """The offer minus the abs-send-time header extension, so the answer does not negotiate it.

    Without it aiortc's receiver skips its per-packet remote bitrate estimator and REMB feedback:
    pure Python work per RTP packet on the hub's event loop, which under load (late arrivals look
    like congestion) turns into one REMB packet per received packet.  Agents send x264 output at
    their own rate cap (``capture.bitrate_kbps``), so there is no encoder for REMB to steer.
    """
    lines = sdp.splitlines(keepends=True)
    return "".join(ln for ln in lines if not (ln.startswith("a=extmap:") and ABS_SEND_TIME in ln))


class OfferError(ValueError):
    """The offer cannot be answered; the message names the problem (becomes a 400)."""


#: Seconds after a live connection is dropped before a full garbage collection frees it
#: (drops within that time share one collection).
GC_AFTER_DROP_S = 5.0

#: Encoded frames waiting for a receiver's decoder thread, at most (~2-6 s of live video).
MAX_ENCODED_BACKLOG = 30
#: Decoded frames waiting for the event loop, at most (the newest kept).
MAX_DECODED_BACKLOG = 4


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded frame starts a picture the decoder can decode alone: H.264 with an
    IDR slice or SPS (Annex B, as aiortc depacketizes it), a VP8 key frame; other codecs: True."""
    name = codec.lower()
    if name == "h264":
        i = data.find(b"\x00\x00\x01")
        while i >= 0 and i + 3 < len(data):
            if data[i + 3] & 0x1F in (5, 7):
                return True
            i = data.find(b"\x00\x00\x01", i + 3)
        return False
    if name == "vp8":
        return bool(data) and not data[0] & 0x01
    return True


class DecodeBacklog(queue.Queue):
    """A receiver's decoder input (aiortc's ``RTCRtpReceiver`` decodes in its own thread from an
    unbounded ``queue.Queue``), bounded: with ``limit`` frames waiting the backlog is dropped and
    the frames up to the next keyframe are skipped (a later frame cannot be decoded without the
    ones it references; agents send a keyframe every 2 s).  On a hub short of CPU the decoder
    thread fell behind and that queue — and the decoded frames behind it — grew without bound:
    the hub's memory grew by MBs a minute (issue #17)."""

    def __init__(self, limit: int = MAX_ENCODED_BACKLOG) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0
        self._want_key = False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:  # None: aiortc's end-of-stream marker, always delivered
            codec, frame = item
            key = is_keyframe(getattr(codec, "name", ""), bytes(getattr(frame, "data", b"")))
            with self.mutex:
                if key:
                    self._want_key = False
                elif self._want_key:
                    self.dropped += 1
                    return
                if len(self.queue) >= self.limit:
                    self.dropped += len(self.queue)
                    self.queue.clear()
                    if not key:
                        self._want_key = True
                        self.dropped += 1
                        return
        super().put(item, block, timeout)


class LatestFrames(asyncio.Queue):
    """A receiver's decoded frames waiting for the event loop: the newest ``limit`` (older ones
    dropped), not aiortc's unbounded ``asyncio.Queue``.  ``None`` (the track ended) always goes."""

    def __init__(self, limit: int = MAX_DECODED_BACKLOG) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        while item is not None and self.qsize() >= self.limit:
            self.get_nowait()
            self.dropped += 1
        super().put_nowait(item)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)


def bound_receive_queues(pc: RTCPeerConnection) -> list[tuple[DecodeBacklog, LatestFrames]]:
    """Give each video receiver of ``pc`` a :class:`DecodeBacklog` and :class:`LatestFrames` in
    place of aiortc's unbounded queues.  Call before the connection starts (the receiver's decoder
    thread takes them when it starts, once DTLS is up).  Relies on aiortc's private attribute
    names (checked: aiortc 1.9-1.16; ``tests/test_recorder_backlog.py`` fails when they change)."""
    out = []
    for r in pc.getReceivers():
        if r.track is None or r.track.kind != "video":
            continue
        if not hasattr(r, "_RTCRtpReceiver__decoder_queue") or not hasattr(r.track, "_queue"):
            log.warning("aiortc receiver without the expected queues: live backlog unbounded")
            continue
        enc, dec = DecodeBacklog(), LatestFrames()
        r._RTCRtpReceiver__decoder_queue = enc
        r.track._queue = dec
        out.append((enc, dec))
    return out


class Recorder:
    def __init__(
        self,
        cfg: EvalwatchConfig,
        frame_sink: FrameSink | None = None,
        *,
        analysis_fps: float | None = None,
    ):
        self.cfg = cfg
        self.frame_sink = frame_sink
        # None: offer every frame (the sink keeps the newest); a number caps the offer rate.
        self.analysis_fps = analysis_fps
        self.relay = MediaRelay()
        self._cams: dict[CameraId, _Cam] = {}
        for site, room, cam in cfg.cameras():
            ref = CameraId(site.id, room.id, cam.id)
            self._cams[ref] = _Cam(ref)
        self._closing = False
        self._gc_handle: asyncio.TimerHandle | None = None
        self.gc_runs = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        configure_ice(self.cfg.hub.ice_interfaces)

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(self._drop(c, "hub shutting down") for c in self._cams.values()))
        if self._gc_handle is not None:
            self._gc_handle.cancel()
            self._gc_handle = None

    def known(self, ref: CameraId) -> bool:
        return ref in self._cams

    # -- live path ------------------------------------------------------------------------------

    async def handle_offer(self, ref: CameraId, sdp: str, type_: str) -> RTCSessionDescription:
        """Answer an agent's offer for ``ref``; replaces that camera's previous connection."""
        cam = self._cams[ref]
        if type_ != "offer":
            raise OfferError(f"'type' must be 'offer', got {type_!r}")
        if not sdp.lstrip().startswith("v=0"):
            raise OfferError("malformed SDP: must start with 'v=0'")
        if "\nm=video " not in sdp.replace("\r\n", "\n"):
            raise OfferError("malformed SDP: no 'm=video' section")
        hub = self.cfg.hub
        pc = RTCPeerConnection(configuration=rtc_configuration(hub.stun_urls, hub.turn_urls))
        got_track: list[MediaStreamTrack] = []

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                got_track.append(track)

        @pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if channel.label == CONTROL_CHANNEL and cam.pc is pc:
                cam.control, cam.full_rate_sent = channel, None
                self._tell_full_rate(cam)  # a viewer may be waiting already (agent reconnected)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=without_abs_send_time(sdp), type="offer"))
            if not got_track:
                raise OfferError("malformed SDP: the video section carries no track")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            backlog = bound_receive_queues(pc)  # bounded live backlog (issue #17)
        except OfferError:
            await pc.close()
            raise
        except Exception as e:
            await pc.close()
            raise OfferError(f"malformed SDP: {type(e).__name__}: {e}") from None

        await self._drop(cam, None)
        cam.pc = pc
        cam.backlog = backlog
        cam.track = got_track[0]
        cam.last_error = None
        cam.consumer = asyncio.create_task(self._consume(cam, pc, got_track[0]), name=f"rec-{ref}")

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = pc.connectionState
            log.info("peer connection %s site=%s room=%s camera=%s", state, ref.site, ref.room, ref.camera)
            if state == "failed" and cam.pc is pc:
                cam.last_error = "ICE/DTLS connection failed"
                await self._drop(cam, None)

        log.info("answered offer site=%s room=%s camera=%s", ref.site, ref.room, ref.camera)
        desc = pc.localDescription
        assert desc is not None
        return desc

    async def _consume(self, cam: _Cam, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        sub = self.relay.subscribe(track, buffered=False)
        period = 1.0 / self.analysis_fps if self.analysis_fps else 0.0
        try:
            while True:
                frame = await sub.recv()
                now = time.monotonic()
                cam.frames += 1
                cam.frame_times.append(now)
                cam.last_frame_mono = now
                cam.last_frame_at = datetime.now(UTC)
                if self.frame_sink is not None and now - cam.last_submit_mono >= period:
                    cam.last_submit_mono = now
                    assert isinstance(frame, av.VideoFrame)
                    try:
                        self.frame_sink.submit(cam.ref, cam.last_frame_at, frame)
                    except Exception as e:  # a broken sink must not stop the live path
                        cam.dropped += 1
                        cam.last_error = f"frame sink: {e}"
                        log.exception("frame sink failed camera=%s", cam.ref)
        except MediaStreamError:
            if cam.pc is pc and not self._closing:
                cam.last_error = cam.last_error or "track ended"
                log.info("track ended site=%s room=%s camera=%s", cam.ref.site, cam.ref.room, cam.ref.camera)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            cam.last_error = f"receive failed: {e}"
            log.exception("receive failed camera=%s", cam.ref)
        finally:
            sub.stop()

    async def disconnect(self, ref: CameraId, reason: str) -> bool:
        """Close ``ref``'s live connection (``reason`` becomes its ``last_error``); False: none open."""
        cam = self._cams.get(ref)
        if cam is None or cam.pc is None:
            return False
        log.info("closing live connection site=%s room=%s camera=%s: %s", *ref.as_tuple(), reason)
        await self._drop(cam, reason)
        return True

    async def _drop(self, cam: _Cam, error: str | None) -> None:
        pc, task = cam.pc, cam.consumer
        cam.backlog_dropped += sum(e.dropped + d.dropped for e, d in cam.backlog)
        cam.backlog = []
        cam.pc, cam.track, cam.consumer = None, None, None
        cam.control, cam.full_rate_sent = None, None
        if error:
            cam.last_error = error
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
            self._collect_soon()

    def _collect_soon(self) -> None:
        """A closed ``RTCPeerConnection`` is a web of reference cycles (event emitters, transports,
        receivers): only the cyclic collector frees it — with its decoder, frame pool and jitter
        buffers — and a full collection is rare in a hub holding millions of long-lived objects,
        so every reconnection kept its connection's memory for a long time (issue #17).  One full
        collection :data:`GC_AFTER_DROP_S` after a drop frees it (a burst of drops: one)."""
        if self._gc_handle is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            self._gc_handle = asyncio.get_running_loop().call_later(GC_AFTER_DROP_S, self._collect)

    def _collect(self) -> None:
        self._gc_handle = None
        t0 = time.perf_counter()
        freed = gc.collect()
        self.gc_runs += 1
        log.debug("gc after dropped live connections: %d objects freed in %.0f ms",
                  freed, (time.perf_counter() - t0) * 1000)

    def live_track(
        self,
        site: str,
        room: str,
        camera: str,
        *,
        width: int | None = None,
        fps: float | None = None,
    ) -> MediaStreamTrack | None:
        """A track of the camera's live frames for a viewer, or None while it is not connected.

        With ``width`` and/or ``fps`` the track is reduced (aspect kept) — use e.g.
        ``width=320, fps=5`` for the wall grid so the hub encodes little per viewer.  Call
        ``track.stop()`` when the viewer leaves.
        """
        cam = self._cams.get(CameraId(site, room, camera))
        if cam is None or cam.track is None:
            return None
        sub = self.relay.subscribe(cam.track, buffered=False)
        if width is None and fps is None:
            cam.full_viewers.append(sub)
            sub.on("ended", lambda: self._tell_full_rate(cam))
            self._tell_full_rate(cam)
            return sub
        return ReducedTrack(sub, width=width, fps=fps)

    def wants_full_rate(self, ref: CameraId) -> bool:
        """Whether somebody watches the camera at full quality (an unreduced live track that has
        not ended): the agent is then asked to send its camera's full frame rate — at once over
        its control data channel, and in every heartbeat answer (agents without the channel,
        and a lost message, catch up there)."""
        cam = self._cams.get(ref)
        return cam is not None and self._full_wanted(cam)

    @staticmethod
    def _full_wanted(cam: _Cam) -> bool:
        cam.full_viewers = [t for t in cam.full_viewers if t.readyState == "live"]
        return bool(cam.full_viewers)

    def _tell_full_rate(self, cam: _Cam) -> None:
        """Send ``{"full_rate": bool}`` over the camera's control channel when it changed."""
        want = self._full_wanted(cam)
        ch = cam.control
        if ch is None or ch.readyState != "open" or want == cam.full_rate_sent:
            return
        try:
            ch.send(json.dumps({"full_rate": want}))
            cam.full_rate_sent = want
        except Exception as e:  # the heartbeat answer carries the same request
            log.info("control message failed camera=%s: %s", cam.ref, e)

    def send_room_control(self, site: str, room: str, message: dict[str, Any]) -> bool:
        """Send ``message`` over the control channel of one of the room's cameras (the first
        open one); False when none is open (the heartbeat answer carries it then)."""
        for ref, cam in self._cams.items():
            ch = cam.control
            if ref.site != site or ref.room != room or ch is None or ch.readyState != "open":
                continue
            try:
                ch.send(json.dumps(message, ensure_ascii=False))
                return True
            except Exception as e:
                log.info("control message failed camera=%s: %s", cam.ref, e)
        return False

    # -- agent reports ------------------------------------------------------------------------

    def heartbeat(self, site: str, cameras: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for entry in cameras:
            ref = CameraId(site, str(entry.get("room")), str(entry.get("camera")))
            cam = self._cams.get(ref)
            if cam is None:
                continue
            cam.agent = entry
            cam.agent_seen_at = now

    def is_live(self, ref: CameraId) -> bool:
        """Whether the hub holds a (not failed) live connection for the camera."""
        cam = self._cams.get(ref)
        return cam is not None and cam.pc is not None and cam.pc.connectionState not in ("failed", "closed")

    def note_segment(self, ref: CameraId, start: datetime, end: datetime, nbytes: int) -> None:
        cam = self._cams.get(ref)
        if cam is None:
            return
        cam.segments += 1
        cam.seg_bytes.append((max((end - start).total_seconds(), 1e-3), nbytes))
        if cam.last_segment_end is None or end > cam.last_segment_end:
            cam.last_segment_end = end

    # -- status --------------------------------------------------------------------------------

    def status(self) -> list[CameraStatus]:
        now = time.monotonic()
        offline_s = self.cfg.rules.offline_seconds
        out = []
        for ref, cam in sorted(self._cams.items()):
            recent = [t for t in cam.frame_times if now - t <= 2.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 else 0.0
            online = cam.last_frame_mono is not None and now - cam.last_frame_mono <= offline_s
            secs = sum(s for s, _ in cam.seg_bytes)
            kbps = sum(b for _, b in cam.seg_bytes) * 8 / 1000 / secs if secs else 0.0
            out.append(
                CameraStatus(
                    site=ref.site,
                    room=ref.room,
                    camera=ref.camera,
                    online=online,
                    connection=cam.pc.connectionState if cam.pc is not None else "none",
                    fps=round(fps, 2),
                    bitrate_kbps=round(kbps, 1),
                    last_frame_at=cam.last_frame_at,
                    frames=cam.frames,
                    dropped_frames=cam.dropped,
                    backlog_dropped=cam.backlog_dropped + sum(e.dropped + d.dropped for e, d in cam.backlog),
                    segments=cam.segments,
                    last_segment_end=cam.last_segment_end,
                    last_error=cam.last_error or cam.agent.get("last_error"),
                    agent=dict(cam.agent),
                    agent_seen_at=cam.agent_seen_at,
                )
            )
        return out


class ReducedTrack(MediaStreamTrack):
    """Downscaled / rate-limited view of another video track (for the live wall)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, *, width: int | None, fps: float | None):
        super().__init__()
        self.source = source
        self.width = width
        self.period = 1.0 / fps if fps else 0.0
        self._next: float | None = None  # frame time of the next due frame

    async def recv(self) -> av.VideoFrame:
        while True:
            frame = await self.source.recv()
            assert isinstance(frame, av.VideoFrame)
            t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
            if self.period:
                # Frames on a 1/fps grid of frame time, with a quarter period of tolerance: a
                # 5 fps source gives 2.0/s at fps=2 (a plain "≥ 0.9 period since the last one"
                # gives every third frame, 1.67/s).  After a gap the grid restarts at the frame.
                nxt = self._next
                if nxt is not None and t < nxt - 0.25 * self.period:
                    continue
                base = nxt if nxt is not None and t - nxt < self.period else t
                self._next = base + self.period
            if self.width and frame.width > self.width:
                h = max(2, round(frame.height * self.width / frame.width / 2) * 2)
                out = frame.reformat(width=self.width, height=h, format="yuv420p")
                out.pts, out.time_base = frame.pts, frame.time_base or Fraction(1, 90000)
                return out
            return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()
