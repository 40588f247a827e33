"""The audit log as an auditor reads it: every action the code writes has a name in both
languages, ``GET /api/audit`` filters by user, action, target prefix and time and pages with
``before_id``, and the view in Chromium does the same from its toolbar."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard import audit
from dashboard.app import create_app
from dashboard.audit import ACTIONS
from dashboard.services import Services
from storage.models import AuditLog
from testkit.dashboard import asgi_login, dashboard_in_chromium, make_services, ui_login

ROOT = Path(__file__).resolve().parents[1]
CODE = ("dashboard", "sessions", "storage", "capture", "evalwatch", "analysis")
ACTION = re.compile(r"[a-z]+(_[a-z]+)*")
#: f"alert_{action}" (dashboard/routes/events.py _transition) and f"credit_{action}"
#: (sessions/credit.py: the actions its record model lists).
FAMILIES = {"alert_": ("ack", "resolve", "false_alarm")}


def written_actions() -> tuple[set[str], set[str]]:
    """The literal actions the code passes to the audit log (``audit.add``/``record``, a route's
    ``auditor(...)``/``auditor.observer(...)``, a module's ``_audit(...)``, ``AuditLog(action=)``)
    and the prefixes of the f-string ones."""
    found: set[str] = set()
    prefixes: set[str] = set()
    for pkg in CODE:
        for path in (ROOT / pkg).rglob("*.py"):
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(n, ast.Call):
                    continue
                name = ast.unparse(n.func)
                args: list[ast.expr] = []
                if name in ("audit.add", "audit.record"):
                    args = n.args[2:3]
                elif name.endswith(("auditor", "auditor.observer")):
                    args = n.args[:1]
                elif name == "_audit":
                    literal: list[ast.expr] = [
                        a for a in n.args[2:4] if isinstance(a, ast.Constant | ast.JoinedStr)
                    ]
                    args = literal[:1]
                elif name != "AuditLog":
                    continue
                args += [k.value for k in n.keywords if k.arg == "action"]
                for a in args:
                    if isinstance(a, ast.Constant) and isinstance(a.value, str) and ACTION.fullmatch(a.value):
                        found.add(a.value)
                    elif isinstance(a, ast.JoinedStr) and isinstance(a.values[0], ast.Constant):
                        prefixes.add(str(a.values[0].value))
    return found, prefixes


def test_every_action_the_code_writes_is_listed_and_named_in_both_languages() -> None:
    found, prefixes = written_actions()
    assert len(found) > 40, sorted(found)  # the scan works
    assert found <= set(ACTIONS), sorted(found - set(ACTIONS))
    from sessions.credit import RevisionOut  # the credit actions its API documents

    credit = RevisionOut.model_fields["action"].description or ""
    families = {**FAMILIES, "credit_": tuple(a.strip() for a in credit.split("|"))}
    assert prefixes == set(families), prefixes
    for prefix, names in families.items():
        assert {prefix + n for n in names} <= set(ACTIONS), (prefix, names)
    for lang in ("zh-CN", "en"):
        d = json.loads((ROOT / "dashboard" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        named = {k.removeprefix("audit_action.") for k in d if k.startswith("audit_action.")}
        assert named == set(ACTIONS), (lang, named ^ set(ACTIONS))
    assert len(set(ACTIONS)) == len(ACTIONS)


def seed(services: Services, t0: datetime) -> None:
    """250 replays by the auditor "clerk" of site1 cameras one minute apart, then a login of sup and an alert
    acknowledged on event:12."""
    with services.db.session() as s:
        for i in range(250):
            s.add(AuditLog(at=t0 + timedelta(minutes=i), actor="clerk", role="auditor", action="replay",
                           target=f"site1/room{1 + i % 2}/cam1", ip="10.0.0.5", details={"i": i}))
        s.add(AuditLog(at=t0 + timedelta(minutes=300), actor="sup", role="supervisor", action="login",
                       ip="10.0.0.6"))
        audit.add(s, "sup", "alert_ack", role="supervisor", target="event:12")
        s.commit()


async def test_audit_api_filters_and_pages(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    t0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    seed(services, t0)
    app = create_app(services)
    async with app.router.lifespan_context(app):
        c = await asgi_login(app, "auditor")

        async def entries(**params: str | int) -> list[dict[str, Any]]:
            r = await c.get("/api/audit", params=params)
            assert r.status_code == 200, r.text
            return list(r.json()["entries"])

        first = (await c.get("/api/audit", params={"actor": "clerk", "limit": 200})).json()
        assert len(first["entries"]) == 200 and first["more"] is True
        assert [e["details"]["i"] for e in first["entries"][:2]] == [249, 248]  # newest first
        oldest = first["entries"][-1]["id"]
        rest = (await c.get("/api/audit", params={"actor": "clerk", "before_id": oldest})).json()
        assert [e["details"]["i"] for e in rest["entries"]] == list(range(49, -1, -1))
        assert rest["more"] is False

        room2 = await entries(target="site1/room2", limit=2000)
        assert len(room2) == 125 and {e["target"] for e in room2} == {"site1/room2/cam1"}
        # the prefix is literal: "_" and "%" match themselves, not any character
        assert await entries(target="site1_room") == [] and await entries(target="%") == []
        assert [e["action"] for e in await entries(target="event:1")] == ["alert_ack"]

        window = {"since": (t0 + timedelta(minutes=10)).isoformat(),
                  "until": (t0 + timedelta(minutes=20)).isoformat()}
        got = await entries(action="replay", **window)
        assert [e["details"]["i"] for e in got] == list(range(19, 9, -1))  # until is exclusive
        logins = await entries(action="login")
        assert {e["actor"] for e in logins} == {"sup", "aud"}  # the seeded one and this client's

        bad = await c.get("/api/audit", params={"since": window["until"], "until": window["since"]})
        assert bad.status_code == 422 and bad.json()["code"] == "err.bad_audit_range"
        bad = await c.get("/api/audit", params={"since": "yesterday"})
        assert bad.status_code == 422 and "since" in bad.text
        bad = await c.get("/api/audit", params={"before_id": 0})
        assert bad.status_code == 422 and "before_id" in bad.text

        # reading is audited, with the filters it used
        views = await entries(action="audit_view", limit=50)
        assert {e["actor"] for e in views} == {"aud"}
        said = [e["details"] for e in views]
        assert {"target": "site1/room2"} in said and {"action": "replay", **window} in said
        await c.aclose()


async def test_audit_export_is_the_filtered_rows_as_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export: the rows ``GET /api/audit`` would list for the same filters, all of them, as a
    CSV with times in UTC and the hub's zone and action names in the asked language; a value a
    spreadsheet would run as a formula is quoted; too many rows is a 413, not a cut file; the
    export is audited with its row count; observers and supervisors get 403."""
    import csv
    import io

    from dashboard.routes import admin

    services = make_services(tmp_path)
    t0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    seed(services, t0)
    with services.db.session() as s:
        audit.add(s, "=HYPERLINK(1)", "login_failed", target="+cmd", details={"reason": "-2"})
        s.commit()
    app = create_app(services)
    async with app.router.lifespan_context(app):
        c = await asgi_login(app, "auditor")
        export = "/api/audit/export"
        r = await c.get(export, params={"action": "replay", "target": "site1/room2", "lang": "zh-CN"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"].startswith('attachment; filename="audit_')
        assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert rows[0][:3] == ["id", "at_utc", "at (Asia/Shanghai)"]
        assert len(rows) == 1 + 125 and {row[5] for row in rows[1:]} == {"replay"}
        assert {row[6] for row in rows[1:]} == {"回放录像"}
        assert {row[7] for row in rows[1:]} == {"site1/room2/cam1"}
        newest = rows[1]
        assert newest[1] == (t0 + timedelta(minutes=249)).isoformat()
        local = (t0 + timedelta(minutes=249, hours=8)).replace(tzinfo=None)
        assert newest[2] == local.isoformat() + "+08:00"
        assert json.loads(newest[9]) == {"i": 249}

        r = await c.get("/api/audit/export", params={"action": "login_failed", "lang": "en"})
        [_head, bad] = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert bad[3] == "'=HYPERLINK(1)" and bad[7] == "'+cmd" and bad[6] == "Login failed"

        monkeypatch.setattr(admin, "AUDIT_EXPORT_MAX", 100)
        r = await c.get("/api/audit/export", params={"actor": "clerk"})
        assert r.status_code == 413 and r.json()["code"] == "err.audit_export_too_large"
        r = await c.get(export, params={"actor": "clerk", "since": (t0 + timedelta(minutes=200)).isoformat()})
        assert r.status_code == 200 and r.content.decode("utf-8-sig").count("\n") == 1 + 50

        exports = (await c.get("/api/audit", params={"action": "audit_export"})).json()["entries"]
        assert [e["details"]["rows"] for e in exports] == [50, 1, 125]  # newest first; the 413 wrote none
        assert exports[-1]["details"]["target"] == "site1/room2" and exports[0]["actor"] == "aud"
        await c.aclose()
        for role in ("supervisor", "observer"):
            other = await asgi_login(app, role)
            assert (await other.get("/api/audit/export")).status_code == 403
            await other.aclose()


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_audit_view_names_actions_filters_and_fetches_older_entries(tmp_path: Path) -> None:
    """An auditor (English): actions by name (code in the tooltip), a filter by action and target
    from the toolbar, "Older entries" fetching the next 200, a search with no match saying so."""
    services = make_services(tmp_path)
    seed(services, datetime.now(UTC) - timedelta(days=2))
    async with dashboard_in_chromium(services, 1366, 900) as b:
        page = b.page
        await ui_login(page, b.url, "auditor")
        if not (await page.evaluate("document.documentElement.lang")).startswith("en"):
            await page.click("#lang-switch")
            await page.wait_for_function("() => document.documentElement.lang === 'en'")
        await page.goto(b.url + "/#audit")
        await page.wait_for_selector("#audit-body tr[data-action='alert_ack']")
        ack = page.locator("#audit-body tr[data-action='alert_ack'] td").nth(2)
        assert await ack.inner_text() == "Acknowledged an alert"
        assert await ack.get_attribute("title") == "alert_ack"

        await page.select_option("#au-action", "replay")
        assert await page.locator("#au-action option:checked").inner_text() == "Replayed footage"
        await page.fill("#au-target", "site1/room2")
        await page.click("#au-form button[type=submit]")
        await page.wait_for_function("() => document.querySelectorAll('#audit-body tr').length === 125")
        assert await page.locator("#au-older").is_hidden()
        targets = set(await page.locator("#audit-body tr td:nth-child(4)").all_inner_texts())
        assert targets == {"site1/room2/cam1"}

        await page.fill("#au-target", "")
        await page.click("#au-form button[type=submit]")
        await page.wait_for_function("() => document.querySelectorAll('#audit-body tr').length === 200")
        await page.click("#au-older")
        await page.wait_for_function("() => document.querySelectorAll('#audit-body tr').length === 250")
        assert await page.locator("#au-older").is_hidden()
        assert await page.inner_text("#au-count") == "250 shown"

        # the export takes the toolbar's filters: the 250 replays, names in English
        async with page.expect_download() as dl:
            await page.click("#au-export")
        saved = await (await dl.value).path()
        csv_text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8-sig")
        lines = csv_text.strip().splitlines()
        assert len(lines) == 1 + 250 and all(",replay,Replayed footage," in ln for ln in lines[1:])

        await page.fill("#au-actor", "nobody")
        await page.click("#au-form button[type=submit]")
        await page.wait_for_selector("#audit-empty:not([hidden])")
        assert await page.locator("#audit-body tr").count() == 0
    assert b.errors == [] and b.console == []
