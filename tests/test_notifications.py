"""Notifications to people on site (issue 15, item 4): incidents and early warnings reach each
site's webhook (HMAC-signed JSON), WeCom and DingTalk group robots (their markdown formats,
DingTalk's signed URL) and mail (SMTP with STARTTLS and login) — real local receivers the tests
start; a failing receiver is retried with backoff and the delivery log shows every attempt; a
delivery pending while the hub stops is sent after it starts again; secrets stay out of the logs
and out of /api/config."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from analysis.events import Event, EventUpdate
from analysis.store import EventStore
from config.loader import ConfigError, load_config
from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from storage.models import NotificationDelivery
from testkit.dashboard import ROLE_USERS, MemoryObjects, make_config, make_database, password_of
from testkit.receivers import HttpReceiver, SmtpReceiver

pytestmark = [pytest.mark.credit, pytest.mark.timeout(120)]

HOOK_SECRET = "hook-secret-0123456789abcdef"
DING_SECRET = "SEC0123456789abcdef-ding-secret"
SMTP_PASSWORD = "smtp-pass-0123456789"
WECOM_KEY = "wecom-key-9f8e7d"
DING_TOKEN = "ding-token-1a2b3c"


def _cfg(
    base: EvalwatchConfig, notify: dict[str, list[dict[str, Any]]], **notifications: Any
) -> EvalwatchConfig:
    doc = base.model_dump(mode="json")
    doc["hub"]["secret_key"] = "test-secret-key-0123456789"
    for u, src in zip(doc["users"], base.users, strict=True):
        u["password"] = src.password.get_secret_value() if src.password else None
    for site in doc["sites"]:
        site["agent_token"] = None
        site["notify"] = notify.get(site["id"], [])
    doc["notifications"] = {"backoff_seconds": 0.2, "backoff_max_seconds": 1.0, "timeout_seconds": 5,
                            **notifications}
    return EvalwatchConfig.model_validate(doc)


class Hub:
    """The dashboard app with its notifier, a real incident store and event bus, on SQLite."""

    def __init__(self, cfg: EvalwatchConfig, db: Any, tmp: Path) -> None:
        from analysis.bus import EventBus

        self.bus = EventBus()
        self.services = Services(cfg=cfg, db=db, objects=MemoryObjects(cfg.storage.s3), bus=self.bus)
        self.app = create_app(self.services)
        self.store = EventStore(db, self.services.objects, "snap", self.bus, tmp / "snap-spool")

    @property
    def notifier(self) -> Any:
        return self.app.state.dash.notifier

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")

    async def login(self, c: httpx.AsyncClient, role: str) -> None:
        body = {"username": ROLE_USERS[role], "password": password_of(role)}
        r = await c.post("/api/auth/login", json=body)
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]

    async def incident(self, rule: str = "phone", site: str = "site1") -> int:
        ev = Event(rule=rule, camera="cam1", seat="s1", start_s=time.time(), confidence=0.87, room="room1",
                   site=site)
        await self.store.handle(EventUpdate("opened", ev))
        await self.store.handle(EventUpdate("updated", ev))  # updates never notify
        db_id, _ = await self.store.upsert(EventUpdate("opened", ev))  # nor a repeat of the open
        return db_id


@asynccontextmanager
async def running(cfg: EvalwatchConfig, db: Any, tmp: Path) -> AsyncIterator[Hub]:
    hub = Hub(cfg, db, tmp)
    await hub.store.start()
    async with hub.app.router.lifespan_context(hub.app):
        yield hub
    await hub.store.close()


async def until(pred: Any, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def deliveries(db: Any) -> list[NotificationDelivery]:
    with db.session() as s:
        return list(s.query(NotificationDelivery).order_by(NotificationDelivery.id))


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    from evalwatch.tls import write_self_signed

    return write_self_signed(tmp_path / "smtp-tls", ["127.0.0.1"])


async def test_incident_reaches_webhook_wecom_dingtalk_and_mail(
    tmp_path: Path, tls_pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rx = await HttpReceiver().start()
    smtp = SmtpReceiver(*tls_pair, user="evalwatch", password=SMTP_PASSWORD).start()
    try:
        cfg = _cfg(make_config(), {
            "site1": [
                {"id": "ops-hook", "channel": "webhook", "url": f"{rx.url}/hook", "secret": HOOK_SECRET,
                 "rules": ["phone", "extra_person"]},
                {"channel": "wecom", "url": f"{rx.url}/wecom?key={WECOM_KEY}", "rules": ["*"]},
                {"channel": "dingtalk", "url": f"{rx.url}/dingtalk?access_token={DING_TOKEN}",
                 "secret": DING_SECRET, "rules": ["phone"]},
                {"channel": "email", "to": ["duty@site1.example", "lead@site1.example"], "rules": ["phone"]},
                {"id": "seats-only", "channel": "webhook", "url": f"{rx.url}/seats", "secret": HOOK_SECRET,
                 "rules": ["seat_empty"]},
            ],
            "site2": [{"channel": "webhook", "url": f"{rx.url}/site2", "secret": HOOK_SECRET,
                       "rules": ["*"]}],
        }, smtp={"host": "127.0.0.1", "port": smtp.port, "starttls": True, "username": "evalwatch",
                 "password": SMTP_PASSWORD, "sender": "evalwatch@hub.example", "ca_file": str(tls_pair[0])})
        db = make_database(tmp_path / "hub.db")
        async with running(cfg, db, tmp_path) as hub:
            t0 = time.time()
            event_id = await hub.incident("phone")
            await until(lambda: len(rx.at("/hook")) and len(rx.at("/wecom")) and len(rx.at("/dingtalk"))
                        and smtp.messages, "webhook, WeCom, DingTalk and mail")
            await asyncio.sleep(0.5)  # nothing more may come: one open, one notification per target

            # generic webhook: JSON, HMAC-SHA256 over "<timestamp>.<body>" with the target's secret
            [hook] = rx.at("/hook")
            ts = hook.headers["x-evalwatch-timestamp"]
            assert abs(int(ts) - t0) < 30
            want = hmac.new(HOOK_SECRET.encode(), ts.encode() + b"." + hook.body, hashlib.sha256).hexdigest()
            assert hook.headers["x-evalwatch-signature"] == f"sha256={want}"
            assert hook.headers["content-type"].startswith("application/json")
            doc = hook.json()
            assert doc["type"] == "incident" and doc["id"] == event_id and doc["rule"] == "phone"
            assert (doc["site"], doc["room"], doc["camera"], doc["seat"]) == ("site1", "room1", "cam1", "s1")
            assert doc["site_name"] == "Site 1" and "使用手机" in doc["title"] and doc["attempt"] == 1
            forged = hmac.new(b"another key", ts.encode() + b"." + hook.body, hashlib.sha256).hexdigest()
            assert hook.headers["x-evalwatch-signature"] != f"sha256={forged}"

            # WeCom group robot: {"msgtype": "markdown", "markdown": {"content"}}, its key untouched
            [wecom] = rx.at("/wecom")
            assert wecom.query == {"key": WECOM_KEY}
            body = wecom.json()
            assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"content"}
            content = body["markdown"]["content"]
            assert "使用手机 (phone)" in content and "Site 1" in content and "room1" in content
            assert len(content.encode()) <= 4096

            # DingTalk group robot: markdown {title, text}; signed URL: timestamp (ms) + sign
            [ding] = rx.at("/dingtalk")
            assert ding.query["access_token"] == DING_TOKEN
            ts_ms = ding.query["timestamp"]
            assert abs(int(ts_ms) / 1000 - t0) < 30
            sign = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts_ms}\n{DING_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
            assert ding.query["sign"] == sign  # the receiver saw it URL-decoded
            body = ding.json()
            assert body["msgtype"] == "markdown" and "使用手机" in body["markdown"]["title"]
            assert "room1" in body["markdown"]["text"] and "cam1" in body["markdown"]["text"]

            # mail: STARTTLS, login, the subject names site, room and rule
            [(mail, env)] = smtp.messages
            assert env["tls"] and env["authenticated"]
            assert sorted(env["rcpt"]) == ["duty@site1.example", "lead@site1.example"]
            assert env["mail_from"] == "evalwatch@hub.example"
            subject = str(mail["Subject"])
            assert "Site 1" in subject and "room1" in subject and "使用手机 (phone)" in subject, subject
            assert f"事件编号：{event_id}" in mail.get_content()

            # other rules' targets and other sites' targets heard nothing
            assert rx.at("/seats") == [] and rx.at("/site2") == []
            assert len(rx.received) == 3 and len(smtp.messages) == 1

            # the delivery log: supervisors read it, observers do not; robot tokens masked
            async with hub.client() as c:
                await hub.login(c, "observer")
                assert (await c.get("/api/notifications/log")).status_code == 403
            async with hub.client() as c:
                await hub.login(c, "supervisor")
                r = await c.get("/api/notifications/log", params={"site": "site1"})
                assert r.status_code == 200, r.text
                entries = r.json()["entries"]
                assert sorted(e["channel"] for e in entries) == ["dingtalk", "email", "webhook", "wecom"]
                assert all(e["status"] == "sent" and e["attempt"] == 1 and e["ref"] == str(event_id)
                           and e["source"] == "event" for e in entries), entries
                text = json.dumps(entries)
                assert WECOM_KEY not in text and DING_TOKEN not in text and "key=***" in text
                assert "du***@site1.example" in text
                bad = await c.get("/api/notifications/log", params={"status": "nonsense"})
                assert bad.status_code == 422 and bad.json()["code"] == "err.invalid_input"
            async with hub.client() as c:
                await hub.login(c, "admin")
                shown = json.dumps((await c.get("/api/config")).json())
            for secret in (HOOK_SECRET, DING_SECRET, SMTP_PASSWORD, WECOM_KEY, DING_TOKEN):
                assert secret not in shown
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "notification sent site=site1" in logged
        for secret in (HOOK_SECRET, DING_SECRET, SMTP_PASSWORD, WECOM_KEY, DING_TOKEN):
            assert secret not in logged
    finally:
        smtp.stop()
        await rx.stop()


async def test_warning_on_the_alert_path_reaches_targets_with_warnings(tmp_path: Path) -> None:
    """An early warning published on the alert push (``{"type": "warning"}``, as the
    statistics' rules publish it) reaches the site's targets with ``warnings: true``; a hub-wide
    one (no site) reaches every site's."""
    rx = await HttpReceiver().start()
    try:
        cfg = _cfg(make_config(), {
            "site1": [{"id": "w1", "channel": "webhook", "url": f"{rx.url}/w1", "secret": HOOK_SECRET,
                       "warnings": True},
                      {"id": "inc", "channel": "webhook", "url": f"{rx.url}/inc", "secret": HOOK_SECRET,
                       "rules": ["phone"]}],
            "site2": [{"channel": "dingtalk", "url": f"{rx.url}/w2?access_token=t", "warnings": True}],
        })
        db = make_database(tmp_path / "hub.db")
        async with running(cfg, db, tmp_path) as hub:
            alerts = hub.app.state.dash.alerts
            alerts.publish({"type": "warning", "id": "w-17", "kind": "expert_repeat", "site": "site1",
                            "text": "专家 E0042 30 天内 3 次违规",
                            "details": {"expert_code": "E0042", "count": 3}})
            await until(lambda: rx.at("/w1"), "the site's warning target")
            alerts.publish({"type": "warning", "id": "w-18", "kind": "false_alarm_rate", "site": None,
                            "text": "规则 phone 误报率 42%", "details": {"rule": "phone"}})
            await until(lambda: len(rx.at("/w1")) == 2 and rx.at("/w2"), "every site's warning target")
            alerts.publish({"type": "warning", "id": "w-17", "kind": "expert_repeat", "site": "site1",
                            "text": "again", "details": {}})  # the same warning again: no second delivery
            await asyncio.sleep(0.5)
        first = rx.at("/w1")[0].json()
        assert first["type"] == "warning" and first["id"] == "w-17" and first["kind"] == "expert_repeat"
        assert first["details"] == {"expert_code": "E0042", "count": 3} and "E0042" in first["title"]
        ts = rx.at("/w1")[0].headers["x-evalwatch-timestamp"]
        assert rx.at("/w1")[0].headers["x-evalwatch-signature"] == "sha256=" + hmac.new(
            HOOK_SECRET.encode(), ts.encode() + b"." + rx.at("/w1")[0].body, hashlib.sha256).hexdigest()
        assert rx.at("/w1")[1].json()["id"] == "w-18"
        [w2] = rx.at("/w2")
        assert "sign" not in w2.query  # no secret: DingTalk's unsigned form
        assert "误报率" in w2.json()["markdown"]["text"]
        assert rx.at("/inc") == [] and len(rx.at("/w1")) == 2
        assert [d.ref for d in deliveries(db)] == ["w-17", "w-18", "w-18"]
    finally:
        await rx.stop()


async def test_failing_receiver_is_retried_and_the_log_shows_both_attempts(tmp_path: Path) -> None:
    rx = await HttpReceiver().start()
    rx.script["/flaky"] = [(500, {"error": "busy"})]
    rx.script["/robot"] = [(200, {"errcode": 130101, "errmsg": "send too fast"})]
    try:
        cfg = _cfg(make_config(), {"site1": [
            {"id": "flaky", "channel": "webhook", "url": f"{rx.url}/flaky", "secret": HOOK_SECRET,
             "rules": ["*"]},
            {"id": "robot", "channel": "dingtalk", "url": f"{rx.url}/robot?access_token=x", "rules": ["*"]},
        ]})
        db = make_database(tmp_path / "hub.db")
        async with running(cfg, db, tmp_path) as hub:
            t0 = time.monotonic()
            event_id = await hub.incident("extra_person")
            await until(lambda: len(rx.at("/flaky")) == 2 and len(rx.at("/robot")) == 2, "the retries")
            waited = time.monotonic() - t0
            await until(lambda: all(d.status == "sent" for d in deliveries(db)), "both sent")
            async with hub.client() as c:
                await hub.login(c, "admin")
                entries = (await c.get("/api/notifications/log")).json()["entries"]
        a, b = rx.at("/flaky")
        assert a.json()["attempt"] == 1 and b.json()["attempt"] == 2 and a.json()["id"] == event_id
        assert b.headers["x-evalwatch-delivery"] == a.headers["x-evalwatch-delivery"]
        assert waited >= 0.2  # the backoff
        flaky = sorted((e for e in entries if e["target_id"] == "flaky"), key=lambda e: e["attempt"])
        got = [(e["attempt"], e["status"], e["http_status"]) for e in flaky]
        assert got == [(1, "retry", 500), (2, "sent", 200)]
        assert "HTTP 500" in flaky[0]["error"] and flaky[1]["error"] is None
        robot = sorted((e for e in entries if e["target_id"] == "robot"), key=lambda e: e["attempt"])
        assert [(e["attempt"], e["status"]) for e in robot] == [(1, "retry"), (2, "sent")]
        assert "130101" in robot[0]["error"]
        assert all(e["delivery_status"] == "sent" for e in entries)


    finally:
        await rx.stop()


async def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    rx = await HttpReceiver().start()
    rx.script["/down"] = [(503, {})] * 10
    try:
        cfg = _cfg(make_config(), {"site1": [
            {"channel": "webhook", "url": f"{rx.url}/down", "secret": HOOK_SECRET, "rules": ["phone"]}]},
            max_attempts=3)
        db = make_database(tmp_path / "hub.db")
        async with running(cfg, db, tmp_path) as hub:
            await hub.incident("phone")
            await until(lambda: [d.status for d in deliveries(db)] == ["failed"], "the delivery to give up")
            await asyncio.sleep(0.6)
        assert len(rx.at("/down")) == 3
        [d] = deliveries(db)
        assert d.attempts == 3 and "HTTP 503" in (d.error or "")
    finally:
        await rx.stop()


async def test_pending_delivery_survives_a_hub_restart(tmp_path: Path) -> None:
    """The receiver is down while the hub runs; the hub stops with the delivery pending; the
    receiver comes up; the restarted hub (a new app and notifier on the same database) sends it."""
    rx = HttpReceiver()  # not started: connections are refused
    cfg = _cfg(make_config(), {"site1": [
        {"id": "later", "channel": "webhook", "url": f"{rx.url}/later", "secret": HOOK_SECRET,
         "rules": ["phone"]}]},
        max_attempts=50, backoff_seconds=0.2, backoff_max_seconds=0.5)
    db = make_database(tmp_path / "hub.db")
    async with running(cfg, db, tmp_path) as hub:
        event_id = await hub.incident("phone")
        await until(lambda: any(d.attempts >= 2 for d in deliveries(db)), "two refused attempts")
    [d] = deliveries(db)
    assert d.status == "pending" and d.attempts >= 2 and "ConnectError" in (d.error or ""), d.error
    tried = d.attempts
    await rx.start()
    try:
        async with running(cfg, db, tmp_path) as hub:
            await until(lambda: rx.at("/later"), "the delivery after the restart")
            await until(lambda: deliveries(db)[0].status == "sent", "the row to be marked sent")
            async with hub.client() as c:
                await hub.login(c, "supervisor")
                entries = (await c.get("/api/notifications/log")).json()["entries"]
        [got] = rx.at("/later")
        assert got.json()["id"] == event_id and got.json()["attempt"] == tried + 1
        statuses = [e["status"] for e in sorted(entries, key=lambda e: e["attempt"])]
        assert statuses == ["retry"] * tried + ["sent"]
        assert len(deliveries(db)) == 1
    finally:
        await rx.stop()


def test_config_validation_names_the_field(tmp_path: Path) -> None:
    base = {"hub": {"secret_key": "k" * 20}, "secrets_file": None}

    def problems(notify: list[dict[str, Any]], **top: Any) -> str:
        path = tmp_path / "c.yaml"
        doc = {**base, **top, "sites": [{"id": "s1", "notify": notify}]}
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_config(path, load_secrets=False)
        return "\n".join(e.value.problems)

    p = problems([{"channel": "webhook", "url": "http://x/h", "rules": ["phones"]}])
    assert "sites[0].notify[0].rules" in p and "unknown rule 'phones'" in p
    p = problems([{"channel": "email", "to": ["a@b.c"], "rules": ["phone"]}])
    assert "notifications.smtp" in p
    p = problems([{"channel": "wecom", "url": "ftp://x", "rules": ["phone"]}])
    assert "sites[0].notify[0]" in p and "http:// or https://" in p
    p = problems([{"channel": "wecom", "url": "https://x/w?key=1", "secret": "s" * 20}])
    assert "takes no 'secret'" in p
    p = problems([{"channel": "webhook", "url": "http://x/h", "id": "a"},
                  {"channel": "wecom", "url": "http://x/w", "id": "a"}])
    assert "duplicate notify id 'a'" in p
    p = problems([{"channel": "email", "to": ["not-an-address"]}],
                 notifications={"smtp": {"host": "m", "ssl": True, "starttls": True}})
    assert "notify[0].to" in p and "ssl and starttls" in p
    with pytest.raises(ValidationError):
        EvalwatchConfig.model_validate({"sites": [{"id": "s", "notify": [{"channel": "pager", "url": "http://x"}]}]})


def test_secrets_come_from_the_secrets_file(tmp_path: Path) -> None:
    """The webhook's HMAC key is generated into the secrets file when the YAML has none; a
    DingTalk secret and the SMTP password are read from it (never generated)."""
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"sites.s1.notify.ding.secret": DING_SECRET,
                                       "notifications.smtp.password": SMTP_PASSWORD}), encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "secrets_file": str(secrets),
        "notifications": {"smtp": {"host": "mail.example", "username": "u", "ca_file": "ca.pem"}},
        "sites": [{"id": "s1", "notify": [
            {"channel": "webhook", "url": "https://h.example/hook", "rules": ["*"]},
            {"id": "ding", "channel": "dingtalk", "url": "https://oapi.example/robot/send?access_token=t"},
            {"id": "ding2", "channel": "dingtalk", "url": "https://oapi.example/robot/send?access_token=u"},
        ]}],
    }), encoding="utf-8")
    cfg = load_config(path)
    hook, ding, ding2 = cfg.sites[0].notify
    assert hook.id == "webhook-1" and hook.secret is not None and len(hook.secret.get_secret_value()) >= 16
    stored = yaml.safe_load(secrets.read_text(encoding="utf-8"))
    assert stored["sites.s1.notify.webhook-1.secret"] == hook.secret.get_secret_value()
    assert ding.secret is not None and ding.secret.get_secret_value() == DING_SECRET
    assert ding2.secret is None and "sites.s1.notify.ding2.secret" not in stored
    smtp = cfg.notifications.smtp
    assert smtp is not None and smtp.password is not None
    assert smtp.password.get_secret_value() == SMTP_PASSWORD
    assert smtp.ca_file == str(tmp_path / "ca.pem")
    assert load_config(path).sites[0].notify[0].secret == hook.secret  # stable across starts


