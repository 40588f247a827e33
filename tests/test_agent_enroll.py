"""Agent enrolment and agent status (issue #13, items 2 and 6), against a real hub process
(``evalwatch hub``: embedded SeaweedFS, SQLite, dashboard) started once for the module.

* a code from the admin API, redeemed by ``evalwatch agent enroll``: the credential lands
  owner-only in the state directory and works on the agent routes, for its own site only; a
  second use of the code, an expired code (from ``evalwatch site enroll-code --hours``, another
  process) and an unknown code are refused, and every issue, use and refusal is in the audit
  log; a credential revoked through the API, and another through ``evalwatch site revoke-agent``
  (another process), is refused at once on every agent route while the secrets-file token keeps
  working; an enrolled agent whose credential is revoked stops at start-up with a clear message;
* ``evalwatch agent --state-dir D`` (a real agent process with no config file) runs from its
  enrolled state: its footage is archived, and ``GET /api/agents`` lists it with its version,
  OS, CPU load, spool fill and cameras and no flag, while a heartbeat whose clock is 5 s off and
  whose spool is 90 % full is flagged ``clock`` and ``spool``; revoked while it runs, its live
  connection is closed and its heartbeats refused; a heartbeat answer naming another
  configuration version restarts it; with the hub unreachable the agent starts from its cached
  configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from capture.agent import Agent
from capture.enroll import EnrollError, enroll, enrolled_config, load_state, write_private
from storage.s3server import free_port
from testkit.capture import make_clip
from testkit.hub import CHROMIUM, CHROMIUM_ARGS, ROOT, hub_process, system_config

pytestmark = [pytest.mark.agent, pytest.mark.timeout(180)]

ADMIN_PW = "adm-enrol-pw-1"
TOKENS = {"s01": "tok-enrol-site-one-0123456789", "s02": "tok-enrol-site-two-0123456789"}


class Hub:
    def __init__(self, url: str, cfg_path: Path, tmp: Path) -> None:
        self.url, self.cfg_path, self.tmp = url, cfg_path, tmp
        self.admin = httpx.Client(base_url=url, timeout=10)
        r = self.admin.post("/api/auth/login", json={"username": "adm", "password": ADMIN_PW})
        assert r.status_code == 200, r.text
        self.admin.headers["X-CSRF-Token"] = r.json()["csrf"]

    def code(self, site: str = "s01", **body: Any) -> str:
        r = self.admin.post(f"/api/sites/{site}/enroll-codes", json=body or None)
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def audit(self, action: str) -> list[dict[str, Any]]:
        r = self.admin.get("/api/audit", params={"action": action})
        assert r.status_code == 200, r.text
        return list(r.json()["entries"])

    def log(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.tmp.glob("*.log")
        )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``evalwatch ARGS`` run in this (the test's, not the hub's) process: (exit code, out, err)."""
    from evalwatch.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("enrol")
    clip = make_clip(tmp / "clip.mp4", seconds=4)
    doc = system_config(tmp, {}, users=[{"username": "adm", "role": "admin", "password": ADMIN_PW}])
    doc["capture"].update(heartbeat_seconds=1, reconnect_min_seconds=0.5, reconnect_max_seconds=2)
    room = yaml.safe_load((ROOT / "sample_videos" / "room_a.room.yaml").read_text(encoding="utf-8"))
    room["cameras"][0].update(source=str(clip), width=320, height=240)
    doc["sites"] = [{"id": s, "agent_token": TOKENS[s], "rooms": [room]} for s in TOKENS]
    cfg_path = tmp / "evalwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with hub_process(cfg_path, cwd=tmp) as url:
        yield Hub(url, cfg_path, tmp)


