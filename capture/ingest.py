"""The hub's ingest API for site agents (an ``APIRouter``; ``evalwatch.hub`` mounts it).

Routes (all need ``Authorization: Bearer <credential>``: the site's agent token from the hub's
secrets file, or an enrolled agent's own credential — ``storage.agents``, checked in the database
on every request, so a revoked one is refused at once):

* ``POST /api/ingest/offer`` — JSON ``{site, room, camera, sdp, type}`` → ``{sdp, type}`` answer;
* ``PUT  /api/ingest/segments/{site}/{room}/{camera}?start=ISO&end=ISO&source=live|backfill`` —
  body = one MP4 segment, header ``X-Content-SHA256``; stored with ``SegmentStore.put``;
* ``GET  /api/ingest/missing?site=&room=&camera=&since=ISO[&until=ISO]`` — time ranges the
  archive lacks (``SegmentStore.missing_ranges``), so the agent can re-send them;
* ``POST /api/ingest/heartbeat`` — JSON ``{site, agent: {...}, cameras: [{room, camera, ...}],
  analysis: {...}}`` (``analysis``: the edge analysis's progress) → live state, full-rate cameras
  and, for an edge-analysed site, the running sessions (``sessions: {version, rooms}``);
* ``POST /api/ingest/incidents`` — one edge incident update (``capture.incidents.IncidentUpdateIn``)
  → ``{id, applied}``; idempotent (the hub upserts by ``uid``, a ``seq`` already applied is a no-op);
* ``GET  /api/ingest/sessions?site=&after=VERSION`` — the running sessions of the site's rooms
  (seats to arm); answers at once if the version differs from ``after``, else on the next change
  (long poll, at most ~25 s);
* ``GET  /api/ingest/config?site=`` — what an enrolled agent runs with instead of the hub's config
  file: its site (rooms, cameras and their sources, seats), capture, detection and rules sections
  and the hub's ICE servers, as an ``EvalwatchConfig`` document, and its ``version`` (a digest;
  every heartbeat answer repeats it, so the agent notices a change).

Several hub nodes (``storage.leases``): ``offer``, ``segments``, ``heartbeat``, ``incidents`` and
``sessions`` of a site are served only by the node holding the site's lease; another node answers
**421** ``{"detail", "code": "err.not_holder", "holder": URL | null}`` (also in the header
``X-Evalwatch-Holder``), and the agent goes there (``holder`` null: the site is being
reassigned, ask again).  A segment whose append the database refuses because the lease moved
meanwhile (``LeaseLost``) gets the same answer; nothing of it was archived.

Errors are JSON ``{"detail": "..."}`` naming the problem: 401 bad/missing token, 403 another
site's or an unknown camera, 400 malformed input (SDP, JSON, times, MP4), 413 body too large,
421 this node does not hold the site, 503 storage unavailable, 507 the hub's write-ahead disk is
full (the agent retries both).
Tokens are compared with ``hmac.compare_digest`` and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import av
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from capture.agentstatus import CLOCK_FLAG_S, AgentMonitor
from capture.incidents import IncidentStored, IncidentUpdateIn
from capture.notices import NoticeOut, NoticeReportIn, RoomNotices
from capture.recorder import OfferError, Recorder
from config.models import EvalwatchConfig
from storage import common
from storage.agents import CREDENTIAL_PREFIX
from storage.common import CameraId
from storage.leases import LeaseLost
from storage.segments import SegmentConflict, SegmentMeta, SegmentRefused, WalFull

log = logging.getLogger(__name__)

SHA_HEADER = "x-content-sha256"
#: The 421 answer's header naming the URL of the hub node holding the site (see module docstring).
HOLDER_HEADER = "X-Evalwatch-Holder"
CLOCK_SKEW = timedelta(minutes=5)
MAX_MISSING_WINDOW = timedelta(days=7)


class SegmentStoreLike(Protocol):
    async def put(self, meta: Any, data: bytes) -> Any: ...

    async def missing_ranges(
        self, site: str, room: str, camera: str, start: datetime, end: datetime, tolerance_s: float = 0.5
    ) -> list[tuple[datetime, datetime]]: ...


class LeasesLike(Protocol):
    """This node's site leases (``storage.leases.LeaseManager``)."""

    node_id: str

    def holds(self, site: str) -> bool: ...

    async def holder_url(self, site: str) -> str | None: ...


