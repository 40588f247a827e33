"""The evalwatch configuration tree: one pydantic model, loaded from YAML.

Every field has a default where one makes sense, so a minimal file names only sites, rooms, cameras
and seats.  Validation is strict (unknown keys are errors) because a typo in a supervision config
silently disables a rule otherwise.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Slug = Annotated[str, Field(pattern=SLUG, description="lower-case id: letters, digits, '-', '_'")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- rooms, cameras, seats -------------------------------------------------------------------


class SeatConfig(_Strict):
    """One evaluator seat, as seen by one camera.

    The polygon is in normalised image coordinates (0..1, origin top-left).  A detected person
    belongs to the seat whose polygon contains the lower centre of their box.
    """

    id: Annotated[str, Field(min_length=1, max_length=64)]
    camera: str | None = None
    polygon: list[tuple[float, float]]
    row: int | None = None
    col: int | None = None

    @field_validator("polygon")
    @classmethod
    def _polygon_inside_image(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(pts) < 3:
            raise ValueError(f"needs at least 3 points, got {len(pts)}")
        for x, y in pts:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x:g}, {y:g}) outside 0..1")
        if abs(_signed_area(pts)) < 1e-6:
            raise ValueError("polygon has zero area")
        return pts


def _signed_area(pts: list[tuple[float, float]]) -> float:
    return 0.5 * sum(
        x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True)
    )


class CameraConfig(_Strict):
    """A camera in a room.  ``source`` is what the site agent reads.

    ``source`` forms: a video file path (played in real time and looped — the demo and tests),
    ``rtsp://`` / ``http(s)://`` URL, or ``device:N`` for a local capture device.
    """

    id: Slug
    name: str | None = None
    source: str = ""
    width: Annotated[int, Field(ge=64, le=4096)] = 640
    height: Annotated[int, Field(ge=64, le=4096)] = 480
    fps: Annotated[float, Field(gt=0, le=60)] = 15.0
    loop: bool = True
    # RTSP sources: TCP interleaved is robust through firewalls and NAT; UDP has less latency.
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("source")
    @classmethod
    def _source_form(cls, v: str) -> str:
        if v.startswith("device:") and not re.fullmatch(r"device:\d+", v):
            raise ValueError(f"device source must look like 'device:0', got {v!r}")
        return v


class RoomConfig(_Strict):
    """An evaluation room: its cameras and its seats (the ``--room`` file of ``evalwatch analyze``)."""

    id: Slug
    name: str | None = None
    cameras: Annotated[list[CameraConfig], Field(min_length=1)]
    seats: list[SeatConfig] = []

    @model_validator(mode="after")
    def _seats_reference_cameras(self) -> RoomConfig:
        cam_ids = [c.id for c in self.cameras]
        _no_duplicates(cam_ids, "camera")
        _no_duplicates([s.id for s in self.seats], "seat")
        for i, seat in enumerate(self.seats):
            if seat.camera is None:
                if len(cam_ids) > 1:
                    raise ValueError(
                        f"seats[{i}] ({seat.id}): 'camera' is required when the room has "
                        f"{len(cam_ids)} cameras"
                    )
                seat.camera = cam_ids[0]
            elif seat.camera not in cam_ids:
                raise ValueError(
                    f"seats[{i}] ({seat.id}): camera {seat.camera!r} is not one of {cam_ids}"
                )
        return self

    def seats_for(self, camera_id: str) -> list[SeatConfig]:
        return [s for s in self.seats if s.camera == camera_id]


#: Shortest ``hub.secret_key`` / ``sites[].agent_token`` accepted (#12 finding 12): generated
#: ones (the secrets file) are 32 random bytes, URL-safe.
MIN_SECRET_CHARS = 16


def _long_secret(v: SecretStr | None, what: str) -> SecretStr | None:
    if v is not None and len(v.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(f"{what} must be at least {MIN_SECRET_CHARS} characters (leave it out of the "
                         "YAML to have a random one generated into the secrets file)")
    return v


#: The incident rules a notification target may name (``analysis.events.RULES`` and the hub's own
#: checks); ``"*"`` names every rule.
NOTIFY_RULES = (
    "extra_person", "phone", "seat_empty", "camera_tamper", "camera_offline",
    "analysis_mismatch", "analysis_offline", "disk_full",
)


class NotifyTargetConfig(_Strict):
    """One way to reach the people of a site (docs/notifications.md): a generic webhook (JSON,
    HMAC-SHA256 signed), a WeCom or DingTalk group robot, or e-mail through ``notifications.smtp``.

    ``rules`` are the incident rules it is told about (``"*"``: all; empty: none) — when an
    incident of one opens; ``warnings`` adds the early warnings of its site (and the hub-wide
    ones).  ``secret``: the webhook's HMAC key (generated into the secrets file as
    ``sites.<site>.notify.<id>.secret`` when left out), or a DingTalk robot's signing secret
    ("加签", ``SEC...``; read from the secrets file under the same name when left out).
    """

    #: Name in the delivery log and the secrets file; default ``<channel>-<n>`` (n from 1, in order).
    id: Slug | None = None
    channel: Literal["webhook", "wecom", "dingtalk", "email"]
    #: webhook / wecom / dingtalk: the http(s) URL to POST to (the robots' URLs carry their token:
    #: masked in the delivery log and in /api/config).
    url: str | None = None
    #: email: the recipients.
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = []
    secret: SecretStr | None = None
    rules: list[str] = []
    warnings: bool = False

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: list[str]) -> list[str]:
        for r in v:
            if r != "*" and r not in NOTIFY_RULES:
                raise ValueError(f"unknown rule {r!r}; one of {', '.join(NOTIFY_RULES)} or '*'")
        return v

    @model_validator(mode="after")
    def _fields_of_channel(self) -> NotifyTargetConfig:
        if self.channel == "email":
            if not self.to:
                raise ValueError("channel email needs 'to' (one or more addresses)")
            if self.url is not None:
                raise ValueError("channel email takes 'to', not 'url'")
        else:
            if not self.url or not re.match(r"^https?://[^/\s]+", self.url):
                raise ValueError(f"channel {self.channel} needs 'url': an http:// or https:// URL")
            if self.to:
                raise ValueError(f"channel {self.channel} takes 'url', not 'to'")
        if self.secret is not None and self.channel in ("wecom", "email"):
            raise ValueError(f"channel {self.channel} takes no 'secret'")
        return self


class SiteConfig(_Strict):
    """A remote evaluation site (one building / one agent credential)."""

    id: Slug
    name: str | None = None
    # Per-site agent credential.  Normally left out of the YAML and kept in the secrets file.
    agent_token: SecretStr | None = None
    rooms: list[RoomConfig] = []

    @field_validator("agent_token")
    @classmethod
    def _token_length(cls, v: SecretStr | None) -> SecretStr | None:
        return _long_secret(v, "agent_token")
    # Where this site's cameras are analysed: ``agent`` — the room PC runs the analysis on its own
    # decoded frames and sends incident updates (store-and-forward); the hub checks it on sampled
    # live frames.  ``hub`` — the hub analyses the live streams itself.
    analysis: Literal["agent", "hub"] = "agent"
    # Edge sites: frames per second per camera the hub's own check analyses (the pipeline lowers it
    # further when the CPU is short; round robin, newest frame).
    analysis_check_fps: Annotated[float, Field(gt=0, le=30)] = 0.5
    # Edge sites: an incident the hub's check opens that the agent has not reported within this
    # many seconds raises ``analysis_mismatch`` on the camera.
    analysis_mismatch_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Edge sites: no analysis progress in the agent's heartbeats for this long while the camera's
    # video reaches the hub raises ``analysis_offline``.
    analysis_offline_seconds: Annotated[float, Field(gt=0)] = 15.0
    # How this site's agent trusts the hub over HTTPS (capture/tls.py): the SHA-256 of the hub's
    # certificate (pinned: exactly that certificate, e.g. a self-signed one; ``evalwatch tls
    # fingerprint hub.crt`` prints it) and/or a CA file to verify it against.  Neither: the
    # system's trust store.  ``evalwatch agent --hub-cert-sha256 / --hub-ca`` override them.
    hub_cert_sha256: str | None = None
    hub_ca_file: str | None = None
    # Several hub nodes (docs/deploy.md, issue #14): every hub URL this site's agents may talk
    # to.  The agent asks them in turn; a node that does not hold the site answers 421 with the
    # holder's URL, which the agent follows.  Empty (default): the one hub (``hub.public_url`` /
    # ``--hub-url``).
    hub_urls: list[str] = []

    @field_validator("hub_urls")
    @classmethod
    def _hub_urls(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for u in v:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", u.strip()):
                raise ValueError(f"{u!r} is not an http(s):// URL")
            if u.strip().rstrip("/") not in out:
                out.append(u.strip().rstrip("/"))
        return out

    # Who at the site is told about its incidents and warnings, and how (docs/notifications.md).
    notify: list[NotifyTargetConfig] = []

    @field_validator("hub_cert_sha256")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        h = v.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
        if not re.fullmatch(r"[0-9a-f]{64}", h):
            raise ValueError(f"{v!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
        return h

    @model_validator(mode="after")
    def _unique_rooms(self) -> SiteConfig:
        _no_duplicates([r.id for r in self.rooms], "room")
        for i, target in enumerate(self.notify):
            if target.id is None:
                target.id = f"{target.channel}-{i + 1}"
        _no_duplicates([t.id or "" for t in self.notify], "notify")
        return self


def _no_duplicates(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"duplicate {what} id {i!r}")
        seen.add(i)


# --- services ------------------------------------------------------------------------------


_HOST_PATTERN = re.compile(r"\.?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")


class HubConfig(_Strict):
    listen_host: str = "127.0.0.1"
    listen_port: Annotated[int, Field(ge=1, le=65535)] = 8800
    # URL agents and browsers use to reach the hub; defaults to http://listen_host:listen_port.
    public_url: str | None = None
    secret_key: SecretStr | None = None
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    # Addresses aioice may gather ICE candidates on.  Loopback is skipped by aioice by default.
    ice_interfaces: list[str] = ["127.0.0.1"]
    stun_urls: list[str] = []
    turn_urls: list[str] = []
    timezone: str = "Asia/Shanghai"
    # This node's name among several hubs on one PostgreSQL database (cross-node alerts skip a
    # node's own notifications by it); unset: <hostname>-<pid>.  Unique per running node.
    node_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    # How long an agent enrolment code (``evalwatch site enroll-code``) stays valid.
    enroll_code_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For the hub believes; the
    # client's address (throttling, audit) is then the last one before them.  Empty (default):
    # X-Forwarded-For is ignored, whoever sends it — also from 127.0.0.1.
    trusted_proxies: list[str] = []
    # Accounts seeded from ``users:`` must choose a new password at their first login before the
    # API lets them do anything else (403 ``err.password_change_required``).  The demo config
    # sets false so that the logins ``make run`` prints keep working.
    force_password_change: bool = True
    # Host names the hub answers to (finding 12 of #12, DNS rebinding; dashboard/hosts.py).  Any
    # other ``Host`` header is a 400 ``err.bad_host``, also on WebSocket upgrades.  IP literals
    # are always allowed (they cannot be rebound).  Unset (default): ``localhost``/``*.localhost``,
    # the host of ``public_url``, ``listen_host`` when it is a name, and this machine's host name
    # and FQDN.  Entries: exact names, ``.example.org`` (the domain and its subdomains), or ``*``
    # (no check: only behind a proxy that checks Host itself).
    allowed_hosts: list[str] | None = None
    # Per-user caps (finding 13 of #12): open alert WebSockets (``/ws/events``, one per tab) and
    # live WebRTC streams (the wall's enlarged camera; grid tiles are JPEG thumbnails).  One more
    # is refused with 429 ``err.too_many_connections`` naming the cap.
    max_ws_per_user: Annotated[int, Field(ge=1, le=10_000)] = 16
    max_live_per_user: Annotated[int, Field(ge=1, le=10_000)] = 8
    # A stop (SIGTERM, Ctrl-C) waits at most this long for open requests to finish before it
    # cancels them (uvicorn's ``timeout_graceful_shutdown``).  The hub's own long-lived answers
    # do not count against it: alert WebSockets are closed (1012) and agents' session long polls
    # answered at once when the stop begins (issue #17).
    shutdown_grace_s: Annotated[int, Field(ge=1, le=300)] = 5

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty list would refuse every request; leave it unset for the default")
        for item in v:
            if item != "*" and not _HOST_PATTERN.fullmatch(item):
                raise ValueError(
                    f"{item!r} is not a host name, a '.domain' pattern or '*' (no scheme, port or path)"
                )
        return v

    @field_validator("secret_key")
    @classmethod
    def _key_length(cls, v: SecretStr | None) -> SecretStr | None:
        return _long_secret(v, "secret_key")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return v

    # HTTPS: PEM certificate (chain) and private key the hub serves with (``evalwatch tls
    # self-signed`` or ``evalwatch hub --self-signed`` makes a pair for a demo).  Both or neither.
    # Behind a TLS-terminating reverse proxy leave them unset and set ``public_url: https://…``
    # (docs/deploy.md, "TLS and reverse proxy").
    tls_cert: str | None = None
    tls_key: str | None = None
    # Site leases (storage/leases.py, issue #14): every node renews the leases of the sites it
    # ingests this often; a lease not renewed for ``lease_ttl_seconds`` (the database's clock)
    # expires and a surviving node takes the site.  The renewal period must be at most half the
    # TTL.  With SQLite the one hub holds every lease.
    lease_ttl_seconds: Annotated[float, Field(ge=1, le=600)] = 15.0
    lease_renew_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # The hub's log file (relative: to the config file), rotated by size: ``log_max_mb`` per
    # file, ``log_backups`` old files kept (``hub.log.1`` ...), so a hub running for months keeps
    # at most (1 + log_backups) x log_max_mb of logs.  Unset: stderr (the journal / the console;
    # ``evalwatch run`` sets ``<storage.data_dir>/logs/hub.log``).  The agent's ``--log-file``
    # rotates the same way (``capture.hostos.log_handler``).
    log_file: str | None = None
    log_max_mb: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    log_backups: Annotated[int, Field(ge=1, le=1000)] = 5
    # Every this many seconds the hub gives the native memory its threads freed back to the
    # system (glibc ``malloc_trim(0)``, ``evalwatch.memtrim``): without it the allocator's
    # arenas keep what FFmpeg / onnxruntime / aiortc freed and RSS creeps up (issue #17).
    # 0: off.  Linux/glibc only; elsewhere ignored.
    malloc_trim_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # Native allocations of this many KiB or more (decoded frames, detector tensors) get their
    # own mapping, returned to the system when freed, instead of growing glibc's thread arenas
    # (``mallopt`` M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, set at the hub's start; issue #17).
    # 0: glibc's default (a threshold that rises to 32 MiB).  Linux/glibc only.
    malloc_mmap_threshold_kb: Annotated[int, Field(ge=0, le=32 * 1024)] = 128

    @model_validator(mode="after")
    def _tls_pair(self) -> HubConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"hub.tls_cert and hub.tls_key go together: {missing} is missing")
        if self.lease_renew_seconds * 2 > self.lease_ttl_seconds:
            raise ValueError(
                f"hub.lease_renew_seconds ({self.lease_renew_seconds}) must be at most half of "
                f"hub.lease_ttl_seconds ({self.lease_ttl_seconds})"
            )
        return self

    @property
    def tls(self) -> bool:
        """The hub itself serves HTTPS."""
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return self.public_url or f"{scheme}://{self.listen_host}:{self.listen_port}"

    @property
    def https(self) -> bool:
        """Browsers reach the hub over HTTPS (its own TLS, or a proxy's: ``public_url``)."""
        return self.url.startswith("https://")


class EmbeddedS3Config(_Strict):
    """The SeaweedFS server evalwatch starts itself when ``storage.s3.embedded`` is true."""

    master_port: int = 9333
    volume_port: int = 8080
    filer_port: int = 8888
    dir: str = "data/seaweedfs"
    # SeaweedFS's own logs (glog) go to ``<dir>/logs`` (``weed -logdir``), rotated by size: files
    # of at most ``log_max_mb`` (``-log_max_size_mb``), ``log_files`` kept per severity
    # (``-log_max_files``: INFO, WARNING, ERROR).  ``<dir>/weed.log`` keeps only what the server
    # prints outside glog (errors, a crash); it is rotated at start once above ``log_max_mb``.
    log_max_mb: Annotated[int, Field(ge=1, le=10_000)] = 10
    log_files: Annotated[int, Field(ge=1, le=1000)] = 5
    # Go's soft memory limit for the server (``GOMEMLIMIT``, MiB; 0: none).  Without one its Go
    # heap grew ~6 MB/min in the soak (issue #17); near the limit Go collects more often and
    # returns memory (it costs CPU then: docs/benchmarks.md "Soak").  A ``GOMEMLIMIT`` in the
    # hub's environment wins.
    go_memory_limit_mb: Annotated[int, Field(ge=0, le=1_000_000)] = 384
    # How long a stop waits for the server to exit by itself after SIGTERM before it is killed
    # (issue #17).  ``weed server`` 4.48 cannot exit sooner than ~15 s: its filer waits that long
    # (hard-coded) for the gRPC metadata subscriptions the server holds to itself (its S3 gateway's
    # and the filer's own) before it closes its store and the volume server syncs and closes its
    # volumes; the default lets it finish that way.  Lower it for quicker stops at the price of a
    # SIGKILL (what SeaweedFS acknowledged is in the OS's page cache already: a kill loses no
    # object, but skips the store's close and the volumes' final fsync).
    stop_grace_s: Annotated[float, Field(gt=0, le=600)] = 20.0


class S3Config(_Strict):
    """Any S3 endpoint reached through the minio client (SeaweedFS by default, MinIO, AWS...)."""

    endpoint: str = "127.0.0.1:8333"
    secure: bool = False
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    bucket_segments: str = "evalwatch-segments"
    bucket_snapshots: str = "evalwatch-snapshots"
    bucket_exports: str = "evalwatch-exports"
    # Object lock of the segments and snapshots buckets (and of every object the hub writes
    # there).  ``governance``: whoever holds these keys can still delete a version with
    # ``x-amz-bypass-governance-retention`` (the demo).  ``compliance``: nobody can, not even with
    # these keys, until the retention (``storage.retention_days``) ends — production.
    # docs/storage.md, "Object lock".
    lock_mode: Literal["governance", "compliance"] = "governance"
    # Start and stop a local SeaweedFS server with the hub.
    embedded: bool = True
    embedded_server: EmbeddedS3Config = EmbeddedS3Config()


def crontab_or_none(v: str | None) -> str | None:
    """A crontab expression of 5 fields (minute hour day month weekday), or None."""
    if v is not None and len(v.split()) != 5:
        raise ValueError(
            f"must be a crontab expression of 5 fields (minute hour day month weekday), got {v!r}"
        )
    return v


class AnchorStoreConfig(_Strict):
    """Where the signed chain heads are also written, outside the hub's reach (``storage.anchor``;
    docs/security.md "Anchoring the chain outside the hub").

    An S3 bucket with its **own** credentials, object-locked in ``lock_mode`` (``compliance``:
    not even these credentials can delete or shorten an anchor before ``retention_days``).  The
    hub's own S3 keys (``storage.s3``) must have no rights on it: run it on storage the hub's
    operators do not administer.  ``embedded: true`` (the demo) puts it on the hub's embedded
    SeaweedFS as a second identity limited to ``bucket``, with the hub's identity limited to its
    three buckets; its keys are then generated into the secrets file (``anchor.access_key``,
    ``anchor.secret_key``).  An external store needs ``endpoint`` and both keys (in the config or
    the secrets file under those names)."""

    embedded: bool = False
    endpoint: str | None = None
    secure: bool = False
    region: str = "us-east-1"
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")] = (
        "evalwatch-anchors"
    )
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    lock_mode: Literal["governance", "compliance"] = "compliance"
    # How long each anchor object is locked; null = storage.retention_days.  Anchors are tiny:
    # keeping them longer than the footage costs nothing.
    retention_days: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _where(self) -> AnchorStoreConfig:
        if not self.embedded and not self.endpoint:
            raise ValueError("endpoint: required unless embedded is true (the demo's SeaweedFS)")
        return self


