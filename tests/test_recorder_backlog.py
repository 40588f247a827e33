"""The hub's live receive path stays bounded when the hub falls behind (issue #17).

aiortc's receiver decodes in a thread fed by an unbounded ``queue.Queue`` and hands decoded
frames to the event loop through an unbounded ``asyncio.Queue``; a hub short of CPU let both
grow (the soak's tracemalloc reports: encoded frames at ``aiortc/codecs/h264.py`` and RTP payloads
piling up, RSS growing by MBs a minute).  ``capture.recorder`` replaces them per connection."""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from capture.recorder import (
    MAX_DECODED_BACKLOG,
    MAX_ENCODED_BACKLOG,
    DecodeBacklog,
    LatestFrames,
    Recorder,
    is_keyframe,
)
from storage.common import CameraId
from testkit.capture import one_camera_config

H264 = SimpleNamespace(name="H264")
IDR = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x41\x9a\x02"


def frame(data: bytes) -> tuple[SimpleNamespace, SimpleNamespace]:
    return H264, SimpleNamespace(data=data, timestamp=0)


def test_keyframes_are_recognised() -> None:
    assert is_keyframe("H264", IDR) and is_keyframe("h264", b"\x00\x00\x01\x65\x88")
    assert not is_keyframe("H264", P) and not is_keyframe("H264", b"")
    assert is_keyframe("VP8", b"\x10\x02") and not is_keyframe("VP8", b"\x11\x02")
    assert is_keyframe("opus", b"\x01")


def test_decoder_backlog_stays_bounded_and_restarts_at_a_keyframe() -> None:
    q = DecodeBacklog()
    q.put(frame(IDR))
    for _ in range(10 * MAX_ENCODED_BACKLOG):  # the decoder thread does not take any
        q.put(frame(P))
        assert q.qsize() <= MAX_ENCODED_BACKLOG
    assert q.dropped >= 9 * MAX_ENCODED_BACKLOG
    assert q.qsize() == 0  # after the overflow: nothing until a keyframe (P frames cannot decode alone)
    q.put(frame(P))
    assert q.qsize() == 0
    q.put(frame(IDR))
    q.put(frame(P))
    assert q.qsize() == 2 and q.get()[1].data == IDR
    q.put(None)  # the end-of-stream marker always goes through
    assert q.qsize() == 2


def test_decoded_frames_keep_only_the_newest() -> None:
    async def main() -> None:
        q = LatestFrames()
        for i in range(100):
            await q.put(i)
            assert q.qsize() <= MAX_DECODED_BACKLOG
        assert q.dropped == 100 - MAX_DECODED_BACKLOG
        await q.put(None)
        got = [q.get_nowait() for _ in range(q.qsize())]
        assert got == [*range(100 - MAX_DECODED_BACKLOG, 100), None]  # the end marker evicts nothing

    asyncio.run(main())


