"""Camera sources for the site agent, each read on its own thread.

* a video file: played in real time at the configured fps and looped (the demo and the tests);
* ``rtsp://`` / ``http(s)://``: opened with PyAV (TCP for RTSP), frames thinned to the fps;
* ``device:N``: a local capture device through OpenCV.

Every frame is scaled to the configured size as yuv420p and handed to ``on_frame(frame, ts)``
with its wall-clock capture time (epoch seconds).  Failures are logged, recorded in
``last_error`` and retried with backoff; the thread only ends on :meth:`stop` (or at the end of a
file with ``loop: false``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import av
import numpy as np

log = logging.getLogger(__name__)

OnFrame = Callable[[av.VideoFrame, float], None]


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
    ):
        if not source:
            raise ValueError(f"camera {label or '?'} has no 'source'")
        self.source = source
        self.width, self.height, self.fps, self.loop = width, height, fps, loop
        self.on_frame = on_frame
        self.label = label
        self.frames = 0
        self.last_error: str | None = None
        self.finished = False
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
            try:
                if self.source.startswith("device:"):
                    self._run_device(int(self.source.split(":", 1)[1]))
                elif "://" in self.source:
                    self._run_stream()
                else:
                    self._run_file()
                    if not self.loop:
                        self.finished = True
                        return
                delay = 0.5
            except Exception as e:
                self.last_error = f"source {self.label}: {type(e).__name__}: {e}"
                log.warning("camera source failed %s: %s (retry in %.1fs)", self.label, e, delay)
                self._stop.wait(delay * (1 + random.random() / 2))  # noqa: S311 - jitter
                delay = min(delay * 2, 30.0)

    def _run_file(self) -> None:
        period = 1.0 / self.fps
        next_wall = time.time()
        while not self._stop.is_set():
            with av.open(self.source) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                t0: float | None = None
                media_next = 0.0
                emitted = 0
                for frame in container.decode(stream):
                    if self._stop.is_set():
                        return
                    ft = float(frame.time) if frame.time is not None else emitted * period
                    if t0 is None:
                        t0 = ft
                    rel = ft - t0
                    while media_next <= rel + 0.5 * period:
                        media_next += period
                        now = time.time()
                        if next_wall > now:
                            if self._stop.wait(next_wall - now):
                                return
                            now = time.time()
                        elif now - next_wall > 5 * period:
                            next_wall = now  # fell behind (CPU starved): do not burst
                        self._emit(frame, now)
                        emitted += 1
                        next_wall += period
                if emitted == 0:
                    raise ValueError(f"{self.source}: no video frames")
            if not self.loop:
                return

    def _run_stream(self) -> None:
        opts = {"rtsp_transport": "tcp", "timeout": "5000000"} if self.source.startswith("rtsp") else {}
        period = 1.0 / self.fps
        next_wall = 0.0
        with av.open(self.source, options=opts, timeout=10.0) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if self._stop.is_set():
                    return
                now = time.time()
                if now + 0.25 * period < next_wall:
                    continue
                next_wall = max(next_wall + period, now - period)
                self._emit(frame, now)
        raise ConnectionError(f"stream {self.label} ended")

    def _run_device(self, index: int) -> None:
        import cv2  # the agent's only OpenCV use

        cap = cv2.VideoCapture(index)
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