class StorageConfig(_Strict):
    data_dir: str = "data"
    database_url: str = "sqlite:///data/evalwatch.db"
    # SQLite only: each open connection's page cache, KiB (``PRAGMA cache_size``; SQLite's own
    # default is 2000).  The hub keeps one connection per busy worker thread (~6) and their caches
    # fill as the database grows — 12+ MB of slow growth at 2000 (issue #17).  The dashboard's
    # queries on a year of rows take the same time at 2000, 512 and 256 (the OS caches the file;
    # docs/storage.md "Database growth").
    sqlite_cache_kb: Annotated[int, Field(ge=64, le=1024 * 1024)] = 512
    s3: S3Config = S3Config()
    # Segments wait here while the S3 server is unreachable, then upload in order.
    wal_dir: str = "data/wal"
    segment_seconds: Annotated[float, Field(gt=1, le=600)] = 10.0
    # How long footage, snapshots and chain links are kept (days after a segment ends / an
    # incident ends).  Also the default object-lock retention of the buckets the hub creates.
    retention_days: Annotated[int, Field(ge=1)] = 180
    # When the retention purge runs (crontab: minute hour day month weekday, in hub.timezone);
    # null = never on its own (``evalwatch storage purge`` still works).  See docs/storage.md.
    purge_cron: str | None = "30 3 * * *"
    # An export in progress keeps its footage from the purge at most this long (a crashed export
    # must not hold footage forever).
    export_hold_hours: Annotated[float, Field(gt=0)] = 12.0
    # Largest evidence export the dashboard writes (finding 13 of #12), counted as the footage's
    # bytes before anything is written (the zip lands in a temporary folder of the hub's disk):
    # past it the export is a 413 ``err.export_too_large`` naming this setting.  8 GiB ≈ 18 h of
    # one 1 Mbit/s camera; the ``evalwatch session export`` command is not capped.
    export_max_bytes: Annotated[int, Field(ge=1_000_000)] = 8 * 1024**3
    # Disk alerts (docs/storage.md "Full disks"): the WAL directory's and the database's disk
    # raise ``disk_full`` when less than this is free or the disk is filled above the ratio.
    disk_min_free_mb: Annotated[int, Field(ge=1)] = 1024
    disk_alert_ratio: Annotated[float, Field(gt=0, le=1)] = 0.95
    disk_check_seconds: Annotated[float, Field(gt=0)] = 30.0
    # Footage that reaches the hub after its session was sealed (a segment overlapping a closed
    # session's window: the uplink was down, or the segment straddles the close).  "archive"
    # (default): it is archived and chained like any footage -- nothing an agent recorded is lost
    # -- but never counted as sealed: the replay badge says "added after the seal" and a
    # camera-range export refuses the range.  "refuse": a 409, the agent sets it aside (no
    # footage can be added to a sealed window even by a stolen agent token, at the price of
    # losing honest late footage).  docs/security.md, finding 4.
    late_sealed_footage: Literal["archive", "refuse"] = "archive"
    # The signed chain heads of every camera are anchored at each session close and on this
    # crontab (hub.timezone; default hourly; null = only at session close): kept in the database
    # for the feed observers download (GET /api/anchors/feed) and written to ``anchor`` when set.
    anchor_cron: str | None = "0 * * * *"
    # The anchor store outside the hub (AnchorStoreConfig); null = off (only the feed).
    anchor: AnchorStoreConfig | None = None

    @model_validator(mode="after")
    def _anchor_where(self) -> StorageConfig:
        if self.anchor is not None and self.anchor.embedded and not self.s3.embedded:
            raise ValueError(
                "anchor.embedded: the demo's anchor store lives on the hub's embedded SeaweedFS, but "
                "storage.s3.embedded is false; give anchor.endpoint and its keys instead"
            )
        return self

    @field_validator("purge_cron", "anchor_cron")
    @classmethod
    def _crontab(cls, v: str | None) -> str | None:
        return crontab_or_none(v)