class DiskWatchLike(Protocol):
    """The hub's disk watch (``evalwatch.diskwatch.DiskWatch``): an agent's spool disk report."""

    async def agent_report(self, site: str, agent: dict[str, Any]) -> None: ...


class AgentAuthLike(Protocol):
    """Enrolled agents' credentials (``storage.agents.CredentialStore``)."""

    async def site_of(self, token: str) -> tuple[str, str] | None:
        """``(site, credential id)`` of a valid, not revoked credential; else None."""
        ...

    async def active(self, ids: set[str]) -> set[str]:
        """Those of the credential ``ids`` still valid."""
        ...


#: How often the hub checks that the credentials behind open live connections are still valid.
LIVE_SWEEP_S = 2.0


class LiveCredentials:
    """Which enrolled credential opened each camera's live connection, so that a revoked one's
    connections are closed too (:meth:`sweep`, every :data:`LIVE_SWEEP_S` while the hub runs:
    also for revocations made by another process, ``evalwatch site revoke-agent``)."""

    def __init__(self) -> None:
        self._by_cam: dict[CameraId, str] = {}

    def opened(self, ref: CameraId, credential_id: str | None) -> None:
        if credential_id:
            self._by_cam[ref] = credential_id
        else:
            self._by_cam.pop(ref, None)

    async def sweep(self, auth: AgentAuthLike, recorder: Recorder) -> list[CameraId]:
        """Close the live connections of revoked credentials; the cameras closed."""
        if not self._by_cam:
            return []
        valid = await auth.active(set(self._by_cam.values()))
        closed = []
        for ref, cred in list(self._by_cam.items()):
            if cred in valid:
                continue
            del self._by_cam[ref]
            if await recorder.disconnect(ref, "agent credential revoked"):
                log.warning("live connection closed site=%s room=%s camera=%s: credential %s revoked",
                            *_parts(ref), cred)
                closed.append(ref)
        return closed

    async def run(self, auth: AgentAuthLike, recorder: Recorder) -> None:
        while True:
            await asyncio.sleep(LIVE_SWEEP_S)
            try:
                await self.sweep(auth, recorder)
            except Exception:
                log.exception("ingest: live credential sweep failed")


class EdgeHubLike(Protocol):
    """The hub's side of edge analysis (``evalwatch.edgehub.EdgeHub``)."""

    def edge_site(self, site: str) -> bool: ...

    def sessions(self, site: str) -> tuple[int, dict[str, Any]]: ...

    async def wait_sessions(self, site: str, after: int) -> tuple[int, dict[str, Any]]: ...

    def analysis_beat(self, site: str, beat: dict[str, Any] | None) -> None: ...

    async def incident(self, site: str, upd: IncidentUpdateIn) -> IncidentStored: ...


#: Largest incident update body (a snapshot JPEG in base64 and the boxes).
INCIDENT_LIMIT = 4_000_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OfferOut(BaseModel):
    """The recorder's SDP answer."""

    sdp: str
    type: str


class SessionsOut(BaseModel):
    """The running sessions of an edge site's rooms: the seats its analysis arms."""

    version: int = Field(description="changes whenever a session of the site starts or closes")
    rooms: dict[str, Any] = Field(description="room → {session_id, seats} or null (no session)")


class HeartbeatOut(BaseModel):
    ok: bool
    server_time: str = Field(description="hub clock, ISO-8601 UTC")
    live: dict[str, bool] = Field(description="room/camera → the hub receives it live")
    full_rate: list[str] = Field(description="room/camera to send at full rate (watched enlarged)")
    sessions: SessionsOut | None = Field(default=None, description="edge-analysed sites only")
    config_version: str = Field(default="", description="digest of GET /api/ingest/config's answer")
    notices: list[NoticeOut] = Field(
        default_factory=list, description="notices for the site's rooms not reported yet (capture/notices.py)"
    )


class NoticeReported(BaseModel):
    id: int
    status: str = Field(description="shown | not_shown")


