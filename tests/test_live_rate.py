"""The live stream's reduced rate (``capture.live_fps``): the agent's second, small encoder, and
the hub asking for the full rate while somebody watches a camera enlarged."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from capture.agent import Agent
from capture.live_encoder import LiveEncoder
from capture.recorder import ABS_SEND_TIME, BufferedFrameSink, without_abs_send_time
from storage.common import CameraId
from storage.s3server import free_port
from testkit.capture import DirSegmentStore, build_app, make_clip, one_camera_config, serve_app


def _nal_types(data: bytes) -> list[int]:
    return [data[i + 3] & 0x1F for i in range(len(data) - 3) if data[i : i + 3] == b"\x00\x00\x01"]


def _frames(n: int, w: int = 160, h: int = 120) -> list[av.VideoFrame]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return [av.VideoFrame.from_ndarray(np.roll(base, i * 4, axis=1), format="bgr24") for i in range(n)]


def _drain(enc: LiveEncoder, taken: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while enc.frames_encoded + enc.dropped < taken and time.monotonic() < deadline:
        time.sleep(0.01)


def test_live_encoder_takes_frames_on_its_rate_grid_and_decodes_alone() -> None:
    got: list[tuple[bytes, float, bool]] = []
    lock = threading.Lock()

    def on_packet(d: bytes, ts: float, k: bool) -> None:
        with lock:
            got.append((d, ts, k))

    enc = LiveEncoder(width=160, height=120, fps=5, max_fps=15, on_packet=on_packet, bitrate_kbps=200)
    frames = _frames(15 * 6)
    t0 = 1_700_000_000.0
    taken = []
    try:
        for i, f in enumerate(frames[: 15 * 4]):  # 4 s at 15 fps, small capture jitter
            ts = t0 + i / 15 + (0.004 if i % 2 else -0.004)
            if enc.offer(f, ts):
                taken.append(i)
                _drain(enc, len(taken))  # one at a time: the encoder never has to drop here
        # every third frame: 5 fps on the capture-time grid, jitter does not skip a slot
        assert taken == list(range(0, 60, 3)), taken
        enc.set_fps(15)  # somebody watches the camera enlarged: the camera's full rate
        more = []
        for i in range(60, 75):
            if enc.offer(frames[i], t0 + i / 15):
                more.append(i)
                _drain(enc, len(taken) + len(more))
        assert more == list(range(60, 75))
        enc.set_fps(100)  # capped at the camera's rate
        assert enc.fps == 15
    finally:
        enc.stop()
    assert enc.frames_encoded == len(taken) + len(more) and enc.dropped == 0
    with lock:
        packets = list(got)
    assert len(packets) == enc.frames_encoded  # zerolatency: one packet per frame, none held back
    keys = [i for i, (_, _, k) in enumerate(packets) if k]
    # first frame; 2 s later at 5 fps (10 frames); the new encoder when the rate changed (20)
    assert keys == [0, 10, 20], keys
    for i in keys:  # SPS + PPS in-band on every keyframe: a receiver can start at any of them
        assert {7, 8, 5} <= set(_nal_types(packets[i][0])), _nal_types(packets[i][0])
    # capture timestamps survive (ms precision)
    assert [ts - t0 for _, ts, _ in packets[:3]] == pytest.approx([-0.004, 0.204, 0.396], abs=2e-3)
    # a receiver joining at the mid-stream keyframe decodes every later packet from these bytes alone
    dec = av.CodecContext.create("h264", "r")
    pictures = []
    for d, _, _ in packets[10:]:
        pictures += dec.decode(av.Packet(d))
    pictures += dec.decode(None)
    assert len(pictures) == len(packets) - 10
    assert (pictures[0].width, pictures[0].height) == (160, 120)
    # the picture is the offered frame (not a stale or blank one)
    want = frames[taken[10]].to_ndarray(format="gray").astype(int)
    have = pictures[0].to_ndarray(format="gray").astype(int)
    assert np.abs(want - have).mean() < 12


def test_live_encoder_drops_oldest_when_behind() -> None:
    """Live wants the newest picture: a slow consumer loses old frames, never the newest."""
    gate = threading.Event()
    seen: list[float] = []

    def slow(d: bytes, ts: float, k: bool) -> None:
        gate.wait(5)
        seen.append(ts)

    enc = LiveEncoder(width=160, height=120, fps=15, max_fps=15, on_packet=slow, bitrate_kbps=200)
    try:
        frames = _frames(10)
        for i, f in enumerate(frames):
            assert enc.offer(f, 100.0 + i / 15)
        gate.set()
        _drain(enc, 10)
    finally:
        enc.stop()
    assert enc.dropped > 0
    assert enc.frames_encoded + enc.dropped == 10
    assert seen and seen[-1] == pytest.approx(100.0 + 9 / 15, abs=2e-3)


async def _hub_fps(recorder: object, seconds: float) -> float:
    """Frames per second the hub received for s1/r1/c1 over ``seconds``."""

    def frames() -> int:
        return {s.camera: s for s in recorder.status()}["c1"].frames  # type: ignore[attr-defined]

    n0, t0 = frames(), time.monotonic()
    await asyncio.sleep(seconds)
    return (frames() - n0) / (time.monotonic() - t0)


async def _live_rate_becomes(agent: Agent, fps: float, within: float) -> float:
    """Seconds until the agent's live encoder runs at ``fps`` (fails after ``within``)."""
    enc = agent.pipes[0].live_encoder
    assert enc is not None
    t0 = time.monotonic()
    for _ in range(round(within / 0.05)):
        if enc.fps == fps:
            break
        await asyncio.sleep(0.05)
    assert enc.fps == fps, f"live rate still {enc.fps}, not {fps}, after {within} s"
    return time.monotonic() - t0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("path", ["control channel", "heartbeat"])