class CaptureConfig(_Strict):
    """Site agent behaviour."""

    spool_dir: str = "data/spool"
    spool_max_mb: Annotated[int, Field(ge=10)] = 2048
    # Keep at least this much of the spool's disk free: below it the spool evicts oldest first
    # (uploaded segments, then unsent ones) as it does at spool_max_mb, and the hub shows
    # ``disk_full`` for the site (the agent reports its disk in every heartbeat).
    spool_min_free_mb: Annotated[int, Field(ge=1)] = 256
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 5.0
    reconnect_min_seconds: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_seconds: Annotated[float, Field(gt=0)] = 30.0
    codec: Literal["h264", "vp8"] = "h264"
    bitrate_kbps: Annotated[int, Field(ge=50, le=20000)] = 250
    # Frame rate of the live stream to the hub (analysis + live view).  Below a camera's fps the
    # agent runs a second, small encoder for it (the hub's receive/decode cost scales with this
    # rate); at or above it, or null, the archive's own packets are sent (encode once).  The hub
    # raises a camera to its full rate while somebody watches it enlarged.
    live_fps: Annotated[float, Field(gt=0, le=60)] | None = 5.0


class DetectionConfig(_Strict):
    backend: Literal["onnx", "ultralytics"] = "onnx"
    # None = the ONNX models shipped in analysis/models.
    model_path: str | None = None
    person_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.4
    # Tuned on the evaluation set's dev half (docs/analysis.md): 0.3 let a dark object on a desk
    # through in dim light; the demo's phones score 0.7-0.8 on seat crops.
    phone_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.4
    analysis_fps: Annotated[float, Field(gt=0, le=30)] = 2.0
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    # Input of the whole-frame person model (CenterNet): "384x288" keeps the 4:3 of CCTV frames
    # at ~0.4x the time of "512x512" (docs/analysis.md, "Faster runtime").
    frame_input: Literal["512x512", "384x288"] = "512x512"
    # Weights of the seat-crop model (NanoDet): "int8" = its convolutions quantised (calibrated on
    # the evaluation set's dev half), ~0.7x the time (docs/analysis.md, "Faster runtime").
    crop_model: Literal["fp32", "int8"] = "fp32"
    # The engine that runs the ONNX models: "openvino" (in the base install) runs them in
    # bfloat16 on CPUs with AMX / AVX-512 BF16 (server Xeons) at ~0.6x onnxruntime's CPU per
    # camera, in float32 elsewhere; "openvino-f32" holds it at float32 (a room PC's CPU);
    # "auto" = openvino when installed, else onnxruntime (docs/analysis.md, "Faster runtime").
    runtime: Literal["auto", "onnxruntime", "openvino", "openvino-f32"] = "auto"
    # Analysis worker threads, the cameras dealt among them (None = one per CPU, at most one per
    # camera): the agent's edge analysis and the hub's live pipeline (each round's frames are
    # analysed by this many threads at once).  ``threads`` is per inference on top.
    workers: Annotated[int, Field(ge=1, le=32)] | None = None
    # Seat crops also look for people (same model call as the phones; None = off): small and
    # partly hidden people get the crop's higher resolution (dev half: seat_empty false alarms
    # 7 -> 0, extra_person 6/9 -> 8/9).
    crop_person_threshold: Annotated[float, Field(gt=0, lt=1)] | None = 0.4
    # Phone tiles (docs/analysis.md "Phones on seat crops"): each seat crop is also cut into
    # square tiles, phone_tiles rows of them (0 = off), overlapping by phone_tile_overlap, each
    # fed to the phone model at its own input size, so a phone of a high-resolution camera keeps
    # its pixels instead of being shrunk with the whole crop.  Tiles smaller than
    # phone_tile_min_px frame pixels are not cut (a 640x480 stream would only be upscaled):
    # there the seat crops work as before.  Each tile is re-detected about every
    # phone_tile_interval_s (the tiles of a camera take turns); phone_tile_threshold is the
    # phone model's floor on tiles (None = phone_threshold).  Off by default: on the dev half
    # rendered at 1280x960, phone_tiles: 2 found 3/11 phones (0/11 without) but added 2 false
    # alarms on phone-like things held at the face, at 2.3-3.6x the detector time per frame.
    # Each seat crop is re-detected about every seat_check_s seconds (a whole number of analysed
    # frames, at least one; the seats of a camera take turns); in between its last phones and
    # people are reused.  0.5 = every analysed frame at analysis_fps 2, so each seat is
    # re-detected at least once a second even when a frame comes late (issue #11: with 1.0, the
    # default until 2026-12-07, 4 cameras on one agent gave p95 1.26-1.52 s between two checks
    # of a seat; with 0.5, 0.92 s, at +1.4 points of a core per camera with OpenVINO; recall on
    # the dev half unchanged, docs/analysis.md).
    seat_check_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    # Per-seat motion gate (off by default): a seat crop due for re-detection is skipped while
    # that seat's part of the picture is unchanged since its last detection (the frame gate's
    # test on a 32x32 thumbnail of the crop) and that detection is younger than
    # rules.recheck_seconds; its last phones and people are reused.  Off, every seat is
    # re-detected every second whatever happens (the edge's "seat re-checked each second");
    # on, still seats are re-detected every recheck_seconds: for a hub that analyses many
    # cameras itself (docs/analysis.md "Faster runtime": ~0.2-0.3x fewer seat crops on the
    # demo and dev clips, recall on dev unchanged).
    seat_motion_gate: bool = False
    phone_tiles: Annotated[int, Field(ge=0, le=4)] = 0
    phone_tile_overlap: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    phone_tile_min_px: Annotated[int, Field(ge=32)] = 160
    phone_tile_interval_s: Annotated[float, Field(gt=0)] = 1.0
    phone_tile_threshold: Annotated[float, Field(gt=0, lt=1)] | None = None


