"""The site agent (``evalwatch agent``): publish a room's cameras to the hub.

Per camera: a :class:`~capture.source.CameraSource` thread reads frames; each frame is encoded ONCE
by an :class:`~capture.segmenter.EncoderThread` (x264, Constrained Baseline); its packets are muxed
into wall-clock-aligned MP4 segments in the bounded local spool AND sent unchanged over a live
WebRTC track to the hub (``POST /api/ingest/offer``; :class:`PacketTrack`, aiortc packetises them
without re-encoding).  With ``capture.codec: vp8`` the live path falls back to
:class:`LiveTrack` (raw frames, aiortc's VP8 encoder: a second encode per frame).
One uploader task sends finished segments to the hub oldest-first; after any (re)connection it
asks the hub what the archive lacks (``GET /api/ingest/missing``) and re-sends what the spool
still holds.  Every network step reconnects by itself with exponential backoff and jitter, and a
heartbeat reports per-camera status.  The archive path never depends on the live path.

Edge analysis (site ``analysis: agent``; the analyser is injected by ``evalwatch.edge``, the
``evalwatch agent`` command): every decoded frame is also offered to the analyser, which keeps
the newest one per camera and analyses it at ``detection.analysis_fps`` in its own thread.  Its
incident updates go to an on-disk :class:`~capture.incidents.IncidentSpool` and an uploader task
POSTs them in order to ``/api/ingest/incidents`` (store-and-forward, like the segments).  The
seats to arm come from the hub: a long poll of ``/api/ingest/sessions`` (answers at once after a
(re)connection and when a session starts or closes) and every heartbeat answer.  Each heartbeat
carries the analysis's progress (the hub's ``analysis_offline`` check).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from capture.agentstatus import agent_facts, cpu_load
from capture.hostos import install_stop_handlers, log_handler
from capture.ice import configure_ice, rtc_configuration
from capture.incidents import IncidentSpool
from capture.live_encoder import CONTROL_CHANNEL, LiveEncoder
from capture.segmenter import EncoderThread, SegmentWriter
from capture.source import CameraSource
from capture.spool import Spool, SpooledSegment, fmt_stamp
from capture.tls import HubCertMismatch, hub_ssl
from config.models import CameraConfig, EvalwatchConfig, RoomConfig
from storage.common import CameraId

log = logging.getLogger("capture.agent")

VIDEO_CLOCK = 90000


class EdgeAnalyserLike(Protocol):
    """The agent's analysis (``evalwatch.edge.EdgeAnalyser``): frames in, incident update
    documents (:class:`capture.incidents.IncidentUpdateIn` as dicts) out through ``emit``."""

    def offer(self, room: str, camera: str, ts: float, frame: av.VideoFrame) -> None:
        """A decoded frame (camera thread; must not block: keep only the newest)."""

    def set_sessions(self, rooms: dict[str, Any]) -> None:
        """``room → {"session_id", "seats"} | None`` as the hub says (any thread)."""

    def status(self) -> dict[str, Any]:
        """The analysis heartbeat: ``{"running", "cameras": {"room/camera": {"frames", ...}}}``."""
        ...

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None: ...

    def stop(self) -> None: ...


class Backoff:
    """Exponential backoff with jitter: min·2ⁿ capped at max, each delay scaled by U(0.5, 1)."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi, self.n = lo, max(hi, lo), 0

    def next(self) -> float:
        d = min(self.hi, self.lo * (2**self.n))
        self.n += 1
        return d * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.n = 0


