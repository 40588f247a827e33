"""Encode frames into fixed-length, wall-clock-aligned MP4 segments in the spool.

Each segment is its own MP4 (H.264 yuv420p, ``+faststart`` so browsers can start playing before
the whole file arrived) and its own encoder, so every segment starts with a keyframe and can be
played or verified on its own.  Boundaries sit on UTC multiples of ``segment_seconds``: a camera's
segments tile the timeline and the hub can compute what is missing.  Timestamps inside a segment
are the frames' wall-clock capture times (ms), so a stalled source shows as a shorter segment,
never as stretched video.

Encode once: the same x264 packets that go into the segment are handed to ``on_packet`` (the
agent's WebRTC track sends them as they are, see ``capture.agent.PacketTrack``).  For that the
stream is H.264 Constrained Baseline (what every WebRTC H.264 endpoint negotiates, and what
browsers play in MP4), no B-frames, a keyframe every ``keyframe_seconds`` (2 s by default, so a
new live receiver gets a picture quickly; every segment starts with one) and on
:meth:`SegmentWriter.request_keyframe` (a receiver's PLI, a new connection) at most once a second.
Rate control: CRF quality capped by VBV at ``bitrate_kbps`` (max rate, 1 s buffer starting half
full, so a segment's fresh encoder cannot overshoot much), so a still room costs fewer bytes than
the cap and a busy one about the cap (200 kbps ≈ 90 MB per camera-hour).

The encoder runs in its own thread (:class:`EncoderThread`); libx264 releases the GIL.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

import av
from av.video.frame import PictureType

from capture.live_encoder import x264_options
from capture.spool import Spool, SpooledSegment, fmt_stamp

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)

# on_packet(annexb_bytes, wall_clock_ts, keyframe): keyframes carry SPS/PPS in-band (Annex B).
OnPacket = Callable[[bytes, float, bool], None]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class _Open:
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    start: float  # segment start (aligned boundary or first frame time)
    first_ts: float
    last_ts: float
    boundary_end: float
    tmp_path: str
    frames: int = 0
    last_pts: int = -1


class SegmentWriter:
    """Not thread-safe: call :meth:`write` / :meth:`close` from one thread."""

    def __init__(
        self,
        spool: Spool,
        site: str,
        room: str,
        camera: str,
        *,
        width: int,
        height: int,
        fps: float,
        segment_seconds: float,
        bitrate_kbps: int,
        preset: str = "veryfast",
        on_segment: Callable[[SpooledSegment], None] | None = None,
        on_packet: OnPacket | None = None,
        keyframe_seconds: float = 2.0,
        crf: int = 26,
        min_forced_key_interval: float = 1.0,
    ):
        self.spool = spool
        self.site, self.room, self.camera = site, room, camera
        self.width, self.height, self.fps = width, height, fps
        self.seconds = segment_seconds
        self.bitrate_kbps = bitrate_kbps
        self.preset = preset
        self.on_segment = on_segment
        self.on_packet = on_packet
        self.keyframe_seconds = keyframe_seconds
        self.crf = crf
        self.min_forced_key_interval = min_forced_key_interval
        self._want_key = False  # set from any thread (PLI, new live connection)
        self._last_forced_key = -math.inf
        self._extradata = b""
        self.frames_encoded = 0  # encoder invocations (one per frame, whatever the consumers)
        self.packets_out = 0
        self.forced_keyframes = 0
        self._cur: _Open | None = None
        self._prev_end: float | None = None  # end of the last closed segment, if contiguous
        self.segments_written = 0
        self.bytes_written = 0
        self.last_error: str | None = None

    # -- public -----------------------------------------------------------------------------

    def write(self, frame: av.VideoFrame, ts: float) -> None:
        """Add one frame captured at wall-clock ``ts`` (epoch seconds)."""
        cur = self._cur
        if cur is not None:
            gap = ts - cur.last_ts
            if ts >= cur.boundary_end:
                # Contiguous if the stream did not stall across the boundary.
                contiguous = gap <= max(3.0 / self.fps, 0.5)
                self._finish(end=cur.boundary_end if contiguous else cur.last_ts + 1.0 / self.fps)
                cur = None
            elif gap > max(3.0 / self.fps, 2.0):
                # Source stalled inside a segment: close honestly at the last frame.
                self._finish(end=cur.last_ts + 1.0 / self.fps)
                cur = None
        if cur is None:
            cur = self._open(ts)
        self._encode(cur, frame, ts)

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (any thread; rate-limited to one per
        ``min_forced_key_interval`` of capture time)."""
        self._want_key = True

    def close(self) -> None:
        """Finish the open segment at its last frame (agent stopping)."""
        if self._cur is not None:
            self._finish(end=self._cur.last_ts + 1.0 / self.fps)

    # -- internals ----------------------------------------------------------------------------

    def _open(self, ts: float) -> _Open:
        boundary = math.floor(ts / self.seconds) * self.seconds
        start = boundary if self._prev_end is not None and abs(self._prev_end - boundary) < 1e-3 else ts
        cam_dir = self.spool.camera_dir(self.site, self.room, self.camera)
        cam_dir.mkdir(parents=True, exist_ok=True)
        tmp = str(cam_dir / f".{fmt_stamp(utc(start))}.mp4.part")
        container = av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"})
        gop = max(1, round(self.fps * min(self.seconds, self.keyframe_seconds)))
        kbps = self.bitrate_kbps
        stream = container.add_stream(
            "libx264",
            rate=Fraction(self.fps).limit_denominator(1001),
            options=x264_options(preset=self.preset, gop=gop, crf=self.crf, kbps=kbps),
        )
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.codec_context.time_base = MS
        stream.time_base = MS
        self._cur = _Open(container, stream, start, ts, ts, boundary + self.seconds, tmp)
        return self._cur

    def _encode(self, cur: _Open, frame: av.VideoFrame, ts: float) -> None:
        if frame.format.name != "yuv420p" or frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        pts = round((ts - cur.first_ts) * 1000)
        if pts <= cur.last_pts:
            pts = cur.last_pts + 1
        frame.pts = pts
        frame.time_base = MS
        key = cur.frames == 0
        if self._want_key:
            self._want_key = False
            if ts - self._last_forced_key >= self.min_forced_key_interval:
                key = True
                if cur.frames:
                    self.forced_keyframes += 1
        if key:
            self._last_forced_key = ts
        frame.pict_type = PictureType.I if key else PictureType.NONE
        packets = cur.stream.encode(frame)
        self.frames_encoded += 1
        self._mux(cur, packets)
        cur.last_pts = pts
        cur.last_ts = ts
        cur.frames += 1

    def _mux(self, cur: _Open, packets: list[av.Packet]) -> None:
        for pkt in packets:
            if self.on_packet is not None and pkt.pts is not None:
                data = bytes(pkt)  # before muxing: the muxer may rewrite to length-prefixed NALs
                key = bool(pkt.is_keyframe)
                if key:
                    # The MP4 keeps SPS/PPS in avcC (extradata); a live receiver needs them in-band.
                    if not self._extradata or cur.frames == 0:
                        self._extradata = bytes(cur.stream.codec_context.extradata or b"")
                    data = self._extradata + data
                ts = cur.first_ts + float(pkt.pts * (pkt.time_base or MS))
                try:
                    self.on_packet(data, ts, key)
                except Exception:  # the live path must never break the archive
                    log.exception("on_packet failed camera=%s", self.camera)
            cur.container.mux(pkt)
            self.packets_out += 1

    def _finish(self, end: float) -> None:
        cur = self._cur
        assert cur is not None
        self._cur = None
        try:
            self._mux(cur, cur.stream.encode(None))
            cur.container.close()
        except Exception as e:  # encoder/disk failure: keep going with the next segment
            self.last_error = f"segment encode failed: {e}"
            log.exception(
                "segment encode failed site=%s room=%s camera=%s", self.site, self.room, self.camera
            )
            self._prev_end = None
            _unlink(cur.tmp_path)
            return
        path = self.spool.path_for(self.site, self.room, self.camera, utc(cur.start), utc(end))
        os.replace(cur.tmp_path, path)
        seg = SpooledSegment(self.site, self.room, self.camera, utc(cur.start), utc(end), path)
        self.segments_written += 1
        self.bytes_written += seg.size
        self._prev_end = end
        log.debug(
            "segment site=%s room=%s camera=%s start=%s end=%s frames=%d bytes=%d",
            self.site,
            self.room,
            self.camera,
            fmt_stamp(seg.start),
            fmt_stamp(seg.end),
            cur.frames,
            seg.size,
        )
        self.spool.enforce_quota()
        if self.on_segment is not None:
            self.on_segment(seg)


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


class EncoderThread:
    """Feeds a :class:`SegmentWriter` from a bounded queue on a dedicated thread."""

    def __init__(self, writer: SegmentWriter, max_queue: int = 120):
        self.writer = writer
        self._q: queue.Queue[tuple[av.VideoFrame, float] | None] = queue.Queue(max_queue)
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, name=f"enc-{writer.site}-{writer.room}-{writer.camera}", daemon=True
        )
        self._thread.start()

    def submit(self, frame: av.VideoFrame, ts: float) -> None:
        try:
            self._q.put_nowait((frame, ts))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 50 == 1:
                log.warning(
                    "encoder behind, dropped %d frames site=%s room=%s camera=%s",
                    self.dropped,
                    self.writer.site,
                    self.writer.room,
                    self.writer.camera,
                )

    def stop(self, timeout: float = 10.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                break
            try:
                self.writer.write(*item)
            except Exception as e:
                self.writer.last_error = f"encode failed: {e}"
                log.exception("encode failed camera=%s", self.writer.camera)
        try:
            self.writer.close()
        except Exception:
            log.exception("closing segment failed camera=%s", self.writer.camera)