class RulesConfig(_Strict):
    # Debounce: an event opens after open_k of the last open_n analysed frames are positive, and
    # closes after close_m consecutive clear frames.
    open_k: Annotated[int, Field(ge=1)] = 3
    open_n: Annotated[int, Field(ge=1)] = 5
    close_m: Annotated[int, Field(ge=1)] = 6
    seat_empty_seconds: Annotated[float, Field(ge=0)] = 10.0
    # Re-run detection on still scenes at least this often, so seated people are never missed.
    recheck_seconds: Annotated[float, Field(gt=0)] = 3.0
    offline_seconds: Annotated[float, Field(gt=0)] = 5.0
    # A frozen picture is reported after this long (dev half: 6 s freezes were missed at 5 s).
    frozen_seconds: Annotated[float, Field(gt=0)] = 3.0
    outside_seat_is_extra: bool = True
    # An extra person (at a seat or outside every seat) raises extra_person once they have stayed
    # this long: somebody walking past a desk or along the aisle is not an incident.
    extra_person_seconds: Annotated[float, Field(ge=0)] = 2.5
    # A phone nobody holds counts for the seat whose polygon holds its centre (lying on that
    # desk) from this score up; None = only held phones count.
    desk_phone_min_score: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _k_le_n(self) -> RulesConfig:
        if self.open_k > self.open_n:
            raise ValueError(f"open_k ({self.open_k}) must be <= open_n ({self.open_n})")
        return self