class Moving(VideoStreamTrack):
    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.full((240, 320, 3), (pts // 3000) % 255, dtype=np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="bgr24")
        f.pts, f.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return f


def test_recorder_installs_the_bounded_queues_and_frames_still_flow(tmp_path: Path) -> None:
    """A real aiortc offer answered by the recorder: its receiver decodes from a
    :class:`DecodeBacklog` into :class:`LatestFrames`, and live frames arrive through them."""
    cfg = one_camera_config(tmp_path, tmp_path / "none.mp4", 18999)
    ref = CameraId("s1", "r1", "c1")

    async def main() -> None:
        rec = Recorder(cfg)
        await rec.start()
        pc = RTCPeerConnection()
        pc.addTrack(Moving())
        try:
            await pc.setLocalDescription(await pc.createOffer())
            assert pc.localDescription is not None
            answer = await rec.handle_offer(ref, pc.localDescription.sdp, "offer")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
            cam = rec._cams[ref]
            assert len(cam.backlog) == 1
            enc, dec = cam.backlog[0]
            assert cam.pc is not None
            receiver = cam.pc.getReceivers()[0]
            # aiortc's private queues, which bound_receive_queues replaces
            assert receiver._RTCRtpReceiver__decoder_queue is enc  # type: ignore[attr-defined]
            assert receiver.track._queue is dec  # type: ignore[attr-defined]
            for _ in range(300):
                if rec.status()[0].frames >= 10:
                    break
                await asyncio.sleep(0.1)
            st = rec.status()[0]
            assert st.frames >= 10, st
            assert st.backlog_dropped == 0
        finally:
            await pc.close()
            await rec.close()

    asyncio.run(main())


def test_a_dropped_connection_is_freed_soon_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed RTCPeerConnection is only freed by the cyclic collector (checked here with the
    automatic collector off, as between the rare full collections of a hub with millions of
    long-lived objects); the recorder runs one shortly after a drop, so reconnections do not keep
    the old connections' decoders and buffers alive."""
    import gc
    import weakref

    from capture import recorder as recorder_mod

    monkeypatch.setattr(recorder_mod, "GC_AFTER_DROP_S", 0.2)
    cfg = one_camera_config(tmp_path, tmp_path / "none.mp4", 18997)
    ref = CameraId("s1", "r1", "c1")

    async def main() -> None:
        rec = Recorder(cfg)
        await rec.start()
        gone: list[weakref.ref[Any]] = []
        try:
            for i in range(2):
                pc = RTCPeerConnection()
                pc.addTrack(Moving())
                await pc.setLocalDescription(await pc.createOffer())
                assert pc.localDescription is not None
                answer = await rec.handle_offer(ref, pc.localDescription.sdp, "offer")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
                for _ in range(300):
                    if rec.status()[0].frames >= 5 * (i + 1):
                        break
                    await asyncio.sleep(0.1)
                gone.append(weakref.ref(rec._cams[ref].pc))
                await pc.close()
                del pc
                assert await rec.disconnect(ref, "agent reconnects")
            assert any(r() is not None for r in gone)  # closed, but not freed by refcounting
            await asyncio.sleep(1.0)
            assert all(r() is None for r in gone), "dropped peer connections still alive"
            assert rec.gc_runs >= 1
        finally:
            await rec.close()

    enabled = gc.isenabled()
    gc.disable()
    try:
        asyncio.run(main())
    finally:
        if enabled:
            gc.enable()


def test_frames_dropped_by_a_slow_hub_are_counted_in_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub whose decoder cannot keep up (each frame takes 0.3 s here, as on an overloaded
    machine) drops live frames in its bounded receive backlog; the operator sees how many in the
    camera status and in ``/metrics`` (``evalwatch_camera_backlog_dropped_total``), scraped the
    way Prometheus does (metrics bearer token) from the real app over the real recorder."""
    import time

    import httpx
    from aiortc.codecs import h264, vpx

    from dashboard.app import create_app
    from dashboard.security import metrics_token
    from dashboard.services import Services
    from storage.db import Database

    for cls in (vpx.Vp8Decoder, h264.H264Decoder):
        real = cls.decode

        def slow(self: Any, encoded: Any, real: Any = real) -> Any:
            time.sleep(0.3)  # the decoder thread, starved of CPU
            return real(self, encoded)

        monkeypatch.setattr(cls, "decode", slow)
    cfg = one_camera_config(tmp_path, tmp_path / "none.mp4", 18995)
    ref = CameraId("s1", "r1", "c1")
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.upgrade()

    async def scrape(app: Any) -> dict[str, float]:
        assert cfg.hub.secret_key is not None
        tok = metrics_token(cfg.hub.secret_key.get_secret_value())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.get("/metrics", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            if line.startswith("evalwatch_camera_backlog_dropped_total{"):
                labels, value = line.rsplit(" ", 1)
                out[labels] = float(value)
        return out

    async def main() -> None:
        rec = Recorder(cfg)
        await rec.start()
        app = create_app(Services(cfg=cfg, db=db, recorder=rec))
        key = 'evalwatch_camera_backlog_dropped_total{camera="c1",room="r1",site="s1"}'
        pc = RTCPeerConnection()
        pc.addTrack(Moving())
        try:
            async with app.router.lifespan_context(app):
                assert await scrape(app) == {key: 0.0}  # configured, not connected yet
                await pc.setLocalDescription(await pc.createOffer())
                assert pc.localDescription is not None
                answer = await rec.handle_offer(ref, pc.localDescription.sdp, "offer")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
                for _ in range(300):
                    if rec.status()[0].backlog_dropped > 0:
                        break
                    await asyncio.sleep(0.1)
                dropped = rec.status()[0].backlog_dropped
                assert dropped >= MAX_ENCODED_BACKLOG, dropped
                got = await scrape(app)
                assert got[key] >= dropped
        finally:
            await pc.close()
            await rec.close()

    asyncio.run(main())