class AgentConfigOut(BaseModel):
    """What an enrolled agent runs with (instead of the hub's config file)."""

    site: str
    version: str = Field(description="digest of ``config``: changes with the hub's config of the site")
    config: dict[str, Any] = Field(
        description="an EvalwatchConfig document: hub (ICE servers), storage.segment_seconds, capture, "
        "detection, rules and this one site (no secrets of the hub, no other site)"
    )


class SegmentStored(BaseModel):
    stored: bool
    bytes: int
    sha256: str
    media_seconds: float
    id: int | None


class MissingRanges(BaseModel):
    ranges: list[tuple[str, str]] = Field(description="[start, end) ISO-8601 UTC, not archived")


class OfferIn(_Body):
    site: str = Field(min_length=1, max_length=64)
    room: str = Field(min_length=1, max_length=64)
    camera: str = Field(min_length=1, max_length=64)
    sdp: str = Field(min_length=1)
    type: str


class HeartbeatCamera(BaseModel):
    model_config = ConfigDict(extra="allow")
    room: str = Field(min_length=1, max_length=64)
    camera: str = Field(min_length=1, max_length=64)


class HeartbeatIn(_Body):
    site: str = Field(min_length=1, max_length=64)
    agent: dict[str, Any] = {}
    cameras: list[HeartbeatCamera] = Field(default=[], max_length=1000)
    analysis: dict[str, Any] | None = None


def _bad(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def parse_time(value: str | None, name: str) -> datetime:
    if not value:
        raise _bad(400, f"query parameter '{name}' is required (ISO 8601 UTC time)")
    try:
        return common.parse_time(value.replace(" ", "+"))  # a "+" in a query string reads as " "
    except common.NoTimezone:
        raise _bad(400, f"'{name}' must carry a UTC offset (e.g. ...Z): {value[:64]!r}") from None
    except ValueError:
        raise _bad(400, f"'{name}' is not an ISO 8601 time: {value[:64]!r}") from None


#: How far a segment's declared duration may be from its media's: the agent's segmenter starts a
#: contiguous segment at the wall-clock boundary (its first frame up to ~0.5 s or 3 frames later)
#: and ends it at the next one, so a few frame intervals on each side are normal.
DURATION_TOLERANCE_S = 2.0
DURATION_TOLERANCE_FRACTION = 0.25


def duration_tolerance(declared_s: float) -> float:
    return max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * declared_s)


