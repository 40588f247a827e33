"""Finding 15 of issue #12: the session report's inline ``<style>`` was blocked by the
dashboard's CSP (``style-src 'self'``), so auditors read an unstyled report.  The report's answer
now allows exactly its own style blocks by hash.  Real Chromium (Debian's, headless) opens the
report from a real hub socket (real SeaweedFS, a closed session with archived footage) and the
computed styles are the template's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_sessions_support import archive, cfg_dict

from config.models import EvalwatchConfig
from dashboard.app import create_app
from dashboard.services import Services
from sessions.lifecycle import close_session, create_session, parse_spec, start_session
from sessions.signing import HubKey
from storage.segments import SegmentStore
from testkit.dashboard import ROLE_USERS, make_database, password_of, serving
from testkit.hub import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.security,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="Debian chromium not installed (make system-deps)"),
]
T0 = datetime(2026, 3, 8, 1, 0, tzinfo=UTC)


async def test_report_renders_styled_under_the_dashboards_csp(
    object_store: Any, s3_server: Any, unique_site: str, tmp_path: Path
) -> None:
    site = unique_site
    raw = cfg_dict(site, tmp_path, s3_server.cfg)
    raw["hub"] = {"secret_key": "test-secret-key-0123456789", "force_password_change": False}
    raw["users"] = [{"username": u, "role": r, "password": password_of(r)} for r, u in ROLE_USERS.items()]
    cfg = EvalwatchConfig.model_validate(raw)
    db = make_database(tmp_path / "r.db")
    store = SegmentStore(object_store, db, cfg.storage.wal_dir, cfg.storage.s3.bucket_segments)
    await store.start()
    spec = {"code": "ZB-CSP-1", "project": "报告样式", "bids": ["B1"], "planned_start": T0.isoformat(),
            "planned_end": (T0 + timedelta(hours=1)).isoformat(),
            "rooms": [{"site": site, "room": "r1", "cameras": ["cam1"]}]}
    info = await create_session(db, cfg, parse_spec(spec), "sup")
    await start_session(db, info.id, "sup", now=T0)
    await archive(store, site, "r1", "cam1", T0, [(10, b"a" * 300), (10, b"b" * 300)])
    await close_session(db, cfg, HubKey.load_or_create(cfg.storage.data_dir), info.id, "sup",
                        objects=object_store, now=T0 + timedelta(seconds=21))
    app = create_app(Services(cfg=cfg, db=db, objects=object_store))
    try:
        async with serving(app) as addr:
            await _check_in_chromium(f"http://{addr}", info.id)
    finally:
        await store.stop()
        db.dispose()


async def _check_in_chromium(base: str, sid: int) -> None:
    from playwright.async_api import async_playwright

    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post("/api/auth/login", json={"username": ROLE_USERS["auditor"],
                                                  "password": password_of("auditor")})
        assert r.status_code == 200, r.text
        cookie = r.cookies["evalwatch_session"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = await browser.new_context()
            await ctx.add_cookies([{"name": "evalwatch_session", "value": cookie, "url": base}])
            page = await ctx.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text
                    else None)
            resp = await page.goto(f"{base}/api/sessions/{sid}/report?format=html&lang=zh")
            assert resp is not None and resp.status == 200
            assert "ZB-CSP-1" in await page.content()
            style = await page.evaluate("""() => {
                const th = document.querySelector('th'), body = document.body;
                const ok = document.querySelector('.ok, .bad');
                return {th: getComputedStyle(th).backgroundColor,
                        margin: getComputedStyle(body).marginLeft,
                        fontSize: getComputedStyle(body).fontSize,
                        collapse: getComputedStyle(document.querySelector('table')).borderCollapse,
                        verdict: ok ? getComputedStyle(ok).fontWeight : null};
            }""")
            # the template's rules: th { background: #eee }, body { margin: 2em }, collapse
            assert style["th"] == "rgb(238, 238, 238)", (style, violations)
            assert style["margin"] == f"{2 * float(style['fontSize'].rstrip('px')):g}px", style
            assert style["collapse"] == "collapse", style
            assert style["verdict"] in (None, "700"), style
            assert not violations, violations
            # allowed by hash only: no 'unsafe-inline', scripts still 'self' only
            csp = resp.headers["content-security-policy"]
            assert "'unsafe-inline'" not in csp and "script-src 'self';" in csp and "'sha256-" in csp
        finally:
            await browser.close()
