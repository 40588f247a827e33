"""Camera sources for the site agent, each read on its own thread.

* a video file: played in real time at the configured fps and looped (the demo and the tests);
* ``rtsp://`` / ``http(s)://``: opened with PyAV (RTSP over TCP unless ``rtsp_transport`` says
  otherwise).  A live stream (RTSP, MPEG-TS, MJPEG, ...: no known duration) is taken as it
  arrives, thinned to the fps; a URL with a known duration (an MP4 on a web server) is played in
  real time like a file, and looped;
* ``device:N``: a local capture device through OpenCV.

Every frame is scaled to the configured size as yuv420p and handed to ``on_frame(frame, ts)``
with its wall-clock capture time (epoch seconds).  Failures are logged (one WARNING line naming
the camera and the source, credentials masked, no traceback), recorded in ``last_error`` and
retried with exponential backoff + jitter (0.5 s doubling to 30 s, reset once a connection has
delivered frames); the thread only ends on :meth:`stop` (or at the end of a file with
``loop: false``).  Network sources never hang: opening is bounded by ``open_timeout`` and every
read by ``read_timeout`` (PyAV's interrupt callback, plus ffmpeg's socket timeouts).
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable

import av
import numpy as np

from capture.hostos import capture_api

log = logging.getLogger(__name__)

OnFrame = Callable[[av.VideoFrame, float], None]

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@")


def mask_url(text: str) -> str:
    """``text`` with the ``user:pass@`` of every URL in it replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", text)


