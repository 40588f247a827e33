"""Notifications to the people on site: incidents and early warnings, per site, by webhook,
WeCom / DingTalk group robot or e-mail, with retries and a delivery log (docs/notifications.md).

The :class:`Notifier` listens on the alert push (``dashboard.alerts.AlertHub``: the path every
incident update and every early warning takes to the dashboards' WebSockets) and only ever
*queues* there — nothing on the alert path waits for a database, a network or a mail server:

1. :meth:`Notifier.offer` (called by the hub for each message of this node) picks the targets
   (``sites[].notify``: ``rules`` for incidents that open, ``warnings`` for ``{"type":
   "warning"}`` messages) and puts one job per target on an in-memory queue;
2. a writer task stores each job as a ``notification_deliveries`` row (``pending``; the
   ``dedupe`` key makes a repeated offer a no-op);
3. a dispatcher task takes due pending rows (a lease per row, so several hub nodes never send
   the same one), renders them for their channel and sends them ``concurrency`` at a time.  Each
   try is a ``notification_attempts`` row (the delivery log, ``GET /api/notifications/log``);
   a failure is retried after ``backoff_seconds`` doubling to ``backoff_max_seconds``, until
   ``max_attempts``.  Rows still pending when the hub stops are sent after its next start.

Channels (the request each one makes is built by a pure function below):

* ``webhook`` — ``POST`` of the JSON document, headers ``X-Evalwatch-Timestamp`` (Unix seconds)
  and ``X-Evalwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``;
* ``wecom`` — the WeCom group robot: ``{"msgtype": "markdown", "markdown": {"content"}}``;
  success is ``{"errcode": 0}``;
* ``dingtalk`` — the DingTalk group robot: ``{"msgtype": "markdown", "markdown": {"title",
  "text"}}``; with a secret the URL gains ``timestamp`` (ms) and ``sign`` = URL-encoded base64 of
  HMAC-SHA256(secret, ``"<timestamp>\\n<secret>"``) ("加签"); success is ``{"errcode": 0}``;
* ``email`` — one message to ``to`` through ``notifications.smtp`` (stdlib ``smtplib`` in a
  worker thread; STARTTLS or implicit TLS, login when a username is set).

Secrets (webhook keys, DingTalk secrets, the SMTP password) never reach the log or the database;
robot URLs (their token is in the query) are stored and logged masked (:func:`mask_target`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.models import EvalwatchConfig, NotifyTargetConfig, SiteConfig
from dashboard.dbutil import run_db
from storage.common import utcnow
from storage.models import NotificationAttempt, NotificationDelivery

log = logging.getLogger("evalwatch.notifications")

SIGNATURE_HEADER = "X-Evalwatch-Signature"
TIMESTAMP_HEADER = "X-Evalwatch-Timestamp"
DELIVERY_HEADER = "X-Evalwatch-Delivery"
#: How long a node holds a delivery it is sending (another node may take it after that).
LEASE = timedelta(minutes=2)
#: The dispatcher looks for due rows at least this often (also woken by every new row).
POLL_SECONDS = 5.0
QUEUE_MAX = 10_000
I18N = Path(__file__).resolve().parent / "i18n" / "zh-CN.json"


@cache
def _labels() -> dict[str, str]:
    try:
        return dict(json.loads(I18N.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def rule_label(rule: str | None, kind: str | None = None) -> str:
    """``使用手机 (phone)`` — the UI's Chinese name and the rule's id."""
    if not rule:
        return ""
    name = _labels().get(f"rule.{rule}", rule)
    if kind:
        name += f"（{_labels().get(f'kind.{kind}', kind)}）"
    return f"{name} ({rule})"


def mask_target(target: NotifyTargetConfig) -> str:
    """What the log shows of a target: the URL without its query values (robot tokens), or the
    e-mail recipients with their local parts shortened."""
    if target.channel == "email":
        return ", ".join(_mask_address(a) for a in target.to)
    return mask_url(target.url or "")


def mask_url(url: str) -> str:
    """``https://h/p?key=abc`` → ``https://h/p?key=***`` (userinfo too)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _mask_address(addr: str) -> str:
    local, _, domain = addr.partition("@")
    return f"{local[:2]}***@{domain}"