async def test_agent_sends_live_at_reduced_rate_and_full_rate_while_watched(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real aiortc: the archive keeps the camera's 15 fps, the hub receives 5 fps; while a
    full-quality viewer is subscribed the hub asks for 15 fps, and for 5 again when it leaves —
    at once over the agent's control data channel, or (an agent without one) in the heartbeat
    answer."""
    import capture.agent as agent_mod

    heartbeat_s = 30.0 if path == "control channel" else 1.0  # the channel must not need it
    if path == "heartbeat":
        monkeypatch.setattr(agent_mod, "CONTROL_CHANNEL", "not-the-control-channel")
    clip = make_clip(tmp_path / "room.mp4", seconds=3)
    port = free_port()
    cfg = one_camera_config(tmp_path, clip, port, capture={"live_fps": 5, "heartbeat_seconds": heartbeat_s})
    store = DirSegmentStore(tmp_path / "store")
    app, recorder = build_app(cfg, store, BufferedFrameSink(64))
    server, task = await serve_app(app, port)
    agent = Agent(cfg, "s1")
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop=stop))
    viewer = None
    try:
        for _ in range(200):
            if recorder.status()[0].online:
                break
            await asyncio.sleep(0.1)
        assert recorder.status()[0].online, "hub never received the agent's stream"
        # the hub's answer leaves out abs-send-time: no per-packet bitrate estimation / REMB
        answer = recorder._cams[CameraId("s1", "r1", "c1")].pc.localDescription.sdp  # type: ignore[union-attr]
        assert ABS_SEND_TIME not in answer
        await asyncio.sleep(1.5)
        base = await _hub_fps(recorder, 4.0)
        assert 3.0 <= base <= 7.0, base

        viewer = recorder.live_track("s1", "r1", "c1")  # the enlarged tile's full-quality stream
        assert viewer is not None

        async def watch() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await viewer.recv()

        watching = asyncio.create_task(watch())
        # channel: a message, well under a second; heartbeat: within ~one heartbeat (1 s here)
        bound = 3.0 if path == "control channel" else 2 * heartbeat_s + 3.0
        await _live_rate_becomes(agent, 15.0, bound)
        await asyncio.sleep(1.0)
        full = await _hub_fps(recorder, 3.0)
        assert full >= 10.0, (base, full)

        viewer.stop()  # the viewer closed the enlarged tile
        watching.cancel()
        await _live_rate_becomes(agent, 5.0, bound)
        await asyncio.sleep(1.0)
        again = await _hub_fps(recorder, 3.0)
        assert again <= 7.0, (base, full, again)
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
        server.should_exit = True
        await task
    # the archive did not lose its rate: full 2 s segments hold ~30 frames
    segs = store.list("s1", "r1", "c1")
    assert len(segs) >= 5
    with av.open(str(segs[2][2])) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n >= 25, n


class _FrameTrack:
    """A source track: ``n`` frames at ``fps`` (pts in a 90 kHz clock), then ends."""

    def __init__(self, fps: float, n: int):
        self.fps, self.n, self.i = fps, n, 0

    async def recv(self) -> av.VideoFrame:
        from aiortc.mediastreams import MediaStreamError

        if self.i >= self.n:
            raise MediaStreamError
        f = av.VideoFrame(64, 48, "yuv420p")
        f.pts, f.time_base = round(self.i / self.fps * 90000), Fraction(1, 90000)
        self.i += 1
        return f

    def stop(self) -> None:
        pass


@pytest.mark.parametrize(("src_fps", "want_fps"), [(5, 2), (15, 2), (3, 2), (5, 5), (2, 5)])
async def test_reduced_track_keeps_the_asked_rate(src_fps: float, want_fps: float) -> None:
    """The wall's thumbnail track takes frames on a 1/fps grid: a 5 fps live stream gives the
    grid its 2 pictures/s (not every third frame = 1.67/s); a slower source passes whole."""
    from aiortc.mediastreams import MediaStreamError

    from capture.recorder import ReducedTrack

    seconds = 20
    track = ReducedTrack(_FrameTrack(src_fps, int(seconds * src_fps)), width=None, fps=want_fps)  # type: ignore[arg-type]
    got = 0
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            got += 1
    assert got / seconds == pytest.approx(min(src_fps, want_fps), rel=0.06), got


async def test_offer_loses_only_the_abs_send_time_extension() -> None:
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import VideoStreamTrack

    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
    finally:
        await pc.close()
    assert ABS_SEND_TIME in sdp
    out = without_abs_send_time(sdp)
    assert ABS_SEND_TIME not in out
    removed = set(sdp.splitlines()) - set(out.splitlines())
    assert len(removed) == 1 and removed.pop().startswith("a=extmap:")
    assert "a=extmap:" in out  # the other extensions stay


def test_malformed_control_messages_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    import types

    from capture.agent import CameraPipe

    asked: list[bool] = []
    pipe = types.SimpleNamespace(label="s1/r1/c1", set_full_rate=asked.append)
    messages: list[str | bytes] = ['{"full_rate": true}', "not json", '{"full_rate": "yes"}', "{}"]
    messages += ["[1]", b"\xff", '{"full_rate": false}']
    with caplog.at_level("WARNING", logger="capture.agent"):
        for m in messages:
            CameraPipe._on_control(pipe, m)  # type: ignore[arg-type]
    assert asked == [True, False]
    warned = [r.getMessage() for r in caplog.records if "ignored control message" in r.getMessage()]
    assert len(warned) == 5 and all("s1/r1/c1" in w for w in warned), warned