class CameraSource:
    def __init__(
        self,
        source: str,
        *,
        width: int,
        height: int,
        fps: float,
        loop: bool,
        on_frame: OnFrame,
        label: str = "",
        rtsp_transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ):
        if not source:
            raise ValueError(f"camera {label or '?'} has no 'source'")
        if rtsp_transport not in ("tcp", "udp", "udp_multicast", "http", "https"):
            raise ValueError(f"camera {label or '?'}: unknown rtsp_transport {rtsp_transport!r}")
        self.source = source
        self.where = mask_url(source)  # what logs and errors show
        self.rtsp_transport = rtsp_transport
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.width, self.height, self.fps, self.loop = width, height, fps, loop
        self.on_frame = on_frame
        self.label = label
        self.frames = 0
        self.last_error: str | None = None
        self.finished = False
        self._phase, self._phase_t = "open", time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"src-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- thread --------------------------------------------------------------------------

    def _emit(self, frame: av.VideoFrame, ts: float) -> None:
        if frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        self.frames += 1
        self.on_frame(frame, ts)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            before = self.frames
            try:
                if self.source.startswith("device:"):
                    self._run_device(int(self.source.split(":", 1)[1]))
                elif "://" in self.source:
                    if self._run_stream() and not self.loop:
                        self.finished = True
                        return
                else:
                    self._run_file()
                    if not self.loop:
                        self.finished = True
                        return
                delay = 0.5
            except Exception as e:
                if self._stop.is_set():
                    return
                if self.frames > before:  # it worked for a while: start the backoff over
                    delay = 0.5
                msg = self._describe(e)
                self.last_error = f"camera {self.label}: source {self.where}: {type(e).__name__}: {msg}"
                log.warning(
                    "camera %s: source %s failed: %s: %s (retry in %.1fs)",
                    self.label,
                    self.where,
                    type(e).__name__,
                    msg,
                    delay,
                )
                self._stop.wait(delay * (1 + random.random() / 2))  # noqa: S311 - jitter
                delay = min(delay * 2, 30.0)

    def _describe(self, e: Exception) -> str:
        """One line for the operator: FFmpeg's reason without the (repeated) URL, timeouts spelled
        out, credentials masked."""
        reason = mask_url(str(e.strerror) if isinstance(e, av.FFmpegError) and e.strerror else str(e))
        # PyAV's timeout interrupts FFmpeg: an ExitError, or whatever the demuxer makes of it
        # (RTSP reports "Invalid data"); tell by the time the step took
        limit = self.open_timeout if self._phase == "open" else self.read_timeout
        if isinstance(e, av.FFmpegError) and time.monotonic() - self._phase_t >= 0.9 * limit:
            what = "no answer within" if self._phase == "open" else "no data for"
            why = "" if isinstance(e, av.ExitError) else f" ({reason})"
            return f"timed out: {what} {limit:g} s{why}"
        return reason or type(e).__name__

    def _run_file(self) -> None:
        next_wall = time.time()
        while not self._stop.is_set():
            with av.open(self.source) as container:
                next_wall = self._play_paced(container, next_wall)
            if not self.loop:
                return

    def _play_paced(self, container: av.container.InputContainer, next_wall: float) -> float:
        """Play ``container`` in real time at the configured fps (frames repeated or skipped by
        their media time); returns the wall time the next frame is due (for a seamless loop)."""
        period = 1.0 / self.fps
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0: float | None = None
        media_next = 0.0
        emitted = 0
        for frame in container.decode(stream):
            if self._stop.is_set():
                return next_wall
            ft = float(frame.time) if frame.time is not None else emitted * period
            if t0 is None:
                t0 = ft
            rel = ft - t0
            while media_next <= rel + 0.5 * period:
                media_next += period
                now = time.time()
                if next_wall > now:
                    if self._stop.wait(next_wall - now):
                        return next_wall
                    now = time.time()
                elif now - next_wall > 5 * period:
                    next_wall = now  # fell behind (CPU starved): do not burst
                self._emit(frame, now)
                emitted += 1
                next_wall += period
        if emitted == 0:
            raise ValueError(f"{self.where}: no video frames")
        return next_wall

    def stream_options(self) -> dict[str, str]:
        """FFmpeg options for a URL source: TCP for RTSP, socket timeouts (µs) for everything."""
        # a backstop only: PyAV's own timeouts (below) fire first and say clearly what happened
        us = str(int((max(self.open_timeout, self.read_timeout) + 1) * 1_000_000))
        if self.source.lower().startswith(("rtsp://", "rtsps://")):
            # ffmpeg >= 5: the RTSP "timeout" is the socket I/O timeout (was "stimeout")
            return {"rtsp_transport": self.rtsp_transport, "timeout": us}
        return {"rw_timeout": us}

    def _run_stream(self) -> bool:
        """Read a URL until it fails (raises) or, for a finite one, ends (returns True)."""
        period = 1.0 / self.fps
        next_wall = 0.0
        self._phase, self._phase_t = "open", time.monotonic()
        with av.open(
            self.source, options=self.stream_options(), timeout=(self.open_timeout, self.read_timeout)
        ) as container:
            self._phase, self._phase_t = "read", time.monotonic()
            if not container.streams.video:
                raise ValueError(f"{self.where}: no video stream")
            rtsp = container.format.name == "rtsp"
            if container.duration is not None and container.duration > 0 and not rtsp:
                self._play_paced(container, time.time())  # a video file on a web server
                return True
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                self._phase_t = time.monotonic()
                if self._stop.is_set():
                    return False
                now = time.time()
                if now + 0.25 * period < next_wall:
                    continue
                next_wall = max(next_wall + period, now - period)
                self._emit(frame, now)
        raise ConnectionError("the stream ended")

    def _run_device(self, index: int) -> None:
        import cv2  # the agent's only OpenCV use

        node = f"/dev/video{index}"
        if sys.platform.startswith("linux") and not os.path.exists(node):
            raise OSError(f"capture device {index} not found (no {node})")
        cap = cv2.VideoCapture(index, capture_api(cv2))  # DirectShow on Windows
        try:
            if not cap.isOpened():
                raise OSError(f"cannot open capture device {index}")
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            period = 1.0 / self.fps
            next_wall = 0.0
            while not self._stop.is_set():
                ok, img = cap.read()
                if not ok:
                    raise OSError(f"capture device {index} returned no frame")
                now = time.time()
                if now + 0.25 * period < next_wall:
                    continue
                next_wall = max(next_wall + period, now - period)
                self._emit(av.VideoFrame.from_ndarray(np.asarray(img, np.uint8), format="bgr24"), now)
        finally:
            cap.release()