Role = Literal["admin", "supervisor", "auditor", "observer"]


class UserConfig(_Strict):
    """A dashboard user.  Passwords live hashed in the database; this seeds accounts."""

    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    role: Role
    display_name: str | None = None
    password: SecretStr | None = None


class CreditConfig(_Strict):
    """Credit records (信用档案, docs/credit.md): the categories a supervisor files a confirmed
    violation under (the first is the default; order is the UI's)."""

    categories: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)] = [
        "使用手机",
        "离开座位",
        "他人进入",
        "遮挡摄像头",
        "其他",
    ]

    @model_validator(mode="after")
    def _unique(self) -> CreditConfig:
        _no_duplicates(self.categories, "credit category")
        return self


class WarningsConfig(_Strict):
    """Early warnings (预警, docs/statistics.md): four rules evaluated on ``cron`` (crontab, in
    ``hub.timezone``; null = never on its own) over the last ``*_days`` days.  A warning is
    stored once per subject and new evidence (the same condition is not raised again every run)
    and pushed to the dashboards as a ``{"type": "warning"}`` message."""

    # When the rules run (minute hour day month weekday); null: only on demand.
    cron: str | None = "*/10 * * * *"
    # An expert with at least expert_violations confirmed violations within expert_days days.
    expert_violations: Annotated[int, Field(ge=1)] = 3
    expert_days: Annotated[int, Field(ge=1, le=3660)] = 90
    # A site whose cameras were offline more than site_offline_percent % of the session time of
    # its cameras (sessions overlapping the last site_offline_days days).
    site_offline_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    site_offline_days: Annotated[int, Field(ge=1, le=3660)] = 30
    # A rule whose false-alarm rate (dismissed / judged incidents) is above false_alarm_percent %
    # over the last false_alarm_days days, counted once at least false_alarm_min_judged of its
    # incidents were judged (two dismissals of two are no trend).
    false_alarm_percent: Annotated[float, Field(ge=0, lt=100)] = 50.0
    false_alarm_days: Annotated[int, Field(ge=1, le=3660)] = 30
    false_alarm_min_judged: Annotated[int, Field(ge=1)] = 5
    # Two experts of the same bid flagged (an incident on their seats) in different rooms within
    # concurrent_seconds of each other, at least concurrent_times times within concurrent_days.
    concurrent_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    concurrent_times: Annotated[int, Field(ge=2)] = 2
    concurrent_days: Annotated[int, Field(ge=1, le=3660)] = 30

    @field_validator("cron")
    @classmethod
    def _crontab(cls, v: str | None) -> str | None:
        return crontab_or_none(v)