class LiveTrack(MediaStreamTrack):
    """The newest frame of a camera, for one peer connection (older frames are skipped)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._frame: tuple[av.VideoFrame, float] | None = None
        self._event = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1

    def push(self, frame: av.VideoFrame, ts: float) -> None:  # event-loop thread
        self._frame = (frame, ts)
        self._event.set()

    async def recv(self) -> av.VideoFrame:
        while self._frame is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        if self.readyState != "live":
            raise MediaStreamError
        frame, ts = self._frame
        self._frame = None
        if self._t0 is None:
            self._t0 = ts
        pts = max(round((ts - self._t0) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        return frame

    def stop(self) -> None:
        super().stop()
        self._event.set()


class PacketTrack(MediaStreamTrack):
    """Pre-encoded H.264 for one peer connection: ``recv()`` returns ``av.Packet``s, which
    aiortc's ``RTCRtpSender`` packetises (``H264Encoder.pack``) instead of encoding.

    Packets are Annex B access units, keyframes with SPS/PPS in-band.  Delivery starts at a
    keyframe; if the sender falls behind by more than ``max_backlog`` packets the backlog is
    dropped and the track waits for the next keyframe (asking the encoder for one through
    ``on_need_keyframe``) — P-frames without their reference would only show garbage.
    """

    kind = "video"

    def __init__(self, on_need_keyframe: Any = None, max_backlog: int = 60) -> None:
        super().__init__()
        self._q: collections.deque[tuple[bytes, float, bool]] = collections.deque()
        self._event = asyncio.Event()
        self._need_key = True
        self._t0: float | None = None
        self._last_pts = -1
        self.max_backlog = max_backlog
        self.on_need_keyframe = on_need_keyframe
        self.sent_packets = 0
        self.sent_bytes = 0
        self.skipped = 0
        self.on_sent: Any = None  # test hook: called with the bytes of every packet handed to aiortc

    def push(self, data: bytes, ts: float, key: bool) -> None:  # event-loop thread
        if self._need_key and not key:
            self.skipped += 1
            return
        self._need_key = False
        self._q.append((data, ts, key))
        if len(self._q) > self.max_backlog:
            self.skipped += len(self._q)
            self._q.clear()
            self._need_key = True
            if self.on_need_keyframe is not None:
                self.on_need_keyframe()
        self._event.set()

    async def recv(self) -> av.Packet:
        while not self._q:
            if self.readyState != "live":
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            # First packet for this connection: start at the newest keyframe in the backlog.
            keys = [i for i, (_, _, k) in enumerate(self._q) if k]
            for _ in range(keys[-1] if keys else 0):
                self._q.popleft()
                self.skipped += 1
        data, ts, _key = self._q.popleft()
        if self._t0 is None:
            self._t0 = ts
        pts = max(round((ts - self._t0) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        pkt = av.Packet(data)
        pkt.pts = pkt.dts = pts
        pkt.time_base = Fraction(1, VIDEO_CLOCK)
        self.sent_packets += 1
        self.sent_bytes += len(data)
        if self.on_sent is not None:
            self.on_sent(data)
        return pkt

    def stop(self) -> None:
        super().stop()
        self._event.set()


class CameraPipe:
    """One camera: source → encoder → MP4 segments (archive) + the same packets live (WebRTC)."""

    def __init__(self, agent: Agent, room: RoomConfig, cam: CameraConfig):
        self.agent = agent
        self.site, self.room, self.camera = agent.site_id, room.id, cam.id
        self.cam = cam
        self.label = CameraId(self.site, self.room, self.camera).path
        cfg = agent.cfg
        self.writer = SegmentWriter(
            agent.spool,
            self.site,
            self.room,
            self.camera,
            width=cam.width,
            height=cam.height,
            fps=cam.fps,
            segment_seconds=cfg.storage.segment_seconds,
            bitrate_kbps=cfg.capture.bitrate_kbps,
            preset=agent.preset,
            on_segment=lambda _seg: agent.segment_ready(),
        )
        self.encode_once = cfg.capture.codec == "h264"
        live_fps = cfg.capture.live_fps
        #: The live stream's own reduced-rate encoder, or None: the archive's packets go live.
        self.live_encoder: LiveEncoder | None = None
        if self.encode_once and live_fps is not None and live_fps < cam.fps:
            self.live_encoder = LiveEncoder(
                width=cam.width,
                height=cam.height,
                fps=live_fps,
                max_fps=cam.fps,
                on_packet=self._on_packet,
                bitrate_kbps=cfg.capture.bitrate_kbps,
                preset=agent.preset,
                label=self.label,
            )
        elif self.encode_once:
            self.writer.on_packet = self._on_packet
        self.encoder = EncoderThread(self.writer)
        self.source = CameraSource(
            cam.source,
            width=cam.width,
            height=cam.height,
            fps=cam.fps,
            loop=cam.loop,
            on_frame=self._on_frame,
            label=self.label,
            rtsp_transport=cam.rtsp_transport,
        )
        self.live: LiveTrack | PacketTrack | None = None
        self._live_lock = threading.Lock()
        self.connection = "new"
        self.last_error: str | None = None
        self.connects = 0
        self.hub_lost_live = 0  # consecutive heartbeats in which the hub had no live connection
        self.kick = asyncio.Event()
        #: Set by a heartbeat that reached the hub: end this camera's reconnect backoff now.
        self.retry_now = asyncio.Event()
        self.hub_refused = False  # the last attempt failed because the hub said no (keep backing off)

    def _on_packet(self, data: bytes, ts: float, key: bool) -> None:  # encoder thread
        live = self.live
        if isinstance(live, PacketTrack) and self.agent.loop is not None:
            self.agent.loop.call_soon_threadsafe(live.push, data, ts, key)

    def request_keyframe(self) -> None:
        """A keyframe on the live stream soon (new connection, receiver's PLI)."""
        if self.live_encoder is not None:
            self.live_encoder.request_keyframe()
        else:
            self.writer.request_keyframe()

    def _on_control(self, message: str | bytes) -> None:
        """A message from the hub on the control channel: ``{"full_rate": bool}``, or a notice
        for the room's display ``{"notice": {id, room, text, seconds}}`` (capture/notices.py)."""
        try:
            doc = json.loads(message)
            if isinstance(doc, dict) and "notice" in doc:
                self.agent.notice(doc["notice"], via="control")
                return
            full = doc["full_rate"]
            if not isinstance(full, bool):
                raise TypeError(f"full_rate must be true or false, got {full!r}")
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignored control message camera=%s: %s", self.label, e)
            return
        self.set_full_rate(full)

    def set_full_rate(self, full: bool) -> None:
        """Live stream at the camera's full rate (somebody watches it enlarged) or the base rate."""
        enc = self.live_encoder
        if enc is not None:
            enc.set_fps(enc.max_fps if full else enc.base_fps)

    def _on_frame(self, frame: av.VideoFrame, ts: float) -> None:  # source thread
        self.encoder.submit(frame, ts)
        analyser = self.agent.analyser
        if analyser is not None:
            analyser.offer(self.room, self.camera, ts, frame)
        if self.live_encoder is not None and self.live is not None:
            self.live_encoder.offer(frame, ts)
        live = self.live
        if isinstance(live, LiveTrack) and self.agent.loop is not None:
            # The encoder thread owns `frame` (it sets pts); the live path gets its own copy.
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            self.agent.loop.call_soon_threadsafe(live.push, copy, ts)

    def status(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "camera": self.camera,
            "connection": self.connection,
            "frames": self.source.frames,
            "segments_written": self.writer.segments_written,
            "encoder_dropped": self.encoder.dropped,
            "live_fps": self.live_encoder.fps if self.live_encoder is not None else self.cam.fps,
            "pending_segments": sum(
                1 for s in self.agent.spool.segments(self.site, self.room, self.camera) if not s.done
            ),
            "last_error": self.last_error or self.source.last_error or self.writer.last_error,
        }

    async def publish_forever(self) -> None:
        """Keep a live WebRTC connection to the hub, reconnecting with backoff."""
        cfg = self.agent.cfg
        backoff = Backoff(cfg.capture.reconnect_min_seconds, cfg.capture.reconnect_max_seconds)
        while True:
            pc = RTCPeerConnection(configuration=rtc_configuration(cfg.hub.stun_urls, cfg.hub.turn_urls))
            track: LiveTrack | PacketTrack
            if self.encode_once:
                track = PacketTrack(on_need_keyframe=self.request_keyframe)
            else:
                track = LiveTrack()
            connected_at: float | None = None
            try:
                done = asyncio.Event()

                @pc.on("connectionstatechange")
                def _state(pc: RTCPeerConnection = pc, done: asyncio.Event = done) -> None:
                    self.connection = pc.connectionState
                    if pc.connectionState in ("failed", "closed"):
                        done.set()

                tr = pc.addTransceiver(track, direction="sendonly")
                if self.live_encoder is not None:
                    # The hub asks for the full rate here the moment somebody enlarges the camera.
                    control = pc.createDataChannel(CONTROL_CHANNEL)
                    control.on("message", self._on_control)
                codec = "video/H264" if cfg.capture.codec == "h264" else "video/VP8"
                prefs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec]
                # x264 "baseline" emits Constrained Baseline: offer 42e01f first (then 42001f).
                prefs.sort(key=lambda c: (c.parameters or {}).get("profile-level-id") != "42e01f")
                if not prefs and self.encode_once:
                    raise RuntimeError("aiortc offers no H.264 codec: cannot send pre-encoded packets")
                if prefs:
                    tr.setCodecPreferences(prefs)
                if self.encode_once:
                    _answer_pli_with_keyframe(tr.sender, self.request_keyframe)
                await pc.setLocalDescription(await pc.createOffer())
                desc = pc.localDescription
                body = {
                    "site": self.site,
                    "room": self.room,
                    "camera": self.camera,
                    "sdp": desc.sdp,
                    "type": desc.type,
                }
                r = await self.agent.call("POST", "/api/ingest/offer", json=body)
                if r.status_code == 421:  # no hub node holds the site right now (failover)
                    raise ConnectionError(f"offer: HTTP 421: {_detail(r)}")
                if r.status_code != 200:
                    raise HubRefused(f"hub refused offer: HTTP {r.status_code}: {_detail(r)}")
                ans = r.json()
                await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
                self.live = track
                if self.encode_once:
                    self.request_keyframe()  # the hub decodes from the next frame on
                self.connects += 1
                log.info("live connection up site=%s room=%s camera=%s", self.site, self.room, self.camera)
                # Connected: wait until the connection fails (hub gone, ICE timeout, ...).
                connect_deadline = time.monotonic() + 20
                self.kick.clear()
                self.hub_lost_live = 0
                while not done.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 1.0)
                    if self.kick.is_set():
                        # ICE consent needs ~30 s to notice a dead hub; the heartbeat knows sooner.
                        raise ConnectionError("hub reports no live connection for this camera (restarted?)")
                    if pc.connectionState == "connected":
                        if connected_at is None:
                            connected_at = time.monotonic()
                            self.last_error = None
                        elif time.monotonic() - connected_at > 10:
                            backoff.reset()
                    elif connected_at is None and time.monotonic() > connect_deadline:
                        raise ConnectionError("ICE/DTLS did not connect within 20 s")
                raise ConnectionError(f"live connection {pc.connectionState}")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"live: {e}"
                self.hub_refused = isinstance(e, HubRefused)
                delay = backoff.next()
                log.warning(
                    "live connection failed site=%s room=%s camera=%s: %s (retry in %.1fs)",
                    self.site,
                    self.room,
                    self.camera,
                    e,
                    delay,
                )
            finally:
                self.live = None
                track.stop()
                with contextlib.suppress(Exception):
                    await pc.close()
            # Back off — unless a heartbeat gets through meanwhile: after a long cut the backoff
            # is at its cap (up to reconnect_max_seconds), but the hub is back now.
            self.retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.retry_now.wait(), delay)