class _MaskQuery(logging.Filter):
    """httpx logs every request's URL (INFO ``HTTP Request: POST <url>``): robot URLs carry their
    token in the query, so the values of query strings are masked in its records."""

    _rx = re.compile(r"([?&][^=&\s\"']+=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = self._rx.sub(r"\1***", str(record.msg))
        return True


def _mask_httpx_urls() -> None:
    lg = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskQuery) for f in lg.filters):
        lg.addFilter(_MaskQuery())


# -- what a message is about ------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """One thing to notify: an incident that opened, or an early warning."""

    source: str  # event | warning
    ref: str
    site: str | None
    rule: str | None
    payload: dict[str, Any]


def subject_of(msg: dict[str, Any]) -> Subject | None:
    """The notification a ``/ws/events`` message stands for (``None``: nothing to notify —
    updates and closes of incidents, workflow changes, resyncs)."""
    kind = msg.get("type")
    if kind == "event":
        ev = msg.get("event")
        if not isinstance(ev, dict) or ev.get("phase") != "opened" or ev.get("id") is None:
            return None
        keys = ("id", "site", "room", "camera", "seat", "rule", "kind", "started_at", "confidence",
                "expert_code", "origin", "session_id")
        payload = {"type": "incident", **{k: ev.get(k) for k in keys}}
        return Subject("event", str(ev["id"]), str(ev.get("site") or ""), str(ev.get("rule") or ""), payload)
    if kind == "warning":
        body = {k: v for k, v in msg.items() if k != "type"}
        ref = str(msg.get("id") or hashlib.sha256(
            json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32])
        site = msg.get("site")
        payload = {"type": "warning", **body, "id": ref}
        return Subject("warning", ref, str(site) if site else None, None, payload)
    return None


def targets_for(cfg: EvalwatchConfig, subject: Subject) -> list[tuple[SiteConfig, NotifyTargetConfig]]:
    """The targets told about ``subject``: the site's targets naming the incident's rule (or
    ``*``); for a warning the site's targets with ``warnings`` — every site's for a hub-wide one."""
    out = []
    for site in cfg.sites:
        for t in site.notify:
            if subject.source == "event":
                if site.id == subject.site and ("*" in t.rules or subject.rule in t.rules):
                    out.append((site, t))
            elif t.warnings and subject.site in (None, site.id):
                out.append((site, t))
    return out


# -- rendering ----------------------------------------------------------------------------------


def _local(iso: Any, tz: str) -> str:
    if not isinstance(iso, str):
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, KeyError):
        return iso


def _names(cfg: EvalwatchConfig, site: str | None, room: str | None) -> tuple[str, str]:
    site_name = room_name = ""
    for s in cfg.sites:
        if s.id == site:
            site_name = s.name or s.id
            for r in s.rooms:
                if r.id == room:
                    room_name = r.name or r.id
    return site_name or (site or ""), room_name or (room or "")


