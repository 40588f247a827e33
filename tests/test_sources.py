"""Non-file camera sources of the site agent, as an operator configures them, on 127.0.0.1.

* ``http://``: a local web server serving an MP4 (played in real time, like a file), a live
  MPEG-TS stream (a static ffmpeg, ``-re``, piped into the response) and a live MJPEG
  (``multipart/x-mixed-replace``, what most HTTP IP cameras send); the server goes away and
  comes back, the source reconnects.
* ``rtsp://``: a minimal RTSP server in this file (OPTIONS/DESCRIBE/SETUP/PLAY, RTP interleaved on
  the TCP connection) relaying the RTP that a static ffmpeg produces from a clip (``-f rtp``).
  ffmpeg itself cannot *serve* RTSP to a client: ``-rtsp_flags listen`` only exists for input.
* ``device:N``: no camera here; the error path is asserted.

Every failure must be a one-line WARNING naming the camera and the (credential-masked) source,
retried with backoff, never a traceback; a dead stream must never hang the reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from capture.source import CameraSource, mask_url
from storage.s3server import free_port
from testkit.capture import make_clip

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 320, 240  # configured output size; the clip is 160x120 @ 15 fps, so every frame is scaled


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2, width=160, height=120, fps=15)


class Frames:
    """What ``on_frame`` received: (width, height, pix_fmt, ts) per frame."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int, str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: av.VideoFrame, ts: float) -> None:
        with self.lock:
            self.got.append((frame.width, frame.height, frame.format.name, ts))

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def since(self, t: float) -> list[tuple[int, int, str, float]]:
        with self.lock:
            return [g for g in self.got if g[3] >= t]

    def wait(self, n: int, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self.count() >= n:
                return True
            time.sleep(0.05)
        return False


@contextlib.contextmanager
def running(source: str, fps: float = 10.0, **kw: object) -> Iterator[tuple[CameraSource, Frames]]:
    frames = Frames()
    src = CameraSource(
        source,
        width=W,
        height=H,
        fps=fps,
        loop=True,
        on_frame=frames,
        label="r1/cam1",
        **kw,  # type: ignore[arg-type]
    )
    src.start()
    try:
        yield src, frames
    finally:
        t = time.time()
        src.stop(timeout=10)
        assert not src._thread.is_alive(), "the source thread did not stop"
        assert time.time() - t < 8


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def warnings_for(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "capture.source" and r.levelno == logging.WARNING]


def assert_clean_warnings(caplog: pytest.LogCaptureFixture, where: str, n: int = 1) -> None:
    """At least ``n`` source warnings, each one line naming camera + source, none with a traceback."""
    recs = warnings_for(caplog)
    assert len(recs) >= n, [r.getMessage() for r in recs]
    for r in recs:
        msg = r.getMessage()
        assert r.exc_info is None and r.exc_text is None
        assert "\n" not in msg and "Traceback" not in msg
        assert "camera r1/cam1" in msg and where in msg and "retry in" in msg, msg


def assert_size_and_rate(frames: list[tuple[int, int, str, float]], fps: float) -> None:
    assert frames, "no frames"
    assert {(w, h, f) for w, h, f, _ in frames} == {(W, H, "yuv420p")}
    ts = [t for *_, t in frames]
    assert ts == sorted(ts)
    rate = (len(ts) - 1) / (ts[-1] - ts[0])
    assert fps * 0.75 <= rate <= fps * 1.15, f"{rate:.2f} fps, configured {fps}"


# -- an HTTP camera server --------------------------------------------------------------------------


class HttpCams:
    """``/clip.mp4`` (Range requests), ``/live.ts`` (ffmpeg -re → MPEG-TS), ``/cam.mjpg`` (MJPEG at
    15 fps).  :meth:`down` closes the listener and every open response; :meth:`up` restarts."""

    def __init__(self, clip: Path, port: int):
        self.clip, self.port = clip, port
        self.server: ThreadingHTTPServer | None = None
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.up()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cams = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with cams.lock:
                    cams.requests.append(self.path)
                    cams.conns.add(self.connection)
                try:
                    if self.path == "/clip.mp4":
                        self._file()
                    elif self.path == "/live.ts":
                        self._ts()
                    elif self.path == "/cam.mjpg":
                        self._mjpeg()
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    with cams.lock:
                        cams.conns.discard(self.connection)

            def _file(self) -> None:
                data = cams.clip.read_bytes()
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                a, b = (int(m[1]), int(m[2] or len(data) - 1)) if m else (0, len(data) - 1)
                self.send_response(206 if m else 200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(b - a + 1))
                if m:
                    self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
                self.end_headers()
                self.wfile.write(data[a : b + 1])

            def _ts(self) -> None:
                cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
                cmd += ["-i", str(cams.clip), "-c", "copy", "-f", "mpegts", "pipe:1"]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                with cams.lock:
                    cams.procs.add(proc)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp2t")
                    self.end_headers()
                    assert proc.stdout is not None
                    while not cams.stopping.is_set() and (chunk := os.read(proc.stdout.fileno(), 65536)):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                finally:
                    proc.kill()
                    proc.wait()
                    with cams.lock:
                        cams.procs.discard(proc)

            def _mjpeg(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
                self.end_headers()
                base = np.tile(np.linspace(0, 200, 160, dtype=np.uint8), (120, 1))
                i, t0 = 0, time.time()
                while not cams.stopping.is_set():
                    img = np.stack([base, np.roll(base, i * 4, axis=1), np.full_like(base, 80)], axis=-1)
                    ok, jpg = cv2.imencode(".jpg", img)
                    assert ok
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                    self.wfile.write(f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg.tobytes() + b"\r\n")
                    self.wfile.flush()
                    i += 1
                    time.sleep(max(0.0, t0 + i / 15 - time.time()))

        return Handler

    def up(self) -> None:
        self.stopping.clear()
        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def down(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
            for p in self.procs:
                p.kill()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_cams(clip: Path) -> Iterator[HttpCams]:
    cams = HttpCams(clip, free_port())
    yield cams
    cams.down()


def test_http_mp4_plays_in_real_time_at_configured_size_and_fps(http_cams: HttpCams) -> None:
    with running(http_cams.url("/clip.mp4"), fps=10) as (src, frames):
        assert frames.wait(5, 10), src.last_error
        t = time.time()
        time.sleep(2.5)  # longer than the 2 s clip: it is looped, not read as fast as possible
        got = frames.since(t)
    assert_size_and_rate(got, 10)
    assert 20 <= len(got) <= 28
    assert http_cams.requests.count("/clip.mp4") >= 2  # reopened for the loop


@pytest.mark.parametrize("path", ["/live.ts", "/cam.mjpg"])
def test_http_live_stream_survives_the_server_going_away(
    http_cams: HttpCams, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="capture.source")
    with running(http_cams.url(path), fps=10, open_timeout=3.0, read_timeout=1.5) as (src, frames):
        assert frames.wait(3, 10), src.last_error
        t = time.time()
        time.sleep(1.5)
        assert_size_and_rate(frames.since(t), 10)
        assert not warnings_for(caplog)

        http_cams.down()
        t_down = time.time()
        assert wait_for(lambda: len(warnings_for(caplog)) >= 2, 8), "no retried warning"
        assert src.last_error and http_cams.url(path) in src.last_error
        n = frames.count()
        time.sleep(0.3)
        assert frames.count() == n, "frames while the server is down"
        assert_clean_warnings(caplog, http_cams.url(path), n=2)

        http_cams.up()
        t_up = time.time()
        assert frames.wait(n + 10, 10), f"frames did not resume: {src.last_error}"
        assert time.time() - t_up < 6  # backoff after ~1-2 s down: retries every ≤ 1.5-3 s
        assert src._thread.is_alive()
        assert t_up - t_down < 6


def test_http_refused_and_404_are_clear_retried_errors(
    http_cams: HttpCams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="capture.source")
    url = http_cams.url("/nope.ts")
    with running(url, open_timeout=2.0, read_timeout=1.0) as (src, frames):
        assert wait_for(lambda: len(warnings_for(caplog)) >= 2, 5)
        assert "404" in (src.last_error or "") and url in (src.last_error or "")
    assert frames.count() == 0
    assert_clean_warnings(caplog, url, n=2)
    found = [re.search(r"retry in ([\d.]+)s", r.getMessage()) for r in warnings_for(caplog)]
    delays = [float(m[1]) for m in found if m]
    assert delays[:2] == [0.5, 1.0]  # exponential backoff


# -- an RTSP camera ---------------------------------------------------------------------------------


class RtspCam:
    """A one-stream RTSP server on 127.0.0.1: ffmpeg packetises the clip (``-re``, looped) as RTP
    to a local UDP port; every PLAYing client gets those packets interleaved on its RTSP TCP
    connection (``RTP/AVP/TCP``; UDP transport is answered 461).  ``stall()`` stops relaying
    without closing anything (a camera that hangs); ``kill_clients()`` resets connections."""

    def __init__(self, clip: Path, port: int, tmp: Path):
        self.port = port
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.2)
        rtp_port = self.rtp.getsockname()[1]
        sdp_file = tmp / "cam.sdp"
        cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip)]
        cmd += ["-an", "-c:v", "copy", "-f", "rtp", "-sdp_file", str(sdp_file)]
        cmd += [f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        assert wait_for(lambda: sdp_file.exists() and "m=video" in sdp_file.read_text(), 10)
        sdp = sdp_file.read_text()
        sdp = re.sub(r"c=IN IP4 \S+", "c=IN IP4 0.0.0.0", sdp)
        sdp = re.sub(r"m=video \d+", "m=video 0", sdp)
        self.sdp = sdp.rstrip() + "\r\na=control:trackID=0\r\n"
        self.playing: set[socket.socket] = set()
        self.clients: set[socket.socket] = set()
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        self.closed = threading.Event()
        cam = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                cam._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        while not self.closed.is_set():
            try:
                pkt = self.rtp.recv(65536)
            except (TimeoutError, OSError):
                continue
            if self.stalled.is_set():
                continue
            frame = b"$\x00" + len(pkt).to_bytes(2, "big") + pkt
            with self.lock:
                for c in list(self.playing):
                    try:
                        c.sendall(frame)
                    except OSError:
                        self.playing.discard(c)

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.clients.add(conn)
        buf = b""
        try:
            while True:
                while buf.startswith(b"$"):  # the client's RTCP, interleaved
                    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                        break
                    buf = buf[4 + int.from_bytes(buf[2:4], "big") :]
                if b"\r\n\r\n" in buf and not buf.startswith(b"$"):
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    lines = head.decode().split("\r\n")
                    hdr = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                    buf = buf[int(hdr.get("content-length", 0)) :]
                    self._answer(conn, lines[0], hdr)
                    continue
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
        except OSError:
            return
        finally:
            with self.lock:
                self.playing.discard(conn)
                self.clients.discard(conn)

    def _answer(self, conn: socket.socket, request: str, hdr: dict[str, str]) -> None:
        method, url, _ = request.split(" ", 2)
        self.requests.append(method)
        out = [f"CSeq: {hdr.get('cseq', '0')}"]
        body = b""
        status = "200 OK"
        if method == "OPTIONS":
            out.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
        elif method == "DESCRIBE":
            body = self.sdp.encode()
            out += [f"Content-Base: {url.rstrip('/')}/", "Content-Type: application/sdp"]
        elif method == "SETUP":
            if "TCP" not in hdr.get("transport", ""):
                status = "461 Unsupported Transport"
            else:
                out += ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 12345678;timeout=60"]
        elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
            out.append("Session: 12345678")
        else:
            status = "405 Method Not Allowed"
        if body:
            out.append(f"Content-Length: {len(body)}")
        with self.lock:
            conn.sendall(f"RTSP/1.0 {status}\r\n".encode() + "\r\n".join(out).encode() + b"\r\n\r\n" + body)
            if method == "PLAY":
                self.playing.add(conn)

    def stall(self, on: bool) -> None:
        (self.stalled.set if on else self.stalled.clear)()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for c in self.clients:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
        self.proc.kill()
        self.proc.wait()
        self.rtp.close()


@pytest.fixture
def rtsp_cam(clip: Path, tmp_path: Path) -> Iterator[RtspCam]:
    cam = RtspCam(clip, free_port(), tmp_path)
    yield cam
    cam.close()


def test_rtsp_over_tcp_delivers_frames_and_masks_credentials(
    rtsp_cam: RtspCam, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="capture.source")
    url = f"rtsp://operator:s3cret@127.0.0.1:{rtsp_cam.port}/cam"
    with running(url, fps=10, open_timeout=3.0, read_timeout=1.5) as (src, frames):
        assert frames.wait(3, 10), src.last_error
        t = time.time()
        time.sleep(1.2)
        assert_size_and_rate(frames.since(t), 10)
        assert src.where == f"rtsp://***@127.0.0.1:{rtsp_cam.port}/cam"
        assert {"DESCRIBE", "SETUP", "PLAY"} <= set(rtsp_cam.requests)

        # the camera hangs (TCP open, no data): the read times out, the source reconnects
        rtsp_cam.stall(True)
        t_stall = time.time()
        assert wait_for(lambda: bool(warnings_for(caplog)), 6), "a stalled stream was not noticed"
        assert time.time() - t_stall < 4
        assert "timed out: no data for 1.5 s" in warnings_for(caplog)[0].getMessage()
        rtsp_cam.stall(False)
        n = frames.count()
        assert frames.wait(n + 5, 10), f"frames did not resume: {src.last_error}"
    assert_clean_warnings(caplog, src.where)
    assert "s3cret" not in caplog.text and "operator" not in caplog.text
    assert rtsp_cam.requests.count("PLAY") >= 2


def test_rtsp_udp_transport_is_configurable(rtsp_cam: RtspCam, caplog: pytest.LogCaptureFixture) -> None:
    """Our server only offers TCP: with ``rtsp_transport='udp'`` its SETUP is refused (461) — proof
    the option reaches ffmpeg — and the failure is a clear, retried error."""
    caplog.set_level(logging.WARNING, logger="capture.source")
    url = f"rtsp://127.0.0.1:{rtsp_cam.port}/cam"
    with running(url, rtsp_transport="udp", open_timeout=3.0, read_timeout=1.5) as (src, frames):
        assert wait_for(lambda: len(warnings_for(caplog)) >= 2, 8), src.last_error
    assert frames.count() == 0
    assert_clean_warnings(caplog, url, n=2)
    with pytest.raises(ValueError, match="rtsp_transport"):
        CameraSource(url, width=W, height=H, fps=10, loop=True, on_frame=Frames(), rtsp_transport="tpc")


def test_rtsp_refused_and_black_hole_are_clear_retried_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="capture.source")
    refused = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam"
    with running(refused, open_timeout=2.0, read_timeout=1.0) as (src, frames):
        assert wait_for(lambda: len(warnings_for(caplog)) >= 2, 5)
        assert "Connection refused" in (src.last_error or "")
        assert "hunter2" not in (src.last_error or "")
    assert frames.count() == 0
    assert_clean_warnings(caplog, src.where, n=2)
    assert "hunter2" not in caplog.text and "admin" not in caplog.text

    # a host that accepts the TCP connection and never answers: bounded by open_timeout
    caplog.clear()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    try:
        url = f"rtsp://127.0.0.1:{hole.getsockname()[1]}/cam"
        t = time.time()
        with running(url, open_timeout=1.5, read_timeout=1.0) as (src, _frames):
            assert wait_for(lambda: bool(warnings_for(caplog)), 6), "av.open hung on a silent server"
            assert time.time() - t < 4
            assert "timed out: no answer within 1.5 s" in (src.last_error or "")
        assert_clean_warnings(caplog, url)
    finally:
        hole.close()