class HubRefused(ConnectionError):
    """The hub answered the offer with an error (bad config, unknown camera...): only the
    backoff schedules the next attempt, a successful heartbeat does not shorten it."""


def _answer_pli_with_keyframe(sender: RTCRtpSender, request: Any) -> None:
    """aiortc answers a receiver's PLI/FIR by forcing a keyframe in *its* encoder, which a
    packet track does not use; forward the request to ours (rate-limited there)."""
    orig = sender._send_keyframe

    def _send_keyframe() -> None:
        orig()
        request()

    sender._send_keyframe = _send_keyframe  # type: ignore[method-assign]


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except ValueError:
        return r.text[:300]


class Agent:
    def __init__(
        self,
        cfg: EvalwatchConfig,
        site_id: str,
        *,
        rooms: list[str] | None = None,
        hub_url: str | None = None,
        token: str | None = None,
        preset: str = "veryfast",
        live: bool = True,
        analyser: EdgeAnalyserLike | None = None,
        hub_cert_sha256: str | None = None,
        hub_ca_file: str | None = None,
    ):
        self.cfg = cfg
        self.site_id = site_id
        site = cfg.site(site_id)
        if token is None:
            if site.agent_token is None:
                raise ValueError(f"no agent token for site {site_id!r} (secrets file or --token-file)")
            token = site.agent_token.get_secret_value()
        self._token = token
        self.hub_url = (hub_url or cfg.hub.url).rstrip("/")
        #: Every hub node this agent may talk to (several nodes, issue #14): the given one first,
        #: then the site's ``hub_urls``.  ``call`` follows a 421's holder among them and tries the
        #: next one when the current one cannot be reached.
        self.hub_urls = [self.hub_url] + [u for u in site.hub_urls if u != self.hub_url]
        self.hub_switches = 0
        self._hub_switched = False
        # How the hub's certificate is trusted (capture/tls.py): the options, else the site's
        # config; ValueError naming the problem (a bad fingerprint, a missing CA file).
        pin = hub_cert_sha256 or site.hub_cert_sha256
        ca = hub_ca_file or site.hub_ca_file
        for url in self.hub_urls:
            if (pin or ca) and not url.startswith("https://"):
                raise ValueError(
                    f"a hub certificate is pinned or a hub CA file given for site {site_id!r}, but the hub "
                    f"URL {url} is not https: the agent token would travel in clear"
                )
        self.verify = hub_ssl(ca, pin)
        #: The last TLS refusal of the hub's certificate (wrong pin / failed verification), or None.
        self.tls_error: str | None = None
        self.preset = preset
        self.live_enabled = live
        self.spool = Spool(
            Path(cfg.capture.spool_dir), cfg.capture.spool_max_mb, cfg.capture.spool_min_free_mb
        )
        self.rooms = [r for r in site.rooms if not rooms or r.id in rooms]
        if rooms and len(self.rooms) != len(rooms):
            unknown = sorted(set(rooms) - {r.id for r in self.rooms})
            raise ValueError(f"site {site_id!r} has no room(s) {unknown}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pipes: list[CameraPipe] = []
        self._seg_event: asyncio.Event | None = None
        self._upload_retry = asyncio.Event()  # set by a heartbeat that reached the hub
        self.http: httpx.AsyncClient
        self.hub_reachable = False
        self.uploaded = 0
        self.backfilled = 0
        self.upload_error: str | None = None
        #: Edge analysis (None: the hub analyses this site, or analysis is switched off here).
        self.analyser = analyser
        self.incidents = IncidentSpool(Path(cfg.capture.spool_dir) / "_incidents" / site_id)
        self._incident_event: asyncio.Event | None = None
        self.incidents_sent = 0
        self.incident_error: str | None = None
        self.sessions_version = -1
        self._facts = agent_facts()
        #: Digest of the hub-served configuration this agent runs with (enrolled agents, see
        #: ``capture.enroll``); a heartbeat answer naming another one sets ``config_changed`` and
        #: stops the agent, whose command then fetches the new configuration and starts again.
        self.config_version: str | None = None
        self.config_changed = False
        self._stop: asyncio.Event | None = None
        #: Room notices (capture/notice_display.py): id → the report once made (None while the
        #: notice is being shown); reports the hub has not taken yet are re-sent when a heartbeat
        #: answer still lists the notice.
        self.notices: dict[int, dict[str, Any] | None] = {}
        self._notice_unreported: set[int] = set()
        self._notice_tasks: set[asyncio.Task[None]] = set()

    def notice(self, doc: Any, via: str) -> None:  # event-loop thread
        """A notice for one of this agent's rooms: shown (and spoken) once per id, then reported."""
        try:
            nid, room, text = int(doc["id"]), str(doc["room"]), str(doc["text"])
            seconds = float(doc.get("seconds", 15))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignored notice site=%s: %s", self.site_id, e)
            return
        if room not in {r.id for r in self.rooms}:
            return
        if nid in self.notices:
            report = self.notices[nid]
            if report is not None and nid in self._notice_unreported:
                self._spawn(self._report_notice(nid, report))
            return
        self.notices[nid] = None
        log.info("room notice id=%s site=%s room=%s via=%s: showing %r", nid, self.site_id, room, via, text)
        self._spawn(self._show_notice(nid, room, text, seconds, via))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._notice_tasks.add(task)
        task.add_done_callback(self._notice_tasks.discard)

    async def _show_notice(self, nid: int, room: str, text: str, seconds: float, via: str) -> None:
        from capture.notice_display import show_notice

        try:
            result = await show_notice(text, seconds)
        except Exception as e:  # never lose the report
            log.exception("showing room notice id=%s failed", nid)
            result = {"shown": False, "shown_at": None, "reason": f"error: {e}"[:200], "spoken": False}
        report = {"site": self.site_id, "room": room, **result, "via": via, "host": self._facts.get("host")}
        self.notices[nid] = report
        log.info("room notice id=%s site=%s room=%s shown=%s reason=%s spoken=%s", nid, self.site_id, room,
                 result["shown"], result["reason"], result["spoken"])
        await self._report_notice(nid, report)

    async def _report_notice(self, nid: int, report: dict[str, Any]) -> None:
        for attempt in range(3):
            try:
                r = await self.http.post(f"/api/ingest/notices/{nid}", json=report,
                                         timeout=self.heartbeat_timeout)
                if r.status_code == 200 or 400 <= r.status_code < 500:
                    if r.status_code != 200:
                        log.warning("notice report refused id=%s: HTTP %d %s", nid, r.status_code, _detail(r))
                    self._notice_unreported.discard(nid)
                    return
            except httpx.HTTPError as e:
                log.debug("notice report failed id=%s: %s", nid, e)
            await asyncio.sleep(1.0 + attempt)
        self._notice_unreported.add(nid)  # the next heartbeat answer listing it retries

    def incident_ready(self, doc: dict[str, Any]) -> None:  # analysis thread
        """Spool one incident update (durably) and wake the incident uploader."""
        path = self.incidents.put(doc)
        log.info(
            "incident %s spooled rule=%s seat=%s site=%s room=%s camera=%s uid=%s seq=%s file=%s",
            doc.get("action"), doc.get("rule"), doc.get("seat"), doc.get("site"), doc.get("room"),
            doc.get("camera"), doc.get("uid"), doc.get("seq"), path.name,
        )
        if self.loop is not None and self._incident_event is not None:
            self.loop.call_soon_threadsafe(self._incident_event.set)

    @property
    def heartbeat_timeout(self) -> httpx.Timeout:
        """2 heartbeat intervals, at least 5 s (a heartbeat is small and the hub answers in ms)."""
        return httpx.Timeout(max(5.0, 2 * self.cfg.capture.heartbeat_seconds), connect=5.0)

    def segment_ready(self) -> None:  # any thread
        if self.loop is not None and self._seg_event is not None:
            self.loop.call_soon_threadsafe(self._seg_event.set)

    async def run(self, stop: asyncio.Event | None = None, duration: float | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._seg_event = asyncio.Event()
        self._incident_event = asyncio.Event()
        stop = stop or asyncio.Event()
        self._stop = stop
        configure_ice(self.cfg.hub.ice_interfaces)
        self.http = httpx.AsyncClient(
            base_url=self.hub_url,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
            verify=self.verify,
        )
        self.pipes = [CameraPipe(self, room, cam) for room in self.rooms for cam in room.cameras]
        log.info(
            "agent starting site=%s cameras=%s hub=%s hubs=%s spool=%s",
            self.site_id,
            [p.label for p in self.pipes],
            self.hub_url,
            self.hub_urls,
            self.spool.root,
        )
        if self.analyser is not None:
            self.analyser.start(self.incident_ready)
            log.info("edge analysis on site=%s cameras=%d", self.site_id, len(self.pipes))
        for p in self.pipes:
            p.source.start()
        tasks = [asyncio.create_task(self._upload_forever(), name="uploader")]
        tasks.append(asyncio.create_task(self._heartbeat_forever(), name="heartbeat"))
        tasks.append(asyncio.create_task(self._incidents_forever(), name="incidents"))
        if self.analyser is not None:
            tasks.append(asyncio.create_task(self._sessions_forever(), name="sessions"))
        if self.live_enabled:
            tasks += [asyncio.create_task(p.publish_forever(), name=f"live-{p.label}") for p in self.pipes]
        try:
            if duration is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            else:
                await stop.wait()
        finally:
            log.info("agent stopping site=%s", self.site_id)
            for p in self.pipes:
                p.source.stop()
            if self.analyser is not None:
                await asyncio.to_thread(self.analyser.stop)
            await asyncio.gather(*(asyncio.to_thread(p.encoder.stop) for p in self.pipes))
            for p in self.pipes:
                if p.live_encoder is not None:
                    p.live_encoder.stop()
            for t in tasks:
                if t.get_name() not in ("uploader", "incidents"):
                    t.cancel()
            # Give the uploader a moment to send the last segments; the rest stays spooled.
            self.segment_ready()
            deadline = time.monotonic() + 10
            while (self.spool.pending(self.site_id) or self.incidents.pending()) and (  # noqa: ASYNC110
                time.monotonic() < deadline
            ):
                await asyncio.sleep(0.2)
            for t in [*tasks, *self._notice_tasks]:
                t.cancel()
            await asyncio.gather(*tasks, *self._notice_tasks, return_exceptions=True)
            await self.http.aclose()

    # -- hubs ------------------------------------------------------------------------------------

    def _use_hub(self, url: str, why: str) -> None:
        if url == self.hub_url:
            return
        log.warning("agent switches hub site=%s from=%s to=%s: %s", self.site_id, self.hub_url, url, why)
        self.hub_url = url
        self.http.base_url = httpx.URL(url)
        self.hub_switches += 1
        self._hub_switched = True  # the uploader asks the new node what it lacks (backfill)
        self.sessions_version = -1  # versions are numbered per node: take the new node's as news

    def _next_hub(self, why: str) -> None:
        i = self.hub_urls.index(self.hub_url) if self.hub_url in self.hub_urls else -1
        self._use_hub(self.hub_urls[(i + 1) % len(self.hub_urls)], why)

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request to the hub node holding this site: a 421 from a node that does not hold
        it sends the request to the holder it names (only a URL of ``hub_urls``: a node cannot
        send the token elsewhere); an unreachable node, to the next one.  At most one attempt
        per known hub; then the last answer (421) or error is the caller's."""
        attempts = 0
        while True:
            attempts += 1
            try:
                r = await self.http.request(method, path, **kw)
            except httpx.TransportError as e:
                if len(self.hub_urls) < 2 or attempts > len(self.hub_urls) or self._tls_refused(e):
                    raise
                self._next_hub(f"{type(e).__name__}: {e}")
                continue
            if r.status_code != 421 or attempts > len(self.hub_urls):
                return r
            holder = (r.headers.get("x-evalwatch-holder") or "").rstrip("/")
            if holder and holder != self.hub_url and holder in self.hub_urls:
                self._use_hub(holder, f"HTTP 421, the site is held by {holder}")
            elif holder and holder not in self.hub_urls:
                log.warning("hub %s names %s as the holder of site=%s, which is not in this agent's hub "
                            "list; not following it", self.hub_url, holder, self.site_id)
                if len(self.hub_urls) < 2:
                    return r
                self._next_hub("HTTP 421, unlisted holder")
            elif len(self.hub_urls) > 1:
                self._next_hub("HTTP 421, the site is being reassigned")
            else:
                return r

    # -- upload ----------------------------------------------------------------------------------

    async def _upload(self, seg: SpooledSegment, source: str) -> bool:
        """PUT one segment; True when the hub has it.  Raises ConnectionError to back off."""
        data = await asyncio.to_thread(seg.path.read_bytes)
        r = await self.call(
            "PUT", f"/api/ingest/segments/{seg.site}/{seg.room}/{seg.camera}",
            params={"start": seg.start.isoformat(), "end": seg.end.isoformat(), "source": source},
            content=data,
            headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest(), "Content-Type": "video/mp4"},
        )
        if r.status_code in (200, 201):
            return True
        detail = _detail(r)
        if r.status_code in (400, 409, 413, 422):
            log.error(
                "hub rejected segment site=%s room=%s camera=%s start=%s: HTTP %d %s (kept aside)",
                seg.site,
                seg.room,
                seg.camera,
                fmt_stamp(seg.start),
                r.status_code,
                detail,
            )
            self.spool.mark_rejected(seg, f"HTTP {r.status_code}: {detail}")
            return False
        raise ConnectionError(f"HTTP {r.status_code}: {detail}")

    async def _upload_forever(self) -> None:
        assert self._seg_event is not None
        c = self.cfg.capture
        backoff = Backoff(c.reconnect_min_seconds, c.reconnect_max_seconds)
        need_backfill = True
        last_backfill = 0.0
        while True:
            try:
                for seg in self.spool.pending(self.site_id):
                    if await self._upload(seg, "live"):
                        self.spool.mark_done(seg)
                        self.uploaded += 1
                    self._reachable(True)
                if self._hub_switched:  # another node now: ask it what the archive lacks
                    self._hub_switched = False
                    need_backfill = True
                if need_backfill or time.monotonic() - last_backfill > 60:
                    await self._backfill()
                    need_backfill = False
                    last_backfill = time.monotonic()
                self._reachable(True)
                self.upload_error = None
                backoff.reset()
                self._seg_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._seg_event.wait(), 5.0)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, ConnectionError, OSError) as e:
                self._tls_refused(e)
                self._reachable(False)
                need_backfill = True
                self.upload_error = f"upload: {type(e).__name__}: {e}"
                delay = backoff.next()
                log.warning(
                    "segment upload failed site=%s: %s (%d pending, retry in %.1fs)",
                    self.site_id,
                    self.upload_error,
                    len(self.spool.pending(self.site_id)),
                    delay,
                )
                self._upload_retry.clear()
                with contextlib.suppress(TimeoutError):  # a heartbeat that gets through ends it
                    await asyncio.wait_for(self._upload_retry.wait(), delay)

    def _reachable(self, ok: bool) -> None:
        if ok and not self.hub_reachable:
            log.info("hub reachable site=%s hub=%s", self.site_id, self.hub_url)
        self.hub_reachable = ok

    async def _backfill(self) -> None:
        """Ask the hub which spooled time ranges the archive lacks and send them again."""
        for p in self.pipes:
            segs = [s for s in self.spool.segments(p.site, p.room, p.camera) if s.done]
            if not segs:
                continue
            r = await self.call(
                "GET", "/api/ingest/missing",
                params={
                    "site": p.site,
                    "room": p.room,
                    "camera": p.camera,
                    "since": segs[0].start.isoformat(),
                    "until": segs[-1].end.isoformat(),
                },
            )
            if r.status_code != 200:
                raise ConnectionError(f"missing-ranges query: HTTP {r.status_code}: {_detail(r)}")
            ranges = [(_iso(a), _iso(b)) for a, b in r.json().get("ranges", [])]
            if not ranges:
                continue
            resend = [s for s in segs if any(s.start < b and s.end > a for a, b in ranges)]
            log.info(
                "backfill site=%s room=%s camera=%s: hub lacks %d range(s), re-sending %d segment(s)",
                p.site,
                p.room,
                p.camera,
                len(ranges),
                len(resend),
            )
            for seg in resend:
                if seg.path.exists() and await self._upload(seg, "backfill"):
                    self.backfilled += 1

    # -- incidents (edge analysis) -------------------------------------------------------------------

    async def _send_incident(self, path: Path) -> None:
        """POST one spooled update; done or rejected on an answer, ConnectionError to back off."""
        try:
            doc = json.loads(await asyncio.to_thread(path.read_bytes))
        except (OSError, ValueError) as e:
            self.incidents.reject(path, f"unreadable spool file: {e}")
            return
        r = await self.call("POST", "/api/ingest/incidents", json=doc)
        if r.status_code == 200:
            self.incidents.done(path)
            self.incidents_sent += 1
            return
        detail = _detail(r)
        if 400 <= r.status_code < 500 and r.status_code not in (401, 408, 421, 429):
            log.error(
                "hub rejected incident update site=%s room=%s camera=%s uid=%s seq=%s: HTTP %d %s"
                " (kept aside)",
                doc.get("site"), doc.get("room"), doc.get("camera"), doc.get("uid"), doc.get("seq"),
                r.status_code, detail,
            )
            self.incidents.reject(path, f"HTTP {r.status_code}: {detail}")
            return
        raise ConnectionError(f"HTTP {r.status_code}: {detail}")

    async def _incidents_forever(self) -> None:
        """Send spooled incident updates oldest first; back off while the hub is unreachable."""
        assert self._incident_event is not None
        c = self.cfg.capture
        backoff = Backoff(c.reconnect_min_seconds, c.reconnect_max_seconds)
        while True:
            try:
                for path in self.incidents.pending():
                    await self._send_incident(path)
                self.incident_error = None
                backoff.reset()
                self._incident_event.clear()
                if not self.incidents.pending():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._incident_event.wait(), 5.0)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, ConnectionError, OSError) as e:
                self.incident_error = f"incidents: {type(e).__name__}: {e}"
                delay = backoff.next()
                log.warning(
                    "incident upload failed site=%s: %s (%d pending, retry in %.1fs)",
                    self.site_id, self.incident_error, len(self.incidents.pending()), delay,
                )
                self._upload_retry.clear()
                with contextlib.suppress(TimeoutError):  # a heartbeat that gets through ends it
                    await asyncio.wait_for(self._upload_retry.wait(), delay)

    def _apply_sessions(self, version: int, rooms: dict[str, Any]) -> None:
        if self.analyser is None or version == self.sessions_version:
            return
        mine = {r.id for r in self.rooms}
        self.analyser.set_sessions({k: v for k, v in rooms.items() if k in mine})
        if self.sessions_version != -1 or version != 0:
            log.info("sessions from hub site=%s version=%d rooms=%s", self.site_id, version, rooms)
        self.sessions_version = version

    async def _sessions_forever(self) -> None:
        """Long-poll the hub for the running sessions of this site's rooms (seats to arm)."""
        c = self.cfg.capture
        backoff = Backoff(c.reconnect_min_seconds, c.reconnect_max_seconds)
        while True:
            try:
                r = await self.call(
                    "GET", "/api/ingest/sessions",
                    params={"site": self.site_id, "after": self.sessions_version},
                    timeout=httpx.Timeout(40.0, connect=5.0),
                )
                if r.status_code != 200:
                    raise ConnectionError(f"HTTP {r.status_code}: {_detail(r)}")
                body = r.json()
                self._apply_sessions(int(body["version"]), body["rooms"])
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, ConnectionError, OSError, ValueError, KeyError) as e:
                delay = backoff.next()
                log.debug("sessions poll failed site=%s: %s (retry in %.1fs)", self.site_id, e, delay)
                self._upload_retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._upload_retry.wait(), delay)

    def analysis_beat(self) -> dict[str, Any] | None:
        """The analysis heartbeat (None without edge analysis)."""
        if self.analyser is None:
            return None
        return {**self.analyser.status(), "pending_incidents": len(self.incidents.pending()),
                "incident_error": self.incident_error, "sessions_version": self.sessions_version}

    # -- heartbeat ---------------------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        while True:
            body = {
                "site": self.site_id,
                "agent": {
                    **self._facts,
                    "cpu_load": cpu_load(),
                    "spool_quota_bytes": self.spool.max_bytes,
                    "hub_reachable": self.hub_reachable,
                    "uploaded": self.uploaded,
                    "backfilled": self.backfilled,
                    "spool_bytes": self.spool.total_bytes(),
                    "spool_dropped_unsent": self.spool.dropped_unsent,
                    "spool_disk": await asyncio.to_thread(self.spool.disk_report),
                    "upload_error": self.upload_error,
                    "time": datetime.now(UTC).isoformat(),
                },
                "cameras": [p.status() for p in self.pipes],
            }
            beat = self.analysis_beat()
            if beat is not None:
                body["analysis"] = beat
            try:
                # A short read timeout: during a silent cut a request on a pooled connection hangs
                # until it; the heartbeat is what ends the backoffs once the link is back.
                r = await self.call("POST", "/api/ingest/heartbeat", json=body,
                                    timeout=self.heartbeat_timeout)
                if r.status_code != 200:
                    log.warning(
                        "heartbeat refused site=%s: HTTP %d %s", self.site_id, r.status_code, _detail(r)
                    )
                else:
                    # The hub is reachable again: whoever is backing off tries now.
                    self.tls_error = None
                    self._upload_retry.set()
                    for p in self.pipes:
                        if p.live is None and not p.hub_refused:
                            p.retry_now.set()
                    answer = r.json()
                    served = answer.get("config_version")
                    if self.config_version and served and served != self.config_version and self._stop:
                        log.info("hub config changed site=%s version=%s→%s: restarting the agent",
                                 self.site_id, self.config_version, served)
                        self.config_changed = True
                        self._stop.set()
                    sessions = answer.get("sessions")
                    if isinstance(sessions, dict) and "version" in sessions:
                        self._apply_sessions(int(sessions["version"]), sessions.get("rooms", {}))
                    for n in answer.get("notices") or []:
                        self.notice(n, via="heartbeat")
                    live = answer.get("live", {})
                    full_rate = set(answer.get("full_rate", []))
                    for p in self.pipes:
                        p.set_full_rate(f"{p.room}/{p.camera}" in full_rate)
                    for p in self.pipes:
                        if p.connection == "connected" and live.get(f"{p.room}/{p.camera}") is False:
                            p.hub_lost_live += 1
                            if p.hub_lost_live >= 2:
                                p.kick.set()
                        else:
                            p.hub_lost_live = 0
            except httpx.HTTPError as e:
                if not self._tls_refused(e):
                    log.debug("heartbeat failed site=%s: %s", self.site_id, e)
            await asyncio.sleep(self.cfg.capture.heartbeat_seconds)

    def _tls_refused(self, e: BaseException) -> bool:
        """True when ``e`` is the hub's certificate being refused; logged as an error once per
        distinct message (every loop retries, and says so at warning level)."""
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            return False
        msg = str(cause) if isinstance(cause, HubCertMismatch) else f"hub certificate refused: {cause}"
        if msg != self.tls_error:
            log.error("site=%s hub=%s: %s", self.site_id, self.hub_url, msg)
        self.tls_error = msg
        return True