def probe_segment(data: bytes) -> tuple[str | None, float]:
    """Return (problem, media duration s); problem is None for a playable H.264 MP4.  The
    duration runs from the first frame's timestamp to the end of the last frame."""
    if len(data) < 8 or data[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "segment is not an MP4 file (no ISO BMFF box at offset 0)", 0.0
    try:
        with av.open(io.BytesIO(data), mode="r") as c:
            if "mp4" not in c.format.name:
                return f"segment container is {c.format.name!r}, expected mp4", 0.0
            if not c.streams.video:
                return "segment MP4 has no video stream", 0.0
            st = c.streams.video[0]
            if st.codec_context.name != "h264":
                return f"segment video codec is {st.codec_context.name!r}, expected h264", 0.0
            n, first_key, t0, t1 = 0, False, None, None
            for pkt in c.demux(st):
                if pkt.size == 0:
                    continue
                if n == 0:
                    first_key = bool(pkt.is_keyframe)
                n += 1
                if pkt.pts is not None and pkt.time_base is not None:
                    t = float(pkt.pts * pkt.time_base)
                    t_end = t + float((pkt.duration or 0) * pkt.time_base)
                    t0 = t if t0 is None else min(t0, t)
                    t1 = t_end if t1 is None else max(t1, t_end)
            if n == 0:
                return "segment MP4 has no video frames", 0.0
            if not first_key:
                return "segment does not start with a keyframe", 0.0
            return None, (t1 - t0) if t0 is not None and t1 is not None else 0.0
    except (av.FFmpegError, ValueError, OSError) as e:
        return f"segment is not a readable MP4: {e}", 0.0


def agent_config(cfg: EvalwatchConfig, site_id: str) -> AgentConfigOut:
    """The agent-side configuration of ``site_id`` (KeyError: no such site)."""
    site = cfg.site(site_id).model_copy(update={"agent_token": None})
    doc: dict[str, Any] = {
        "hub": {
            "public_url": cfg.hub.url, "ice_interfaces": cfg.hub.ice_interfaces,
            "stun_urls": cfg.hub.stun_urls, "turn_urls": cfg.hub.turn_urls, "timezone": cfg.hub.timezone,
        },
        "storage": {"segment_seconds": cfg.storage.segment_seconds},
        "capture": cfg.capture.model_dump(mode="json"),
        "detection": cfg.detection.model_dump(mode="json"),
        "rules": cfg.rules.model_dump(mode="json"),
        "sites": [site.model_dump(mode="json")],
        "secrets_file": None,
    }
    version = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return AgentConfigOut(site=site_id, version=version, config=doc)


def make_router(
    recorder: Recorder,
    segment_store: SegmentStoreLike,
    cfg: EvalwatchConfig,
    edge: EdgeHubLike | None = None,
    disks: DiskWatchLike | None = None,
    *,
    agent_auth: AgentAuthLike | None = None,
    monitor: AgentMonitor | None = None,
    live_credentials: LiveCredentials | None = None,
    leases: LeasesLike | None = None,
    notices: RoomNotices | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/api/ingest", tags=["ingest"])
    json_limit = cfg.hub.max_body_bytes
    # A segment at 4x the configured bitrate still fits; never below the general body limit.
    seg_limit = max(
        cfg.hub.max_body_bytes,
        int(4 * cfg.capture.bitrate_kbps * 1000 / 8 * cfg.storage.segment_seconds) + 64 * 1024,
    )
    max_seg_seconds = cfg.storage.segment_seconds * 1.5 + 1.0

    configs = {site.id: agent_config(cfg, site.id) for site in cfg.sites}

    async def authenticate(request: Request) -> str:
        """The site of the request's credential (401 otherwise); an enrolled credential's id is
        left in ``request.state.agent_credential`` (None for a secrets-file token)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _bad(401, "missing 'Authorization: Bearer <site agent token>' header")
        presented = token.strip()
        request.state.agent_credential = None
        if agent_auth is not None and presented.startswith(CREDENTIAL_PREFIX):
            try:
                found = await agent_auth.site_of(presented)
            except Exception:
                log.exception("ingest: credential lookup failed")
                raise _bad(503, "credential check unavailable, retry later") from None
            if found is None:
                log.warning("ingest: rejected unknown or revoked agent credential from %s", _peer(request))
                raise _bad(401, "invalid or revoked agent credential (enrol the agent again)")
            if found[0] not in configs:
                raise _bad(403, f"site {found[0]!r} of this credential is not in the hub configuration")
            request.state.agent_credential = found[1]
            return found[0]
        matched: str | None = None
        for site in cfg.sites:
            secret = site.agent_token.get_secret_value().encode() if site.agent_token else b""
            # compare against every site (no early exit) so timing does not reveal which matched
            if secret and hmac.compare_digest(secret, presented.encode()):
                matched = site.id
        if matched is None:
            log.warning("ingest: rejected invalid agent token from %s", _peer(request))
            raise _bad(401, "invalid agent token")
        return matched

    def not_holder(site: str, holder: str | None, why: str) -> HTTPException:
        log.info("ingest: site=%s is not held by this node (%s); holder=%s", site, why, holder or "none")
        return HTTPException(
            status_code=421,
            detail=f"this hub node does not hold site {site!r} ({why}); "
            + (f"its holder is {holder}" if holder else "it is being reassigned, ask again"),
            headers={HOLDER_HEADER: holder or ""},
        )

    async def require_lease(site: str) -> None:
        """421 with the holder's URL unless this node holds the site's lease."""
        if leases is None or leases.holds(site):
            return
        try:
            holder = await leases.holder_url(site)
        except Exception:
            log.exception("ingest: lease holder lookup failed site=%s", site)
            raise _bad(503, "lease table unavailable, retry later") from None
        raise not_holder(site, holder, f"node {leases.node_id}")

    def authorize(site_of_token: str, ref: CameraId) -> None:
        if ref.site != site_of_token:
            log.warning("ingest: agent of site=%s tried to publish for %s", site_of_token, ref)
            raise _bad(403, f"this agent token belongs to site {site_of_token!r}, not {ref.site!r}")
        if not recorder.known(ref):
            raise _bad(403, f"unknown camera {ref} (not in the hub configuration)")

    async def read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise _bad(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
            except ValueError:
                raise _bad(400, "invalid Content-Length header") from None
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise _bad(413, f"body exceeds the limit of {limit} bytes")
        return bytes(buf)

    def parse_json(raw: bytes, model: type[BaseModel]) -> Any:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _bad(400, f"body is not valid JSON: {e}") from None
        try:
            return model.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
            )
            raise _bad(
                400, f"invalid {model.__name__.removesuffix('In').lower()} request: {problems}"
            ) from None

    @router.post("/offer", response_model=OfferOut)
    async def offer(request: Request) -> JSONResponse:
        site = await authenticate(request)
        body: OfferIn = parse_json(await read_body(request, json_limit), OfferIn)
        ref = CameraId(body.site, body.room, body.camera)
        authorize(site, ref)
        await require_lease(site)
        try:
            answer = await recorder.handle_offer(ref, body.sdp, body.type)
        except OfferError as e:
            log.info("ingest: rejected offer site=%s room=%s camera=%s: %s", *_parts(ref), e)
            raise _bad(400, str(e)) from None
        if live_credentials is not None:
            live_credentials.opened(ref, request.state.agent_credential)
        return JSONResponse(OfferOut(sdp=answer.sdp, type=answer.type).model_dump())

    @router.post("/heartbeat", response_model=HeartbeatOut)
    async def heartbeat(request: Request) -> JSONResponse:
        site = await authenticate(request)
        received = datetime.now(UTC)
        body: HeartbeatIn = parse_json(await read_body(request, json_limit), HeartbeatIn)
        if body.site != site:
            raise _bad(403, f"this agent token belongs to site {site!r}, not {body.site!r}")
        await require_lease(site)
        cams = [c.model_dump() for c in body.cameras]
        recorder.heartbeat(site, cams)
        if monitor is not None:
            cred = request.state.agent_credential
            seen = monitor.beat(site, cred, body.agent, cams, received, _peer(request))
            if seen.clock_newly_off:
                log.warning("agent clock off by more than %.0f s site=%s host=%s offset=%.1fs", CLOCK_FLAG_S,
                            site, seen.host, seen.clock_offset_s)
        if disks is not None:  # the agent's spool disk: disk_full alert while it is low
            await disks.agent_report(site, body.agent)
        live = {
            f"{c.room}/{c.camera}": recorder.is_live(CameraId(site, c.room, c.camera)) for c in body.cameras
        }
        # Cameras somebody watches enlarged: the agent sends them at full rate until dropped here.
        full_rate = [
            f"{c.room}/{c.camera}"
            for c in body.cameras
            if recorder.wants_full_rate(CameraId(site, c.room, c.camera))
        ]
        sessions: SessionsOut | None = None
        if edge is not None and edge.edge_site(site):
            edge.analysis_beat(site, body.analysis)
            version, rooms = edge.sessions(site)
            sessions = SessionsOut(version=version, rooms=rooms)
        pending = await notices.pending(site) if notices is not None else []
        out = HeartbeatOut(
            ok=True, server_time=datetime.now(UTC).isoformat(), live=live, full_rate=full_rate,
            sessions=sessions, config_version=configs[site].version, notices=pending,
        )
        return JSONResponse(out.model_dump())

    @router.post("/notices/{notice_id}", response_model=NoticeReported)
    async def notice_report(request: Request, notice_id: int) -> JSONResponse:
        """The agent showed (or could not show) a notice in the room (capture/notices.py)."""
        site = await authenticate(request)
        body: NoticeReportIn = parse_json(await read_body(request, json_limit), NoticeReportIn)
        if body.site != site:
            raise _bad(403, f"this agent token belongs to site {site!r}, not {body.site!r}")
        if notices is None:
            raise _bad(404, "this hub takes no room notices")
        doc = await notices.report(site, notice_id, body)
        if doc is None:
            raise _bad(404, f"no notice {notice_id} for room {body.room!r} of site {site!r}")
        return JSONResponse(NoticeReported(id=notice_id, status=doc["status"]).model_dump())

    def edge_of(site: str) -> EdgeHubLike:
        if edge is None or not edge.edge_site(site):
            raise _bad(409, f"site {site!r} is analysed by the hub (analysis: hub), not by its agent")
        return edge

    @router.post("/incidents", response_model=IncidentStored)
    async def incidents(request: Request) -> JSONResponse:
        site = await authenticate(request)
        body: IncidentUpdateIn = parse_json(await read_body(request, INCIDENT_LIMIT), IncidentUpdateIn)
        ref = CameraId(body.site, body.room, body.camera)
        authorize(site, ref)
        await require_lease(site)
        hub = edge_of(site)
        now = datetime.now(UTC)
        for name in ("started_at", "ended_at"):
            t = getattr(body, name)
            if t is not None and t > now + CLOCK_SKEW:
                raise _bad(400, f"incident {name} {t.isoformat()} is in the future (check the agent's clock)")
        if body.ended_at is not None and body.ended_at < body.started_at:
            raise _bad(400, "incident ended_at is before started_at")
        if (body.action == "closed") != (body.ended_at is not None):
            raise _bad(400, "incident ended_at must be set exactly when action is 'closed'")
        try:
            stored = await hub.incident(site, body)
        except Exception:
            log.exception("ingest: incident not stored site=%s room=%s camera=%s uid=%s",
                          *_parts(ref), body.uid)
            raise _bad(503, "incident store unavailable, retry later") from None
        log.info(
            "incident %s from agent site=%s room=%s camera=%s rule=%s seat=%s uid=%s seq=%d id=%d"
            " applied=%s",
            body.action, site, body.room, body.camera, body.rule, body.seat, body.uid, body.seq, stored.id,
            stored.applied,
        )
        return JSONResponse(stored.model_dump())

    @router.get("/sessions", response_model=SessionsOut)
    async def sessions_route(request: Request, site: str = "", after: int = -1) -> JSONResponse:
        token_site = await authenticate(request)
        if site != token_site:
            raise _bad(403, f"this agent token belongs to site {token_site!r}, not {site!r}")
        await require_lease(site)
        version, rooms = await edge_of(site).wait_sessions(site, after)
        return JSONResponse(SessionsOut(version=version, rooms=rooms).model_dump())

    @router.get("/config", response_model=AgentConfigOut)
    async def config_route(request: Request, site: str = "") -> JSONResponse:
        token_site = await authenticate(request)
        if site and site != token_site:
            raise _bad(403, f"this agent token belongs to site {token_site!r}, not {site!r}")
        log.info("agent config sent site=%s credential=%s version=%s", token_site,
                 request.state.agent_credential or "token", configs[token_site].version)
        return JSONResponse(configs[token_site].model_dump())

    @router.put("/segments/{site}/{room}/{camera}", response_model=SegmentStored)
    async def put_segment(
        request: Request,
        site: str,
        room: str,
        camera: str,
        start: str | None = None,
        end: str | None = None,
        source: Literal["live", "backfill"] = "live",
    ) -> JSONResponse:
        token_site = await authenticate(request)
        ref = CameraId(site, room, camera)
        authorize(token_site, ref)
        await require_lease(site)
        t0, t1 = parse_time(start, "start"), parse_time(end, "end")
        if t1 <= t0:
            raise _bad(400, f"segment end {t1.isoformat()} is not after start {t0.isoformat()}")
        if (t1 - t0).total_seconds() > max_seg_seconds:
            raise _bad(
                400, f"segment of {(t1 - t0).total_seconds():.1f}s is longer than {max_seg_seconds:.1f}s"
            )
        if t1 > datetime.now(UTC) + CLOCK_SKEW:
            raise _bad(400, f"segment end {t1.isoformat()} is in the future (check the agent's clock)")
        digest = request.headers.get(SHA_HEADER, "").strip().lower()
        if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise _bad(400, "header X-Content-SHA256 (hex sha256 of the body) is required")
        data = await read_body(request, seg_limit)
        if not data:
            raise _bad(400, "empty segment body")
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
            raise _bad(400, "body does not match X-Content-SHA256 (corrupted upload)")
        problem, media_s = await asyncio.to_thread(probe_segment, data)
        declared = (t1 - t0).total_seconds()
        if not problem and abs(media_s - declared) > duration_tolerance(declared):
            # Finding 4 of #12: the declared times must be what the media holds (a 1 s clip
            # must not claim to cover 15 s, nor a long one hide in a short slot).
            problem = (
                f"segment declares {declared:.2f}s ({t0.isoformat()}..{t1.isoformat()}) but its video "
                f"lasts {media_s:.2f}s (tolerance {duration_tolerance(declared):.2f}s)"
            )
        if problem:
            log.warning("ingest: rejected segment site=%s room=%s camera=%s: %s", *_parts(ref), problem)
            raise _bad(400, problem)
        try:
            meta = SegmentMeta(
                site=site, room=room, camera=camera, start=t0, end=t1, content_type="video/mp4", source=source
            )
        except ValueError as e:
            raise _bad(400, f"invalid segment metadata: {e}") from None
        try:
            record = await segment_store.put(meta, data)
        except Exception as e:
            if isinstance(e, LeaseLost):  # the database refused the append: the site moved
                raise not_holder(site, e.holder, "its lease moved to another node") from None
            if isinstance(e, SegmentRefused):  # a sealed session's window (audited by the store)
                log.warning("ingest: refused segment site=%s room=%s camera=%s: %s", *_parts(ref), e)
                raise _bad(409, str(e)) from None
            if isinstance(e, SegmentConflict):
                log.warning("ingest: conflicting segment site=%s room=%s camera=%s: %s", *_parts(ref), e)
                raise _bad(
                    409, f"a different segment is already archived at {ref} {t0.isoformat()}"
                ) from None
            if isinstance(e, ValueError):
                raise _bad(400, f"segment refused by storage: {e}") from None
            if isinstance(e, WalFull):  # the agent keeps the segment and retries (5xx)
                raise _bad(507, str(e)) from None
            log.exception("ingest: storage failed site=%s room=%s camera=%s", *_parts(ref))
            raise _bad(503, "storage unavailable, retry later") from None
        recorder.note_segment(ref, t0, t1, len(data))
        log.info(
            "segment stored site=%s room=%s camera=%s start=%s end=%s bytes=%d source=%s",
            site,
            room,
            camera,
            t0.isoformat(),
            t1.isoformat(),
            len(data),
            source,
        )
        stored = SegmentStored(
            stored=True, bytes=len(data), sha256=digest, media_seconds=round(media_s, 3),
            id=getattr(record, "id", None),
        )
        return JSONResponse(stored.model_dump())

    @router.get("/missing", response_model=MissingRanges)
    async def missing(
        request: Request,
        site: str = "",
        room: str = "",
        camera: str = "",
        since: str | None = None,
        until: str | None = None,
    ) -> JSONResponse:
        token_site = await authenticate(request)
        if not (site and room and camera):
            raise _bad(400, "query parameters 'site', 'room' and 'camera' are required")
        ref = CameraId(site, room, camera)
        authorize(token_site, ref)
        t0 = parse_time(since, "since")
        t1 = parse_time(until, "until") if until else datetime.now(UTC)
        # Footage past its retention is never asked back: the purge deleted it (storage/retention).
        t0 = max(t0, datetime.now(UTC) - timedelta(days=cfg.storage.retention_days))
        if t1 <= t0:
            return JSONResponse(MissingRanges(ranges=[]).model_dump())
        if t1 - t0 > MAX_MISSING_WINDOW:
            raise _bad(400, f"'since'..'until' spans more than {MAX_MISSING_WINDOW.days} days")
        try:
            ranges = await segment_store.missing_ranges(site, room, camera, t0, t1)
        except Exception:
            log.exception("ingest: missing-ranges query failed site=%s room=%s camera=%s", *_parts(ref))
            raise _bad(503, "storage unavailable, retry later") from None
        out = MissingRanges(ranges=[(a.isoformat(), b.isoformat()) for a, b in ranges])
        return JSONResponse(out.model_dump())

    return router


def _parts(ref: CameraId) -> tuple[str, str, str]:
    return ref.as_tuple()


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