class SmtpConfig(_Strict):
    """The mail server e-mail notifications go through (``notifications.smtp``)."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    # Upgrade the connection with STARTTLS (port 587); ``ssl``: TLS from the start (port 465).
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    # Normally left out of the YAML: read from the secrets file (``notifications.smtp.password``).
    password: SecretStr | None = None
    sender: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] = "evalwatch@localhost"
    # PEM file of the CA (or the self-signed certificate) the server's TLS certificate is checked
    # against; unset: the system's trust store.
    ca_file: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 15.0

    @model_validator(mode="after")
    def _one_tls(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls exclude each other (ssl: TLS from the start, port 465)")
        return self


class NotificationsConfig(_Strict):
    """How the hub delivers notifications (docs/notifications.md): per-site targets are in
    ``sites[].notify``.  A failed delivery is retried after ``backoff_seconds``, doubling up to
    ``backoff_max_seconds``, at most ``max_attempts`` times; pending deliveries are in the database
    and survive a restart of the hub."""

    smtp: SmtpConfig | None = None
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_seconds: Annotated[float, Field(gt=0)] = 5.0
    backoff_max_seconds: Annotated[float, Field(gt=0)] = 600.0
    # One HTTP request / SMTP conversation.
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Deliveries in flight at once.
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4


class EvalwatchConfig(_Strict):
    """The whole configuration of one hub and its sites."""

    hub: HubConfig = HubConfig()
    storage: StorageConfig = StorageConfig()
    capture: CaptureConfig = CaptureConfig()
    detection: DetectionConfig = DetectionConfig()
    rules: RulesConfig = RulesConfig()
    credit: CreditConfig = CreditConfig()
    warnings: WarningsConfig = WarningsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    users: list[UserConfig] = []
    sites: list[SiteConfig] = []
    # YAML file of generated secrets (hub key, S3 keys, agent tokens, demo passwords); created
    # on first start with mode 0600.  Relative paths are relative to the config file.
    secrets_file: str | None = "data/secrets.yaml"

    @model_validator(mode="after")
    def _unique_ids(self) -> EvalwatchConfig:
        _no_duplicates([s.id for s in self.sites], "site")
        _no_duplicates([u.username for u in self.users], "user")
        if self.notifications.smtp is None:
            for s in self.sites:
                for t in s.notify:
                    if t.channel == "email":
                        raise ValueError(f"sites[{s.id}].notify[{t.id}]: channel email needs "
                                         "notifications.smtp (the mail server)")
        return self

    def site(self, site_id: str) -> SiteConfig:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    def room(self, site_id: str, room_id: str) -> RoomConfig:
        for r in self.site(site_id).rooms:
            if r.id == room_id:
                return r
        raise KeyError(f"{site_id}/{room_id}")

    def cameras(self) -> list[tuple[SiteConfig, RoomConfig, CameraConfig]]:
        """Every camera of every room of every site, in config order."""
        return [(s, r, c) for s in self.sites for r in s.rooms for c in r.cameras]

    def resolve_path(self, p: str, base: Path | None = None) -> Path:
        path = Path(p)
        return path if path.is_absolute() or base is None else base / path