def _iso(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# -- CLI -------------------------------------------------------------------------------------------


def _setup_logging(level: str, log_file: str | None = None) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[log_handler(log_file)],  # --log-file: rotating (capture.hostos)
    )
    for noisy in ("aioice", "aiortc", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: ``factory(cfg, site_id, rooms)`` → the edge analyser of those rooms (``evalwatch.edge``).
AnalyserFactory = Callable[[EvalwatchConfig, str, list[RoomConfig]], EdgeAnalyserLike]


def agent_parser() -> argparse.ArgumentParser:
    """The options of ``evalwatch agent`` (also read by ``capture.service`` for the service)."""
    ap = argparse.ArgumentParser(
        prog="evalwatch agent", description=__doc__.splitlines()[0],
        epilog="also: evalwatch agent enroll | install-service | uninstall-service | discover (each with "
        "--help); docs/agent.md",
    )
    ap.add_argument("--config", "-c",
                    help="evalwatch YAML config (default: run as enrolled, configuration from the hub)")
    ap.add_argument("--site", help="site id whose cameras this agent publishes (with --config)")
    ap.add_argument("--state-dir",
                    help="the enrolled agent's state directory (see 'evalwatch agent enroll --help')")
    ap.add_argument("--room", action="append", help="only this room (repeatable; default: all)")
    ap.add_argument("--hub-url", help="hub URL (default: hub.public_url from the config)")
    ap.add_argument(
        "--token-file",
        help="file holding this site's agent token (default: $EVALWATCH_AGENT_TOKEN, else the secrets file)",
    )
    ap.add_argument("--spool-dir", help="override capture.spool_dir")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--preset", default="veryfast", help="x264 preset for archive segments")
    ap.add_argument("--no-live", action="store_true", help="archive only, no WebRTC live stream")
    ap.add_argument(
        "--no-analysis", action="store_true",
        help="do not analyse here even if the site's analysis is 'agent' (the hub raises analysis_offline)",
    )
    ap.add_argument(
        "--hub-cert-sha256",
        help="pin the hub's HTTPS certificate: its SHA-256 (evalwatch tls fingerprint hub.crt); "
        "a different certificate is refused (default: sites[].hub_cert_sha256)",
    )
    ap.add_argument(
        "--hub-ca", help="CA file (PEM) to verify the hub's HTTPS certificate against (default: "
        "sites[].hub_ca_file, else the system's trust store)",
    )
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--log-file", help="log to this file, rotated at 10 MB, 5 kept (default: stderr)")
    return ap


def cli(argv: list[str], analyser_factory: AnalyserFactory | None = None) -> int:
    from config import ConfigError, load_config

    ap = agent_parser()
    args = ap.parse_args(argv)
    _setup_logging(args.log_level, args.log_file)
    if args.config is None:
        if args.site or args.token_file:
            ap.error("--site and --token-file go with --config (an enrolled agent knows its site)")
        return _run_enrolled(args, analyser_factory)
    if not args.site:
        ap.error("--site is required with --config")

    token: str | None = os.environ.get("EVALWATCH_AGENT_TOKEN") or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            print(f"evalwatch agent: cannot read --token-file {args.token_file}: {e.strerror or e}",
                  file=sys.stderr)
            return 2
    try:
        cfg = load_config(args.config, load_secrets=token is None)
    except ConfigError as e:
        print(f"evalwatch agent: {e}", file=sys.stderr)
        return 2
    if args.spool_dir:
        cfg.capture.spool_dir = args.spool_dir
    agent = _make_agent(cfg, args.site, args, token, args.hub_url, analyser_factory)
    if isinstance(agent, int):
        return agent
    _run(agent, args.duration)
    return 0


def _run_enrolled(args: argparse.Namespace, analyser_factory: AnalyserFactory | None) -> int:
    """Run as enrolled (``capture.enroll``): state and configuration from the state directory and
    the hub; start again with the new configuration whenever the hub's changes."""
    from capture.enroll import EnrollError, default_state_dir, enrolled_config

    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    while True:
        try:
            cfg, state, version = enrolled_config(state_dir)
        except EnrollError as e:
            print(f"evalwatch agent: {e}", file=sys.stderr)
            return 2
        cfg.capture.spool_dir = args.spool_dir or str(state_dir / "spool")
        if not args.hub_cert_sha256 and state.tls_fingerprint:
            args.hub_cert_sha256 = state.tls_fingerprint  # pinned at enrolment
        agent = _make_agent(cfg, state.site, args, state.credential, args.hub_url or state.hub_url,
                            analyser_factory)
        if isinstance(agent, int):
            return agent
        agent.config_version = version
        _run(agent, args.duration)
        if not agent.config_changed:
            return 0


def _make_agent(
    cfg: EvalwatchConfig, site_id: str, args: argparse.Namespace, token: str | None, hub_url: str | None,
    analyser_factory: AnalyserFactory | None,
) -> Agent | int:
    """The agent of ``args`` (2 after a one-line error)."""
    try:
        analyser: EdgeAnalyserLike | None = None
        site = cfg.site(site_id)
        if site.analysis == "agent" and not args.no_analysis:
            if analyser_factory is None:
                log.warning("site=%s: analysis 'agent' but no analyser: run 'evalwatch agent'", site_id)
            else:
                rooms = [r for r in site.rooms if not args.room or r.id in args.room]
                analyser = analyser_factory(cfg, site_id, rooms)
        return Agent(
            cfg,
            site_id,
            rooms=args.room,
            hub_url=hub_url,
            token=token,
            preset=args.preset,
            live=not args.no_live,
            analyser=analyser,
            hub_cert_sha256=args.hub_cert_sha256,
            hub_ca_file=args.hub_ca,
        )
    except (KeyError, ValueError) as e:
        print(f"evalwatch agent: {e}", file=sys.stderr)
        return 2


def _run(agent: Agent, duration: float | None) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        install_stop_handlers(loop, stop.set)  # Windows loops: signal.signal fallback
        await agent.run(stop, duration=duration)

    asyncio.run(main())