def agent_calls(url: str, credential: str, site: str = "s01") -> dict[str, int]:
    """The status of every agent route called with ``credential`` (bodies valid enough to pass
    authentication)."""
    h = {"Authorization": f"Bearer {credential}"}
    cam = {"site": site, "room": "room-a", "camera": "cam1"}
    now = datetime.now(UTC)
    with httpx.Client(base_url=url, headers=h, timeout=10) as c:
        return {
            "heartbeat": c.post(
                "/api/ingest/heartbeat", json={"site": site, "agent": {}, "cameras": []}
            ).status_code,
            "config": c.get("/api/ingest/config", params={"site": site}).status_code,
            "offer": c.post("/api/ingest/offer", json={**cam, "sdp": "v=0", "type": "offer"}).status_code,
            "missing": c.get(
                "/api/ingest/missing", params={**cam, "since": (now - timedelta(minutes=1)).isoformat()}
            ).status_code,
            "segment": c.put(
                f"/api/ingest/segments/{site}/room-a/cam1",
                content=b"x",
                params={"start": now.isoformat(), "end": (now + timedelta(seconds=1)).isoformat()},
            ).status_code,
            "incidents": c.post("/api/ingest/incidents", json={"site": site}).status_code,
            "sessions": c.get("/api/ingest/sessions", params={"site": site, "after": -1}).status_code,
        }


def test_enrol_single_use_expiry_revocation_and_audit(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = hub.code("s01")
    state_dir = tmp_path / "state"
    r = cli(
        "agent",
        "enroll",
        hub.url,
        "--code",
        code.lower().replace("-", ""),
        "--state-dir",
        str(state_dir),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert code not in r.stdout + r.stderr
    state = load_state(state_dir)
    assert state.site == "s01" and state.hub_url == hub.url and state.tls_fingerprint is None
    assert state.credential.startswith("ewa1.") and state.credential not in (r.stdout + r.stderr)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state_dir / "agent.json").st_mode) == 0o600

    # The credential works on the agent routes (past authentication), for its own site only.
    ok = agent_calls(hub.url, state.credential)
    assert ok["heartbeat"] == 200 and ok["config"] == 200 and ok["missing"] == 200, ok
    assert all(s not in (401, 403) for s in ok.values()), ok
    other = agent_calls(hub.url, state.credential, site="s02")
    assert other["heartbeat"] == 403 and other["offer"] == 403 and other["config"] == 403, other

    # Second use, an unknown code, an expired code (issued by the CLI, another process).
    with pytest.raises(EnrollError, match=r"HTTP 409.*already been used"):
        enroll(hub.url, code, tmp_path / "again")
    with pytest.raises(EnrollError, match=r"HTTP 401.*Unknown enrolment code"):
        enroll(hub.url, "ABCDE-FGHJK-MNPQR-STUVW", tmp_path / "again")
    rc, out, err = command(
        capsys, "site", "enroll-code", "s01", "--hours", "0.0002", "--config", str(hub.cfg_path)
    )
    assert rc == 0, err
    expiring = out.split("--code ")[-1].strip()
    time.sleep(1.0)
    with pytest.raises(EnrollError, match=r"HTTP 410.*expired"):
        enroll(hub.url, expiring, tmp_path / "again")
    assert not (tmp_path / "again").exists()
    rc, out, err = command(capsys, "site", "enroll-code", "s99", "--config", str(hub.cfg_path))
    assert rc == 2 and "no site 's99'" in err, err

    issued = hub.audit("enroll_code_issue")
    assert {e["actor"].split(":")[0] for e in issued} >= {"adm", "cli"}, issued
    used = hub.audit("enroll_code_use")
    assert any(e["details"]["credential_id"] == state.credential_id for e in used), used
    reasons = {e["details"]["reason"] for e in hub.audit("enroll_code_refused")}
    assert {"used", "unknown", "expired"} <= reasons, reasons
    audit_text = json.dumps(hub.audit("enroll_code_use") + issued)
    assert code not in audit_text and state.credential not in audit_text
    assert code not in hub.log() and state.credential not in hub.log()

    # Revoked through the API: refused at once on every agent route; the secrets token still works.
    second = enroll(hub.url, hub.code("s01"), tmp_path / "second")
    resp = hub.admin.post("/api/sites/s01/revoke-agent", json={"id": state.credential_id})
    assert resp.status_code == 200 and resp.json()["revoked"] == [state.credential_id], resp.text
    refused = agent_calls(hub.url, state.credential)
    assert set(refused.values()) == {401}, refused
    assert hub.admin.post("/api/sites/s01/revoke-agent", json={"id": state.credential_id}).status_code == 404
    assert agent_calls(hub.url, second.credential)["heartbeat"] == 200
    assert agent_calls(hub.url, TOKENS["s01"])["heartbeat"] == 200
    with pytest.raises(EnrollError, match="refused this agent's credential"):
        enrolled_config(state_dir, wait=False)
    rc, out, err = command(capsys, "agent", "--state-dir", str(state_dir))
    assert rc == 2 and "revoked" in err, err

    # Revoked from the command line (another process than the hub's): refused at once as well.
    rc, out, err = command(
        capsys, "site", "revoke-agent", "s01", second.credential_id, "--config", str(hub.cfg_path)
    )
    assert rc == 0 and second.credential_id in out, err
    assert agent_calls(hub.url, second.credential)["heartbeat"] == 401
    revokes = hub.audit("agent_revoke")
    assert {e["details"]["credentials"][0] for e in revokes} >= {state.credential_id, second.credential_id}
    creds = {c["id"]: c for c in hub.admin.get("/api/agents").json()["credentials"]}
    assert creds[state.credential_id]["revoked_by"] == "adm" and creds[second.credential_id]["revoked_at"]