def render(cfg: EvalwatchConfig, payload: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The title and the (label, value) lines of a notification, in Chinese."""
    tz = cfg.hub.timezone
    if payload.get("type") == "incident":
        site, room = _names(cfg, payload.get("site"), payload.get("room"))
        title = f"【evalwatch 告警】{site} / {room}：{rule_label(payload.get('rule'), payload.get('kind'))}"
        lines = [
            ("站点", site), ("评标室", room), ("摄像机", str(payload.get("camera") or "")),
            ("座位", str(payload.get("seat") or "—")), ("专家编号", str(payload.get("expert_code") or "—")),
            ("规则", rule_label(payload.get("rule"), payload.get("kind"))),
            ("时间", _local(payload.get("started_at"), tz)),
            ("置信度", f"{float(payload.get('confidence') or 0):.2f}"),
            ("事件编号", str(payload.get("id"))),
        ]
    else:
        site, _ = _names(cfg, payload.get("site"), None)
        title = f"【evalwatch 预警】{site + '：' if site else ''}{payload.get('text') or payload.get('kind')}"
        lines = [("预警", str(payload.get("kind") or "")), ("站点", site or "全部"),
                 ("内容", str(payload.get("text") or ""))]
        details = payload.get("details")
        if isinstance(details, dict):
            lines += [(str(k), json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)
                      for k, v in details.items()]
    lines.append(("查看", f"{cfg.hub.url}/#alerts"))
    return title, lines


def markdown(title: str, lines: list[tuple[str, str]]) -> str:
    body = "\n".join(f"> **{k}**：{v}" for k, v in lines)
    return f"### {title}\n{body}"


def webhook_request(
    secret: str, body: dict[str, Any], now: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """The generic webhook's body and headers: the signature is HMAC-SHA256 of
    ``"<timestamp>." + body`` with the target's secret, hex, prefixed ``sha256=``."""
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    ts = str(int(now if now is not None else time.time()))
    sig = hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: f"sha256={sig}"}
    return raw, headers


def dingtalk_url(url: str, secret: str | None, now_ms: int | None = None) -> str:
    """The robot URL, signed ("加签") when there is a secret: ``&timestamp=<ms>&sign=<sign>``."""
    if not secret:
        return url
    ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    return f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={sign}"


def robot_body(channel: str, title: str, lines: list[tuple[str, str]]) -> dict[str, Any]:
    """The WeCom / DingTalk robot's markdown message (WeCom: at most 4096 bytes of content)."""
    text = markdown(title, lines)
    if channel == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text.encode()[:4096].decode(errors="ignore")}}
    return {"msgtype": "markdown", "markdown": {"title": title[:64], "text": text}}