# -- device:N ---------------------------------------------------------------------------------------


def test_missing_device_is_a_clear_retried_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="capture.source")
    if Path("/dev/video7").exists():
        pytest.fail("this test needs a machine without /dev/video7")
    with running("device:7") as (src, frames):
        assert wait_for(lambda: len(warnings_for(caplog)) >= 2, 5)
        assert src._thread.is_alive()
        assert "capture device 7" in (src.last_error or "")
    assert frames.count() == 0
    assert_clean_warnings(caplog, "device:7", n=2)
    assert "capture device 7" in warnings_for(caplog)[0].getMessage()


def test_mask_url() -> None:
    assert mask_url("rtsp://u:p@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    assert mask_url("failed: 'http://admin:p%40ss@cam/x' and https://a@b/") == (
        "failed: 'http://***@cam/x' and https://***@b/"
    )
    assert mask_url("rtsp://10.0.0.5/s?user=x@y") == "rtsp://10.0.0.5/s?user=x@y"
    assert mask_url("/videos/a@b.mp4") == "/videos/a@b.mp4"


# -- the operator's path: YAML config → evalwatch agent → archive on the hub --------------------------


@pytest.mark.timeout(60)
async def test_agent_archives_rtsp_and_http_cameras_from_config(
    tmp_path: Path, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A site YAML with an RTSP camera (credentials in the URL), an MJPEG HTTP camera and a missing
    ``device:7``: the agent archives both network cameras at the configured size, keeps running
    with the broken one and reports it, and the password appears in no log and no status."""
    import asyncio
    import json

    import uvicorn

    from capture.agent import Agent
    from config import load_config
    from testkit.capture import DirSegmentStore, build_app, write_config

    caplog.set_level(logging.INFO)
    rtsp_cam = RtspCam(clip, free_port(), tmp_path)
    http_cams = HttpCams(clip, free_port())
    port = free_port()
    rtsp_url = f"rtsp://operator:s3cret@127.0.0.1:{rtsp_cam.port}/cam"
    cfg = load_config(
        write_config(
            tmp_path / "site.yaml",
            port=port,
            sites={"s1": {"r1": [("c1", rtsp_url), ("c2", http_cams.url("/cam.mjpg")), ("c3", "device:7")]}},
            tokens={"s1": "token-s1-xxxxxxxxxxxxxxxx"},
            spool_dir=tmp_path / "spool",
            segment_seconds=2.0,
            fps=10,
        )
    )
    store = DirSegmentStore(tmp_path / "store")
    app, recorder = build_app(cfg, store, None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    agent = Agent(cfg, "s1", live=False, preset="ultrafast")
    stop = asyncio.Event()

    def full_segments(cam: str) -> int:
        return sum(1 for a, b, _ in store.list("s1", "r1", cam) if (b - a).total_seconds() >= 1.999)

    async def until_archived() -> None:
        while min(full_segments("c1"), full_segments("c2")) < 1:  # noqa: ASYNC110 - polls a directory
            await asyncio.sleep(0.2)
        stop.set()

    try:
        waiter = asyncio.create_task(until_archived())
        await agent.run(stop, duration=20.0)
        waiter.cancel()
        assert stop.is_set(), "no full segment of both network cameras in 20 s"
        status = {p.camera: p.status() for p in agent.pipes}
        hub_view = [s.agent for s in recorder.status()]
    finally:
        server.should_exit = True
        await serving
        rtsp_cam.close()
        http_cams.down()
    for cam in ("c1", "c2"):
        have = store.list("s1", "r1", cam)
        assert len(have) >= 2, (cam, status[cam])
        a, b, path = max(have, key=lambda h: h[1] - h[0])  # a full 2 s segment
        assert (b - a).total_seconds() == pytest.approx(2.0, abs=1e-3), (cam, have)
        with av.open(str(path)) as c:
            frames = list(c.decode(video=0))
        assert len(frames) >= 14 and (frames[0].width, frames[0].height) == (W, H)
    assert store.list("s1", "r1", "c3") == []
    assert status["c3"]["frames"] == 0 and "capture device 7" in status["c3"]["last_error"]
    assert any("capture device 7" in json.dumps(a) for a in hub_view), hub_view  # heartbeat
    assert "s3cret" not in caplog.text and "s3cret" not in json.dumps([status, hub_view], default=str)