def test_enrolled_agent_runs_without_config_and_reports_status(hub: Hub, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state = enroll(hub.url, hub.code("s01"), state_dir)
    started = datetime.now(UTC)
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evalwatch",
                "agent",
                "--state-dir",
                str(state_dir),
                "--no-analysis",
                "--duration",
                "60",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        mine: dict[str, Any] = {}
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, (tmp_path / "agent.log").read_text(errors="replace")[-3000:]
            agents = hub.admin.get("/api/agents").json()["agents"]
            mine = next((a for a in agents if a["credential_id"] == state.credential_id), {})
            replay = hub.admin.get(
                "/api/replay/s01/room-a/cam1",
                params={
                    "start": started.isoformat(),
                    "end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
                },
            )
            assert replay.status_code == 200, replay.text
            # the status is the last heartbeat's: wait for one sent after a segment was spooled
            if mine and replay.json()["segments"] and mine["cameras"][0]["frames"] and mine["spool_bytes"]:
                break
            assert time.monotonic() < deadline, (
                f"agent not seen with footage: {mine}\n"
                f"{(tmp_path / 'agent.log').read_text(errors='replace')[-3000:]}\n{hub.log()}"
            )
            time.sleep(0.5)
        assert (state_dir / "config.json").exists()
        assert stat.S_IMODE(os.stat(state_dir / "config.json").st_mode) == 0o600
        assert (state_dir / "spool").is_dir()
        assert mine["site"] == "s01" and mine["version"] == "0.1.0" and mine["os"], mine
        assert mine["host"] and mine["cpu_count"] >= 1 and mine["cpu_load"] is not None, mine
        assert mine["spool_quota_bytes"] == 64 * 1024 * 1024 and mine["spool_bytes"] > 0, mine
        assert 0 <= mine["spool_percent"] < 80, mine
        assert mine["cameras"][0]["room"] == "room-a" and mine["cameras"][0]["camera"] == "cam1", mine
        assert abs(mine["clock_offset_s"]) < 2 and mine["flags"] == [], mine

        # An agent whose clock is 5 s ahead and whose spool is 90 % full is flagged.
        skewed = {
            "site": "s01",
            "cameras": [],
            "agent": {
                "host": "skewed-pc",
                "time": (datetime.now(UTC) + timedelta(seconds=5)).isoformat(),
                "spool_bytes": 90,
                "spool_quota_bytes": 100,
            },
        }
        r = httpx.post(
            f"{hub.url}/api/ingest/heartbeat",
            json=skewed,
            headers={"Authorization": f"Bearer {TOKENS['s01']}"},
        )
        assert r.status_code == 200, r.text
        agents = hub.admin.get("/api/agents").json()["agents"]
        flagged = next(a for a in agents if a["host"] == "skewed-pc")
        assert flagged["credential_id"] is None and 4 < flagged["clock_offset_s"] < 6, flagged
        assert set(flagged["flags"]) == {"clock", "spool"} and flagged["spool_percent"] == 90.0, flagged
        mine = next(a for a in agents if a["credential_id"] == state.credential_id)
        assert mine["flags"] == [], mine

        # Revoked while it runs: its live connection is closed too, its heartbeats refused.
        def cam_status() -> dict[str, Any]:
            cams = hub.admin.get("/api/cameras/status").json()["cameras"]
            return next(c for c in cams if (c["site"], c["room"], c["camera"]) == ("s01", "room-a", "cam1"))

        assert cam_status()["online"] and cam_status()["last_error"] is None, cam_status()
        r = hub.admin.post("/api/sites/s01/revoke-agent", json={"id": state.credential_id})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while cam_status()["last_error"] != "agent credential revoked":
            assert time.monotonic() < deadline, f"live connection not closed: {cam_status()}\n{hub.log()}"
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        agent_log = tmp_path / "agent.log"
        while "heartbeat refused site=s01: HTTP 401" not in agent_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, agent_log.read_text(errors="replace")[-3000:]
            time.sleep(0.3)
    finally:
        proc.kill()  # revoked, it would spend its 10 s shutdown grace trying to upload the spool
        proc.wait(30)

    # A heartbeat answer naming another configuration version stops the agent for a restart.
    fresh = enroll(hub.url, hub.code("s01"), tmp_path / "state2")
    cfg, _state, version = enrolled_config(tmp_path / "state2", wait=False)
    cfg.capture.spool_dir = str(tmp_path / "spool2")
    agent = Agent(cfg, "s01", hub_url=hub.url, token=fresh.credential, live=False)
    agent.config_version = version
    assert not asyncio.run(run_for(agent, 3.0)) and not agent.config_changed
    agent = Agent(cfg, "s01", hub_url=hub.url, token=fresh.credential, live=False)
    agent.config_version = "an-older-version"
    assert asyncio.run(run_for(agent, 20.0)) and agent.config_changed

    # The hub unreachable at start-up: the agent runs with its cached configuration.
    moved = state.model_copy(update={"hub_url": f"http://127.0.0.1:{free_port()}"})
    write_private(state_dir / "agent.json", moved.model_dump_json().encode())
    cfg, again, _version = enrolled_config(state_dir, wait=False)
    assert again.site == "s01" and [r.id for r in cfg.site("s01").rooms] == ["room-a"]
    assert cfg.site("s01").agent_token is None and cfg.site("s01").rooms[0].seats


async def run_for(agent: Agent, seconds: float) -> bool:
    """Run ``agent`` for at most ``seconds``; True when it stopped by itself before."""
    t0 = time.monotonic()
    await agent.run(asyncio.Event(), duration=seconds)
    return time.monotonic() - t0 < seconds - 0.5


def test_codes_and_credentials_in_the_database(database: Any) -> None:
    """On SQLite and PostgreSQL: a code redeems once and not after it expires; only hashes are
    stored; a revoked credential no longer resolves."""
    from sqlalchemy import select

    from storage import agents
    from storage.models import AgentCredential, EnrollCode

    with database.session() as s, s.begin():
        code = agents.issue_code(s, "s01", "adm", timedelta(hours=1))
        stale = agents.issue_code(s, "s01", "adm", timedelta(hours=1))
        s.get(EnrollCode, stale.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with database.session() as s, s.begin():
        first = agents.redeem_code(s, code.code.lower(), "10.0.0.1")
    with database.session() as s, s.begin():
        again = agents.redeem_code(s, code.code, "10.0.0.2")
    assert isinstance(first, agents.Redeemed) and first.site == "s01"
    assert again == agents.Refused("used", code.id, "s01")
    with database.session() as s, s.begin():
        assert agents.redeem_code(s, stale.code, None) == agents.Refused("expired", stale.id, "s01")
        assert agents.redeem_code(s, "nope", None) == agents.Refused("malformed")
        gone = agents.issue_code(s, "s09", "adm", timedelta(hours=1))
        assert agents.redeem_code(s, gone.code, None, {"s01"}) == agents.Refused("site_gone", gone.id, "s09")
        rows = [*s.scalars(select(EnrollCode.code_hash)), *s.scalars(select(AgentCredential.secret_hash))]
        assert code.code not in rows and first.credential not in rows and len(rows) == 4
        assert agents.credential_site(s, first.credential) == ("s01", first.credential_id)
        assert agents.credential_site(s, first.credential + "x") is None
        assert agents.revoke(s, "s02", first.credential_id, "adm") == []
        assert agents.revoke(s, "s01", None, "adm") == [first.credential_id]
        assert agents.credential_site(s, first.credential) is None


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (make system-deps)")
def test_agents_view_creates_a_code_flags_and_revokes(hub: Hub, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    state = enroll(hub.url, hub.code("s02"), tmp_path / "state")
    beat = {
        "site": "s02",
        "cameras": [],
        "agent": {
            "host": "late-pc",
            "time": (datetime.now(UTC) - timedelta(seconds=9)).isoformat(),
            "version": "0.1.0",
        },
    }
    r = httpx.post(
        f"{hub.url}/api/ingest/heartbeat", json=beat, headers={"Authorization": f"Bearer {state.credential}"}
    )
    assert r.status_code == 200, r.text
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = ctx.new_page()
            page.goto(hub.url + "/login")
            page.fill("#username", "adm")
            page.fill("#password", ADMIN_PW)
            page.click("#login-submit")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            page.goto(hub.url + "/#agents")
            row = page.locator("#agents-body tr", has_text="late-pc")
            row.wait_for(timeout=10_000)
            assert row.get_attribute("data-flags") == "clock", row.inner_text()
            assert page.locator("#agents-empty").is_hidden()
            assert page.locator("#agent-creds-empty").is_hidden()
            page.select_option("#ag-site", "s02")
            page.click("#ag-code-form button[type=submit]")
            page.wait_for_selector("#ag-code-box:not([hidden])", timeout=10_000)
            code = page.inner_text("#ag-code")
            assert len(code) == 23 and code.count("-") == 3, code
            page.on("dialog", lambda d: d.accept())
            cred_row = page.locator("#agent-creds-body tr", has_text=state.credential_id)
            cred_row.locator("button").click()
            page.wait_for_function(
                "(id) => [...document.querySelectorAll('#agent-creds-body tr')].some("
                "(tr) => tr.textContent.includes(id) && !tr.querySelector('button'))",
                arg=state.credential_id,
                timeout=10_000,
            )
        finally:
            ctx.close()
    assert agent_calls(hub.url, state.credential, site="s02")["heartbeat"] == 401
    second = enroll(hub.url, code, tmp_path / "other")  # the code the view showed works
    assert second.site == "s02"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (make system-deps)")
async def test_agents_view_of_a_new_hub_says_how_agents_get_there(tmp_path: Path) -> None:
    """No agent yet: each of the view's two tables is under its heading and says it is empty, and
    how an agent comes to be listed (an enrolment code, ``evalwatch agent enroll``)."""
    from testkit.dashboard import dashboard_in_chromium, make_services, ui_login

    async with dashboard_in_chromium(make_services(tmp_path), 1366, 900) as b:
        await ui_login(b.page, b.url, "admin")
        if not (await b.page.evaluate("document.documentElement.lang")).startswith("en"):
            await b.page.click("#lang-switch")
        await b.page.goto(b.url + "/#agents")
        await b.page.wait_for_selector("#agents-empty:not([hidden])", timeout=10_000)
        await b.page.wait_for_selector("#agent-creds-empty:not([hidden])")
        assert "evalwatch agent enroll" in await b.page.inner_text("#agents-empty")
        assert "site token" in await b.page.inner_text("#agent-creds-empty")
        headings = await b.page.locator("#view-agents h2").all_inner_texts()
        assert headings == ["Site agents (as their last heartbeat reports)", "Enrolled agent credentials"]
        assert await b.page.locator("#agents-body tr").count() == 0
    assert b.errors == [] and b.console == []


async def test_enrolment_is_throttled_per_address(tmp_path: Path) -> None:
    """Failed enrolments are counted per address like logins: past the limit even a valid code is
    refused (429, audited ``throttled``) without being used."""
    from dashboard.app import create_app
    from dashboard.security import LoginThrottle
    from storage import agents
    from storage.models import AuditLog
    from testkit.dashboard import make_services

    services = make_services(tmp_path)
    app = create_app(services)
    app.state.dash.enroll_throttle = LoginThrottle(max_failures=3, window=300)
    with services.db.session() as s, s.begin():
        good = agents.issue_code(s, "site1", "adm", timedelta(hours=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        for _ in range(3):
            r = await c.post("/api/agent/enroll", json={"code": "ABCDE-FGHJK-MNPQR-STUVW"})
            assert r.status_code == 401 and r.json()["code"] == "err.enroll_code_invalid", r.text
        r = await c.post("/api/agent/enroll", json={"code": good.code})
        assert r.status_code == 429 and r.json()["code"] == "err.too_many_enroll_attempts", r.text
        r = await c.post("/api/agent/enroll", json={"code": 5})
        assert r.status_code == 422 and r.json()["detail"].startswith("Invalid input: code:"), r.text
    with services.db.session() as s:
        reasons = [a.details["reason"] for a in s.query(AuditLog).filter_by(action="enroll_code_refused")]
        assert reasons == ["unknown"] * 3 + ["throttled"], reasons
        assert agents.redeem_code(s, good.code, None).__class__ is agents.Redeemed  # still unused


def test_state_dir_defaults_and_heartbeat_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The state directory per OS and user; a heartbeat's agent block with wrong types or a time
    without zone is recorded without an offset instead of failing."""
    from capture import enroll as enroll_mod
    from capture.agentstatus import AgentMonitor

    monkeypatch.delenv("EVALWATCH_AGENT_STATE_DIR", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(enroll_mod.os, "geteuid", lambda: 1000)
    assert enroll_mod.default_state_dir() == tmp_path / "xdg" / "evalwatch"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/evalwatch")  # systemd's StateDirectory=
    assert enroll_mod.default_state_dir() == Path("/var/lib/evalwatch")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setattr(enroll_mod.os, "geteuid", lambda: 0)
    assert enroll_mod.default_state_dir() == Path("/var/lib/evalwatch")
    monkeypatch.setattr(enroll_mod.sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", r"C:\ProgramData")
    assert str(enroll_mod.default_state_dir()) == r"C:\ProgramData\evalwatch"
    monkeypatch.setenv("EVALWATCH_AGENT_STATE_DIR", str(tmp_path / "mine"))
    assert enroll_mod.default_state_dir() == tmp_path / "mine"

    now = datetime.now(UTC)
    mon = AgentMonitor()
    bad = {
        "time": "2026-01-01T00:00:00",
        "spool_bytes": "lots",
        "cpu_load": True,
        "host": 7,
        "version": ["x"],
    }
    seen = mon.beat("s01", None, bad, [{"room": "r", "camera": "c", "frames": "many"}], now, None)
    assert seen.clock_offset_s is None and seen.spool_percent is None and seen.cpu_load is None
    assert seen.host is None and seen.version is None and seen.cameras[0]["frames"] is None
    assert seen.flags(now) == [] and seen.flags(now + timedelta(seconds=31)) == ["silent"]
    late = mon.beat(
        "s01", "abc", {"time": (now - timedelta(seconds=3)).isoformat(), "host": "pc"}, [], now, None
    )
    assert late.clock_offset_s == -3.0 and late.flags(now) == ["clock"] and len(mon.agents()) == 2
    assert late.clock_newly_off  # logged once, not at every heartbeat:
    again = mon.beat(
        "s01", "abc", {"time": (now - timedelta(seconds=3)).isoformat(), "host": "pc"}, [], now, None
    )
    assert again.clock_off and not again.clock_newly_off


def test_an_enrolled_agent_installs_as_a_service() -> None:
    """``install-service`` without ``--config`` installs the enrolled agent; its state directory is
    writable by the service."""
    from capture.service import service_spec, systemd_unit

    spec = service_spec(
        "evalwatch-agent", "evalwatch", ["--state-dir", "/srv/ew", "--no-analysis"], platform="linux"
    )
    unit = systemd_unit(spec)
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "agent --state-dir /srv/ew" in exec_start and "--config" not in exec_start, exec_start
    assert "/srv/ew" in spec.writable and spec.site == "-"
