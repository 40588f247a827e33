"""The live stream's own, reduced-rate encoder (``capture.live_fps`` below the camera's rate).

Why a second encoder: the hub decodes every live frame it receives (aiortc decodes in the
receiver), so its cost per camera scales with the live frame rate, while analysis looks at
``detection.analysis_fps`` (2/s) and the wall grid shows 2 pictures/s.  Sending the archive's
15 fps live made 60 cameras saturate a 2-core hub.  Dropping frames from the archive's stream is
not possible (Constrained Baseline P-frames each reference the previous one), so the live stream
is encoded separately at ``live_fps`` — by default 5/s, about a third of the archive encoder's
work on the agent and a third of the hub's receive/decode work.

The rate can change while streaming (:meth:`LiveEncoder.set_fps`): the hub asks for the camera's
full rate while somebody watches the camera enlarged (a message on the agent's control data
channel :data:`CONTROL_CHANNEL`, repeated in every heartbeat answer's ``full_rate``).

Contract: :meth:`offer` is called with every captured frame (any thread, never blocks, frames are
not modified — they are copied on the encoder's thread); frames are taken on a ``1/fps`` grid of
capture time; the encoder thread emits Annex B packets with SPS/PPS in-band on every keyframe
through ``on_packet(data, capture_ts, keyframe)``; a keyframe every ``keyframe_seconds`` and on
:meth:`request_keyframe` (a receiver's PLI, a new connection).  If the encoder falls behind, the
oldest waiting frame is dropped (live wants the newest).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
from av.video.frame import PictureType

log = logging.getLogger(__name__)

OnPacket = Callable[[bytes, float, bool], None]
MS = Fraction(1, 1000)

#: Label of the data channel an agent with a live encoder opens next to its video track: the hub
#: sends ``{"full_rate": true|false}`` on it when somebody starts / stops watching the camera
#: enlarged (the heartbeat answer's ``full_rate`` list says the same, for agents without it).
CONTROL_CHANNEL = "evalwatch-control"


def x264_options(*, preset: str, gop: int, crf: int, kbps: int) -> dict[str, str]:
    """x264 settings shared by the archive and the live encoders: Constrained Baseline (what
    every WebRTC H.264 endpoint negotiates), no scene-cut keyframes, CRF capped by VBV."""
    return {
        "preset": preset,
        "tune": "zerolatency",
        "profile": "baseline",  # x264: Constrained Baseline (profile-level-id 42c0xx)
        "x264-params": (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:crf={crf}"
            f":vbv-maxrate={kbps}:vbv-bufsize={kbps}:vbv-init=0.5"
        ),
    }


class LiveEncoder:
    """Encodes a camera's live stream at a (changeable) reduced frame rate on its own thread."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: float,
        max_fps: float,
        on_packet: OnPacket,
        bitrate_kbps: int,
        keyframe_seconds: float = 2.0,
        crf: int = 26,
        preset: str = "veryfast",
        label: str = "",
    ):
        self.width, self.height = width, height
        self.max_fps = max_fps
        self.base_fps = min(fps, max_fps)
        self.fps = self.base_fps
        self.on_packet = on_packet
        self.bitrate_kbps = bitrate_kbps
        self.keyframe_seconds = keyframe_seconds
        self.crf = crf
        self.preset = preset
        self.label = label
        self.frames_encoded = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._next_t: float | None = None
        self._want_key = True
        self._since_key = 0
        self._ctx: av.VideoCodecContext | None = None
        self._ctx_fps = 0.0
        self._t0: float | None = None
        self._last_pts = -1
        self._q: deque[tuple[av.VideoFrame, float]] = deque(maxlen=2)
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"live-enc-{label}", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------------

    def set_fps(self, fps: float) -> None:
        """Change the live rate (capped at the camera's); takes effect with the next frame."""
        fps = max(0.1, min(fps, self.max_fps))
        if fps != self.fps:
            log.info("live rate %s -> %s fps camera=%s", self.fps, fps, self.label)
            self.fps = fps
            self._next_t = None  # re-grid from the next frame
            self._want_key = True  # a new encoder (the GOP length depends on the rate)

    def request_keyframe(self) -> None:
        self._want_key = True

    def offer(self, frame: av.VideoFrame, ts: float) -> bool:
        """Offer a captured frame; returns whether it was taken for the live stream."""
        step = 1.0 / self.fps
        nxt = self._next_t
        # Half a source frame of tolerance: capture jitter must not skip a due frame.
        if nxt is not None and ts < nxt - 0.5 / self.max_fps:
            return False
        # Next slot on the grid; after a stall, restart the grid at this frame.
        self._next_t = ts + step if nxt is None or ts - nxt > step else nxt + step
        with self._cv:
            if len(self._q) == self._q.maxlen:
                self.dropped += 1
            self._q.append((frame, ts))
            self._cv.notify()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)

    # -- encoder thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                frame, ts = self._q.popleft()
            try:
                self._encode(frame, ts)
            except Exception as e:  # the live path must never take the agent down
                self.last_error = f"live encode failed: {e}"
                log.exception("live encode failed camera=%s", self.label)
                self._ctx = None
                self._want_key = True

    def _open(self) -> av.VideoCodecContext:
        fps = self.fps
        gop = max(1, round(fps * self.keyframe_seconds))
        ctx = av.CodecContext.create("libx264", "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = MS
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        # No global header flag: libx264 then repeats SPS/PPS in-band before every keyframe.
        ctx.options = x264_options(preset=self.preset, gop=gop, crf=self.crf, kbps=self.bitrate_kbps)
        ctx.open()
        self._ctx_fps = fps
        return ctx

    def _encode(self, frame: av.VideoFrame, ts: float) -> None:
        if self._ctx is None or self._ctx_fps != self.fps:
            self._ctx = self._open()
            self._want_key = True
        ctx = self._ctx
        # A copy: the archive encoder owns `frame` (it sets pts/pict_type on its own thread).
        if (frame.width, frame.height) != (self.width, self.height):
            out = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        else:
            out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
        if self._t0 is None:
            self._t0 = ts
        pts = max(round((ts - self._t0) * 1000), self._last_pts + 1)
        self._last_pts = pts
        out.pts, out.time_base = pts, MS
        key = self._want_key
        self._want_key = False
        out.pict_type = PictureType.I if key else PictureType.NONE
        self.frames_encoded += 1
        for pkt in ctx.encode(out):
            if pkt.pts is None:
                continue
            t = self._t0 + float(pkt.pts * MS)
            try:
                self.on_packet(bytes(pkt), t, bool(pkt.is_keyframe))
            except Exception:
                log.exception("live packet consumer failed camera=%s", self.label)