def test_dingtalk_signature_matches_the_documented_example_form() -> None:
    """``sign`` = urlencode(base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>")))."""
    from dashboard.notifications import dingtalk_url

    robot = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    url = dingtalk_url(robot, "SECxyz", now_ms=1552920546388)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    digest = hmac.new(b"SECxyz", b"1552920546388\nSECxyz", hashlib.sha256).digest()
    sign = base64.b64encode(digest).decode()
    assert q == {"access_token": ["abc"], "timestamp": ["1552920546388"], "sign": [sign]}
    assert "%" in url.split("sign=")[1] or "+" not in base64.b64encode(digest).decode()
    assert dingtalk_url("https://x/robot?access_token=a", None) == "https://x/robot?access_token=a"


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_delivery_log_page_says_when_nothing_was_sent(tmp_path: Path) -> None:
    """The delivery log of a hub whose sites notify nobody says so (and where it is set), a filter
    with no match says that, and a delivery shows as a row with the message gone."""
    from datetime import UTC, datetime

    from storage.models import NotificationAttempt
    from testkit.dashboard import dashboard_in_chromium, make_services, ui_login

    services = make_services(tmp_path, cfg=make_config(sites=1, rooms=1))
    async with dashboard_in_chromium(services, 1300, 800) as b:
        page, url, errors = b.page, b.url, b.errors
        await ui_login(page, url, "supervisor")
        if not (await page.evaluate("document.documentElement.lang")).startswith("en"):
            await page.click("#lang-switch")
        await page.goto(url + "/#notifications")
        await page.wait_for_selector("#nl-empty:not([hidden])")
        assert "notify" in await page.inner_text("#nl-empty")
        await page.select_option("#nl-status", "failed")
        await page.wait_for_function(
            "() => document.getElementById('nl-empty').textContent.includes('this result')")

        with services.db.session() as s:
            row = NotificationDelivery(
                site="site1", target_id="duty", channel="webhook", target="https://hook.example/***",
                source="event", ref="7", dedupe="site1/duty/event:7", payload={}, status="failed",
                attempts=1,
            )
            s.add(row)
            s.flush()
            s.add(NotificationAttempt(delivery_id=row.id, at=datetime.now(UTC), attempt=1,
                                      status="failed", http_status=500, error="HTTP 500"))
            s.commit()
        await page.click("#nl-reload")
        await page.wait_for_selector("#nl-body tr")
        assert await page.locator("#nl-empty").is_hidden()
        assert "HTTP 500" in await page.inner_text("#nl-body")
    assert not errors, errors