def email_message(sender: str, to: list[str], title: str, lines: list[tuple[str, str]]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg.set_content("\n".join(f"{k}：{v}" for k, v in lines) + "\n")
    return msg


class DeliveryError(Exception):
    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


# -- the service ----------------------------------------------------------------------------------


@dataclass
class _Job:
    site: str
    target: NotifyTargetConfig
    subject: Subject


class Notifier:
    """The hub's notification service (see the module docstring).  ``start()`` on the event loop,
    ``offer(msg)`` for every alert message of this node, ``stop()`` at shutdown."""

    def __init__(self, cfg: EvalwatchConfig, db: Any) -> None:
        self.cfg = cfg
        self.db = db
        self.ncfg = cfg.notifications
        self._queue: asyncio.Queue[_Job] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._leased: set[int] = set()  # deliveries this node holds (released at stop)
        self._client: httpx.AsyncClient | None = None
        self.offered = 0
        self.dropped = 0
        self.sent = 0
        _mask_httpx_urls()

    @property
    def enabled(self) -> bool:
        return any(s.notify for s in self.cfg.sites)

    def _target(self, site: str, target_id: str) -> NotifyTargetConfig | None:
        for s in self.cfg.sites:
            if s.id == site:
                for t in s.notify:
                    if t.id == target_id:
                        return t
        return None

    # -- in (the alert path: never blocks) --

    def offer(self, msg: dict[str, Any]) -> None:
        """Queue the notifications ``msg`` calls for (called on the event loop, returns at once)."""
        if self._queue is None or not self.enabled:
            return
        subject = subject_of(msg)
        if subject is None:
            return
        for site, target in targets_for(self.cfg, subject):
            try:
                self._queue.put_nowait(_Job(site.id, target, subject))
                self.offered += 1
            except asyncio.QueueFull:
                self.dropped += 1
                log.error("notification queue full: dropped %s %s for site=%s target=%s",
                          subject.source, subject.ref, site.id, target.id)

    # -- lifecycle --

    async def start(self) -> None:
        """Start the writer and the dispatcher (which sends what is pending from before a
        restart first); nothing runs when no site has a target."""
        if self._tasks or not self.enabled:
            return
        self._queue = asyncio.Queue(maxsize=QUEUE_MAX)
        self._client = httpx.AsyncClient(timeout=self.ncfg.timeout_seconds, follow_redirects=False)
        self._tasks = [asyncio.create_task(self._writer(), name="notify-writer"),
                       asyncio.create_task(self._dispatcher(), name="notify-dispatcher")]

    async def stop(self) -> None:
        queue = self._queue
        if queue is not None:  # store what is queued: it is sent after the next start
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain(queue), 10)
        for t in [*self._tasks, *self._inflight]:
            t.cancel()
        for t in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._inflight, self._queue = [], set(), None
        if self._leased:  # sends cut short: the next start (or another node) takes them at once
            held = list(self._leased)

            def release(s: Session) -> None:
                s.execute(update(NotificationDelivery).where(NotificationDelivery.id.in_(held))
                          .values(lease_until=None))

            with contextlib.suppress(Exception):
                await run_db(self.db, release)
            self._leased.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _drain(self, queue: asyncio.Queue[_Job]) -> None:
        jobs = []
        while not queue.empty():
            jobs.append(queue.get_nowait())
        if jobs:
            await self._store(jobs)

    # -- writer --

    async def _writer(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            while not self._queue.empty() and len(jobs) < 100:
                jobs.append(self._queue.get_nowait())
            try:
                await self._store(jobs)
            except Exception:
                log.exception("storing %d notification(s) failed; retrying in 2 s", len(jobs))
                await asyncio.sleep(2)
                for j in jobs:
                    with contextlib.suppress(asyncio.QueueFull):
                        self._queue.put_nowait(j)
                continue
            self._wake.set()

    async def _store(self, jobs: list[_Job]) -> None:
        added = 0
        for j in jobs:
            dedupe = f"{j.site}/{j.target.id}/{j.subject.source}:{j.subject.ref}"

            def work(s: Session, j: _Job = j, dedupe: str = dedupe) -> bool:
                if s.scalar(select(NotificationDelivery.id).where(NotificationDelivery.dedupe == dedupe)):
                    return False
                s.add(NotificationDelivery(
                    site=j.site, target_id=j.target.id or "", channel=j.target.channel,
                    target=mask_target(j.target)[:512], source=j.subject.source, ref=j.subject.ref[:128],
                    dedupe=dedupe, payload=j.subject.payload, status="pending", attempts=0, next_at=utcnow(),
                ))
                return True

            try:
                added += await run_db(self.db, work)
            except IntegrityError:  # another node stored the same one a moment ago
                continue
        if added:
            log.info("notifications queued: %d", added)

    # -- dispatcher --

    async def _dispatcher(self) -> None:
        while True:
            self._wake.clear()  # before looking: a wake-up while we look is not lost
            try:
                due = await self._claim_due()
            except Exception:
                log.exception("reading due notifications failed")
                due = []
            for d in due:
                self._leased.add(d["id"])
                task = asyncio.create_task(self._deliver(d), name=f"notify-{d['id']}")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            wait = await self._next_wait() if len(self._inflight) < self.ncfg.concurrency else POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _next_wait(self) -> float:
        """Seconds until the next pending delivery nobody holds is due (at most ``POLL_SECONDS``)."""

        def q(s: Session) -> datetime | None:
            now = utcnow()
            free = or_(NotificationDelivery.lease_until.is_(None), NotificationDelivery.lease_until < now)
            return s.scalar(select(NotificationDelivery.next_at)
                            .where(NotificationDelivery.status == "pending", free)
                            .order_by(NotificationDelivery.next_at).limit(1))

        try:
            nxt = await run_db(self.db, q)
        except Exception:
            return POLL_SECONDS
        if nxt is None:
            return POLL_SECONDS
        return max(0.05, min(POLL_SECONDS, (nxt - utcnow()).total_seconds()))

    async def _claim_due(self) -> list[dict[str, Any]]:
        room = self.ncfg.concurrency - len(self._inflight)
        if room <= 0:
            return []

        def work(s: Session) -> list[dict[str, Any]]:
            now = utcnow()
            free = or_(NotificationDelivery.lease_until.is_(None), NotificationDelivery.lease_until < now)
            rows = s.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.status == "pending", NotificationDelivery.next_at <= now, free)
                .order_by(NotificationDelivery.next_at).limit(room)
            ).all()
            out = []
            for r in rows:
                got = s.execute(
                    update(NotificationDelivery)
                    .where(NotificationDelivery.id == r.id, NotificationDelivery.status == "pending", free)
                    .values(lease_until=now + LEASE)
                )
                if getattr(got, "rowcount", 0) == 1:
                    out.append({"id": r.id, "site": r.site, "target_id": r.target_id, "channel": r.channel,
                                "source": r.source, "ref": r.ref, "payload": r.payload,
                                "attempts": r.attempts})
            return out

        return await run_db(self.db, work)

    async def _deliver(self, d: dict[str, Any]) -> None:
        attempt = int(d["attempts"]) + 1
        target = self._target(d["site"], d["target_id"])
        t0 = time.perf_counter()
        http_status: int | None = None
        error: str | None = None
        final = False
        if target is None or target.channel != d["channel"]:
            error, final = f"target {d['site']}/{d['target_id']} is no longer in the configuration", True
        else:
            try:
                http_status = await self._send(target, d)
            except DeliveryError as e:
                error, http_status = str(e), e.http_status
            except Exception as e:  # a network error, a refused connection, an SMTP error
                error = f"{type(e).__name__}: {e}"[:500]
        seconds = time.perf_counter() - t0
        if error is None:
            status = "sent"
        elif final or attempt >= self.ncfg.max_attempts:
            status = "failed"
        else:
            status = "retry"
        delay = min(self.ncfg.backoff_max_seconds, self.ncfg.backoff_seconds * 2 ** (attempt - 1))
        level = logging.INFO if status == "sent" else logging.WARNING
        log.log(level, "notification %s site=%s target=%s channel=%s %s=%s attempt=%d%s", status, d["site"],
                d["target_id"], d["channel"], d["source"], d["ref"], attempt,
                f" error={error}" + (f" next in {delay:.1f}s" if status == "retry" else "") if error else "")

        def record(s: Session) -> None:
            now = utcnow()
            s.add(NotificationAttempt(delivery_id=d["id"], at=now, attempt=attempt, status=status,
                                      http_status=http_status, error=error, seconds=round(seconds, 3)))
            values: dict[str, Any] = {"attempts": attempt, "lease_until": None, "error": error}
            if status == "sent":
                values.update(status="sent", sent_at=now)
            elif status == "failed":
                values.update(status="failed")
            else:
                values.update(next_at=now + timedelta(seconds=delay))
            s.execute(update(NotificationDelivery).where(NotificationDelivery.id == d["id"]).values(**values))

        try:
            await run_db(self.db, record)
            self._leased.discard(d["id"])
        except Exception:
            log.exception("recording notification attempt id=%s failed", d["id"])
        if status == "sent":
            self.sent += 1
        self._wake.set()

    async def _send(self, target: NotifyTargetConfig, d: dict[str, Any]) -> int | None:
        payload = dict(d["payload"])
        title, lines = render(self.cfg, payload)
        if target.channel == "email":
            smtp = self.cfg.notifications.smtp
            if smtp is None:
                raise DeliveryError("notifications.smtp is not configured")
            msg = email_message(smtp.sender, target.to, title, lines)
            await asyncio.to_thread(_smtp_send, smtp, msg)
            return None
        assert self._client is not None and target.url
        secret = target.secret.get_secret_value() if target.secret is not None else None
        if target.channel == "webhook":
            body = {**payload, "title": title, "lines": [{"label": k, "value": v} for k, v in lines],
                    "delivery": d["id"], "attempt": int(d["attempts"]) + 1,
                    "site_name": _names(self.cfg, payload.get("site"), None)[0]}
            raw, headers = webhook_request(secret or "", body)
            headers[DELIVERY_HEADER] = str(d["id"])
            r = await self._client.post(target.url, content=raw, headers=headers)
            _check_http(r)
            return r.status_code
        url = dingtalk_url(target.url, secret) if target.channel == "dingtalk" else target.url
        r = await self._client.post(url, json=robot_body(target.channel, title, lines))
        _check_http(r)
        try:
            answer = r.json()
        except ValueError:
            raise DeliveryError(f"the robot answered no JSON: {r.text[:200]!r}", r.status_code) from None
        if not isinstance(answer, dict) or answer.get("errcode") not in (0, "0"):
            raise DeliveryError(f"the robot refused it: {str(answer)[:300]}", r.status_code)
        return r.status_code


def _check_http(r: httpx.Response) -> None:
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"HTTP {r.status_code} {r.text[:200]!r}", r.status_code)


def _smtp_send(smtp: Any, msg: EmailMessage) -> None:
    """Send ``msg`` through ``notifications.smtp`` (a worker thread)."""
    ctx = ssl.create_default_context(cafile=smtp.ca_file)
    cls = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
    kwargs: dict[str, Any] = {"timeout": smtp.timeout_seconds}
    if smtp.ssl:
        kwargs["context"] = ctx
    with cls(smtp.host, smtp.port, **kwargs) as conn:
        conn.ehlo()
        if smtp.starttls and not smtp.ssl:
            conn.starttls(context=ctx)
            conn.ehlo()
        if smtp.username:
            conn.login(smtp.username, smtp.password.get_secret_value() if smtp.password else "")
        conn.send_message(msg)


# -- the delivery log (GET /api/notifications/log) ---------------------------------------------------


def log_rows(s: Session, *, site: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest attempts, each with its delivery (and deliveries not tried yet, as
    ``status: "pending"`` with ``attempt: 0``), newest first."""
    q = (select(NotificationAttempt, NotificationDelivery)
         .join(NotificationDelivery, NotificationDelivery.id == NotificationAttempt.delivery_id)
         .order_by(NotificationAttempt.at.desc(), NotificationAttempt.id.desc()).limit(limit))
    if site:
        q = q.where(NotificationDelivery.site == site)
    if status:
        q = q.where(NotificationAttempt.status == status)
    out = [_entry(d, a.at, a.attempt, a.status, a.http_status, a.error, a.seconds) for a, d in s.execute(q)]
    if status in (None, "pending"):
        pq = (select(NotificationDelivery).where(NotificationDelivery.status == "pending",
                                                 NotificationDelivery.attempts == 0)
              .order_by(NotificationDelivery.created_at.desc()).limit(limit))
        if site:
            pq = pq.where(NotificationDelivery.site == site)
        out += [_entry(d, d.created_at, 0, "pending", None, None, None) for d in s.scalars(pq)]
        out.sort(key=lambda e: e["at"], reverse=True)
    return out[:limit]


def _entry(d: NotificationDelivery, at: datetime, attempt: int, status: str, http_status: int | None,
           error: str | None, seconds: float | None) -> dict[str, Any]:
    return {"at": at.astimezone(UTC), "delivery_id": d.id, "site": d.site, "target_id": d.target_id,
            "channel": d.channel, "target": d.target, "source": d.source, "ref": d.ref, "attempt": attempt,
            "status": status, "http_status": http_status, "error": error, "seconds": seconds,
            "delivery_status": d.status,
            "next_at": d.next_at.astimezone(UTC) if d.status == "pending" else None}
