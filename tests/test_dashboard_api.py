"""Dashboard REST API with httpx: auth, lockout, CSRF, alert workflow, snapshots, replay, admin."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from sqlalchemy import select
from websockets.typing import Origin

from dashboard.app import create_app, load_dictionary
from dashboard.services import Services
from storage.incident import EventLive, snapshot_url
from storage.models import AuditLog, Segment, User
from testkit.dashboard import ROLE_USERS, add_event, make_services, password_of

BASE = "http://testserver"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return make_services(tmp_path)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5555)), base_url=BASE)


async def login(c: httpx.AsyncClient, role: str) -> str:
    r = await c.post("/api/auth/login", json={"username": ROLE_USERS[role], "password": password_of(role)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return str(r.json()["csrf"])


def audit_rows(services: Services, action: str | None = None) -> list[AuditLog]:
    with services.db.session() as s:
        q = select(AuditLog).order_by(AuditLog.id)
        if action:
            q = q.where(AuditLog.action == action)
        return list(s.scalars(q))


async def test_login_sets_secure_cookie_and_hashes_password(app: Any, services: Services) -> None:
    async with client(app) as c:
        r = await c.post("/api/auth/login", json={"username": "sup", "password": password_of("supervisor")})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert password_of("supervisor") not in cookie
        me = (await c.get("/api/auth/me")).json()
        assert me["role"] == "supervisor" and me["username"] == "sup" and len(me["csrf"]) > 20
    with services.db.session() as s:
        u = s.scalars(select(User).where(User.username == "sup")).one()
        assert u.password_hash.startswith("$argon2id$")
    assert [a.actor for a in audit_rows(services, "login")] == ["sup"]
    assert audit_rows(services, "login")[0].ip == "10.1.2.3"


async def test_wrong_password_then_throttle(app: Any, services: Services) -> None:
    async with client(app) as c:
        for _ in range(5):
            r = await c.post("/api/auth/login", json={"username": "sup", "password": "nope-nope-nope"})
            assert r.status_code == 401
            assert r.json() == {"detail": "Wrong username or password.", "code": "err.bad_credentials"}
        # this address is throttled for this account now: even the right password is refused
        r = await c.post("/api/auth/login", json={"username": "sup", "password": password_of("supervisor")})
        assert r.status_code == 429 and r.json()["code"] == "err.too_many_attempts"
        # unknown user gets the same answer as a wrong password
        r = await c.post("/api/auth/login", json={"username": "ghost", "password": "whatever-123"})
        assert r.status_code == 401 and r.json()["code"] == "err.bad_credentials"
    fails = audit_rows(services, "login_failed")
    assert len(fails) == 7
    assert "throttled" in str(fails[5].details)
    assert all(
        password_of("supervisor") not in str(a.details) and "nope" not in str(a.details) for a in fails
    )
    # the admin can unlock (forgets the throttle of the account)
    async with client(app) as c:
        await login(c, "admin")
        r = await c.patch("/api/users/sup", json={"unlock": True})
        assert r.status_code == 200 and r.json()["failed_logins"] == 0
    async with client(app) as c:
        await login(c, "supervisor")


async def test_ip_throttle(app: Any) -> None:
    st = app.state.dash
    st.throttle.max_failures = 3
    async with client(app) as c:
        for i in range(3):
            r = await c.post("/api/auth/login", json={"username": f"u{i}", "password": "x" * 12})
            assert r.status_code == 401
        r = await c.post("/api/auth/login", json={"username": "obs", "password": password_of("observer")})
        assert r.status_code == 429 and r.json()["code"] == "err.too_many_attempts"


class Verifications(list[bool]):
    """One entry per argon2 verification: True when it ran on the event loop's thread."""

    peak = 0


def count_verifications(monkeypatch: pytest.MonkeyPatch) -> Verifications:
    """Wrap the argon2 verifier (wherever the login route finds it): count its calls, note whether
    each ran on the event loop and the most that ran at once."""
    import threading

    import dashboard.routes.auth as auth_routes
    import dashboard.security as security

    calls = Verifications()
    real = security.verify_password
    lock = threading.Lock()
    active = [0]

    def counted(password_hash: str | None, password: str) -> bool:
        try:
            asyncio.get_running_loop()
            calls.append(True)
        except RuntimeError:
            calls.append(False)
        with lock:
            active[0] += 1
            calls.peak = max(calls.peak, active[0])
        try:
            return real(password_hash, password)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(security, "verify_password", counted)
    monkeypatch.setattr(auth_routes, "verify_password", counted, raising=False)  # pre-fix import
    return calls


@pytest.mark.security
async def test_login_flood_neither_freezes_the_hub_nor_buys_verifications(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 #3: 60 concurrent bad logins from one address.  The address is charged before
    argon2 runs, so only the throttle's allowance is verified (the rest: 429 at once), and argon2
    runs off the event loop, so /healthz keeps answering within 1 s throughout."""
    from dashboard.security import ARGON2_CONCURRENCY

    st = app.state.dash
    allowance = st.throttle.max_failures
    calls = count_verifications(monkeypatch)
    done = asyncio.Event()
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def poll_health() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.7.7.7", 1)), base_url=BASE
        ) as hc:
            while not done.is_set():
                t0 = loop.time()
                r = await hc.get("/healthz")
                latencies.append(loop.time() - t0)
                assert r.status_code == 200
                await asyncio.sleep(0.05)

    async def flood() -> list[httpx.Response]:
        async with client(app) as c:
            try:
                return await asyncio.gather(
                    *(
                        c.post("/api/auth/login", json={"username": f"nobody{i}", "password": "x" * 12})
                        for i in range(60)
                    )
                )
            finally:
                done.set()

    poller = asyncio.create_task(poll_health())
    responses = await flood()
    await poller

    codes = [r.status_code for r in responses]
    assert len(calls) <= allowance, f"{len(calls)} argon2 verifications for an allowance of {allowance}"
    assert codes.count(401) == allowance and codes.count(429) == 60 - allowance, codes
    assert all(r.json()["code"] == "err.too_many_attempts" for r in responses if r.status_code == 429)
    assert not any(calls), "argon2 ran on the event loop"
    assert calls.peak <= ARGON2_CONCURRENCY
    assert latencies and max(latencies) < 1.0, f"/healthz took up to {max(latencies):.2f}s"
    # another address is not affected
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 5555)), base_url=BASE
    ) as other:
        await login(other, "observer")


@pytest.mark.security
async def test_concurrent_bad_logins_for_one_account_stop_at_the_throttle(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3 of #12 (adapted to finding 6): the (address, account) pair is charged before
    argon2 too: 20 concurrent wrong passwords for one user from one address get at most
    PAIR_MAX_FAILURES verifications, the rest 429 ``err.too_many_attempts``; the account itself
    is not locked (another address logs in at once)."""
    from dashboard.security import PAIR_MAX_FAILURES

    calls = count_verifications(monkeypatch)
    async with client(app) as c:
        responses = await asyncio.gather(
            *(
                c.post("/api/auth/login", json={"username": "sup", "password": "nope-nope-nope"})
                for _ in range(20)
            )
        )
    codes = [r.status_code for r in responses]
    assert len(calls) <= PAIR_MAX_FAILURES and not any(calls)
    assert codes.count(401) == PAIR_MAX_FAILURES and codes.count(429) == 20 - PAIR_MAX_FAILURES, codes
    assert all(r.json()["code"] == "err.too_many_attempts" for r in responses if r.status_code == 429)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.8", 5555)), base_url=BASE
    ) as other:
        await login(other, "supervisor")


@pytest.mark.security
async def test_nobody_can_lock_the_only_admin(
    app: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6 of #12: wrong passwords for ``admin`` from 8 addresses (more than the old lock
    threshold) do not lock it — the admin logs in at once from their own address —, and 429 vs 401
    does not tell a real account from an unknown one: both are throttled after the same number of
    failures, and each attempt costs the same argon2 work (an unknown user is verified against a
    dummy hash), so the timing does not tell either."""
    from dashboard.security import PAIR_MAX_FAILURES

    async def attempt(ip: str, user: str) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 5555)), base_url=BASE
        ) as c:
            return await c.post("/api/auth/login", json={"username": user, "password": "nope-nope-nope"})

    for i in range(8):
        assert (await attempt(f"10.4.0.{i + 1}", "admin")).status_code == 401
    async with client(app) as c:
        await login(c, "admin")
    # enumeration: the same answers and the same argon2 work, attempt by attempt, for a real and
    # an unknown user
    calls = count_verifications(monkeypatch)

    async def probe(ip: str, user: str) -> list[tuple[int, int]]:
        out = []
        for _ in range(PAIR_MAX_FAILURES + 2):
            before = len(calls)
            out.append(((await attempt(ip, user)).status_code, len(calls) - before))
        return out

    real, ghost = await probe("10.5.0.1", "sup"), await probe("10.5.0.2", "ghost")
    assert real == ghost == [(401, 1)] * PAIR_MAX_FAILURES + [(429, 0), (429, 0)]
    with services.db.session() as s:
        admin = s.scalars(select(User).where(User.username == "admin")).one()
        assert admin.locked_until is None


@pytest.mark.security
async def test_good_login_does_not_reset_the_address_counter(app: Any) -> None:
    """Finding 6 of #12: an attacker who knows one password cannot use it to reset the address's
    failure count and go on guessing other accounts."""
    st = app.state.dash
    st.throttle.max_failures = 4
    async with client(app) as c:
        for i in range(3):
            r = await c.post("/api/auth/login", json={"username": f"victim{i}", "password": "x" * 12})
            assert r.status_code == 401
        await login(c, "observer")  # a good login: refunded, but the 3 failures stay
        r = await c.post("/api/auth/login", json={"username": "victim9", "password": "x" * 12})
        assert r.status_code == 401
        r = await c.post("/api/auth/login", json={"username": "victim8", "password": "x" * 12})
        assert r.status_code == 429 and r.json()["code"] == "err.too_many_attempts"


@pytest.mark.security
async def test_forwarded_for_only_from_trusted_proxies(app: Any, services: Services) -> None:
    """Finding 6 of #12: X-Forwarded-For from 127.0.0.1 is ignored unless ``hub.trusted_proxies``
    names it (throttle and audit see the real peer); uvicorn does not apply it either."""
    import ipaddress

    from evalwatch.hub import uvicorn_config

    assert services.cfg.hub.trusted_proxies == []
    assert uvicorn_config(services.cfg, app).proxy_headers is False
    for trusted in ([], ["127.0.0.1/32"]):
        app.state.dash.trusted_proxies = [ipaddress.ip_network(n) for n in trusted]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5555)), base_url=BASE
        ) as c:
            r = await c.post(
                "/api/auth/login",
                json={"username": "sup", "password": "nope-nope-nope"},
                headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
            )
            assert r.status_code == 401
    assert [a.ip for a in audit_rows(services, "login_failed")] == ["127.0.0.1", "203.0.113.9"]


@pytest.mark.security
async def test_password_change_is_throttled_and_needs_the_current_password(app: Any) -> None:
    """Finding 6 of #12: a stolen session cannot guess the current password at leisure; after
    PAIR_MAX_FAILURES wrong ones the change answers 429 (even with the right one)."""
    from dashboard.security import PAIR_MAX_FAILURES

    async with client(app) as c:
        await login(c, "observer")
        r = await c.post("/api/auth/password", json={"old_password": "", "new_password": "n" * 12})
        assert r.status_code == 422
        for _ in range(PAIR_MAX_FAILURES):
            r = await c.post(
                "/api/auth/password", json={"old_password": "guess-guess", "new_password": "n" * 12}
            )
            assert r.status_code == 401 and r.json()["code"] == "err.bad_credentials"
        r = await c.post(
            "/api/auth/password", json={"old_password": password_of("observer"), "new_password": "n" * 12}
        )
        assert r.status_code == 429 and r.json()["code"] == "err.too_many_attempts"


async def test_csrf_and_origin_required_for_state_changes(app: Any, services: Services) -> None:
    eid = add_event(services.db)
    async with client(app) as c:
        csrf = await login(c, "supervisor")
        del c.headers["X-CSRF-Token"]
        r = await c.post(f"/api/events/{eid}/ack")
        assert r.status_code == 403 and r.json()["code"] == "err.csrf"
        r = await c.post(f"/api/events/{eid}/ack", headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403 and r.json()["code"] == "err.csrf"
        r = await c.post(
            f"/api/events/{eid}/ack", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        )
        assert r.status_code == 403 and r.json()["code"] == "err.bad_origin"
        r = await c.post(f"/api/events/{eid}/ack", headers={"X-CSRF-Token": csrf, "Origin": BASE})
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"


async def test_forged_or_stale_cookie_is_anonymous(app: Any) -> None:
    async with client(app) as c:
        c.cookies.set("evalwatch_session", "eyJ1IjoxfQ.forged.sig")
        assert (await c.get("/api/auth/me")).status_code == 401
    async with client(app) as c:
        await login(c, "observer")
        assert (await c.get("/api/auth/me")).status_code == 200
        async with client(app) as admin:
            await login(admin, "admin")
            r = await admin.patch("/api/users/obs", json={"password": "a-brand-new-password"})
            assert r.status_code == 200
        app.state.dash.users.invalidate()
        assert (await c.get("/api/auth/me")).status_code == 401  # password change revoked the session


async def test_alert_workflow(app: Any, services: Services) -> None:
    eid = add_event(services.db, rule="extra_person", seat="s2")
    async with client(app) as c:
        await login(c, "supervisor")
        r = await c.post(f"/api/events/{eid}/resolve", json={"note": "x"})
        assert r.status_code == 409 and r.json()["code"] == "err.bad_transition"  # must ack first
        r = await c.post(f"/api/events/{eid}/ack")
        assert r.status_code == 200
        body = r.json()
        assert (
            body["status"] == "acknowledged" and body["acknowledged_by"] == "sup" and body["acknowledged_at"]
        )
        assert (await c.post(f"/api/events/{eid}/ack")).status_code == 409
        r = await c.post(f"/api/events/{eid}/resolve", json={"note": "  "})
        assert r.status_code == 422 and r.json()["code"] == "err.note_required"
        r = await c.post(f"/api/events/{eid}/resolve", json={"note": "visitor was the IT technician"})
        assert r.status_code == 200
        assert r.json()["status"] == "resolved" and r.json()["resolved_by"] == "sup"
        assert r.json()["note"] == "visitor was the IT technician"
        eid2 = add_event(services.db, rule="phone")
        r = await c.post(f"/api/events/{eid2}/resolve", json={"false_alarm": True})
        assert r.status_code == 200 and r.json()["status"] == "false_alarm"
        # filters
        r = await c.get("/api/events", params={"status": ["resolved", "false_alarm"]})
        assert sorted(e["id"] for e in r.json()["items"]) == sorted([eid, eid2])
        r = await c.get("/api/events", params={"rule": "phone"})
        assert [e["id"] for e in r.json()["items"]] == [eid2]
        r = await c.get("/api/events", params={"status": "bogus"})
        assert r.status_code == 422 and r.json()["code"] == "err.invalid_input"
        assert (await c.post("/api/events/999999/ack")).status_code == 404
    actions = [a.action for a in audit_rows(services) if a.action.startswith("alert_")]
    assert actions == ["alert_ack", "alert_resolve", "alert_false_alarm"]


async def test_snapshot_served_through_authorised_route(app: Any, services: Services) -> None:
    assert services.objects is not None
    await services.objects.put_bytes(services.cfg.storage.s3.bucket_snapshots, "snap/1.jpg", b"\xff\xd8jpeg")
    eid = add_event(services.db, snapshot_key="snap/1.jpg")
    eid_missing = add_event(services.db, snapshot_key="snap/missing.jpg")
    eid_none = add_event(services.db)
    async with client(app) as c:
        assert (await c.get(f"/api/events/{eid}/snapshot")).status_code == 401
        await login(c, "observer")
        r = await c.get(f"/api/events/{eid}/snapshot")
        assert (
            r.status_code == 200
            and r.content == b"\xff\xd8jpeg"
            and r.headers["content-type"] == "image/jpeg"
        )
        assert (await c.get(f"/api/events/{eid_missing}/snapshot")).status_code == 404
        r = await c.get(f"/api/events/{eid_none}/snapshot")
        assert r.status_code == 404 and r.json()["code"] == "err.no_snapshot"
        services.objects.fail = True
        r = await c.get(f"/api/events/{eid}/snapshot")
        assert r.status_code == 502 and r.json()["code"] == "err.storage_unavailable"
        ev = (await c.get(f"/api/events/{eid}")).json()
        assert ev["snapshot_url"] == f"/api/events/{eid}/snapshot" and "snapshot_key" not in ev
        # observers are audited on every view
    assert {"snapshot_view", "event_view"} <= {a.action for a in audit_rows(services) if a.actor == "obs"}


def _add_segments(services: Services, start: datetime, n: int = 3) -> list[int]:
    ids = []
    with services.db.session() as s:
        for i in range(n):
            g = Segment(
                site="site1",
                room="room1",
                camera="cam1",
                start=start + timedelta(seconds=10 * i),
                end=start + timedelta(seconds=10 * (i + 1)),
                key=f"seg/{i}.mp4",
                sha256="0" * 64,
                size=1000,
                seq=i + 1,
                prev_hash="0" * 64,
                link_hash="1" * 64,
                uploaded=True,
            )
            s.add(g)
            s.flush()
            ids.append(g.id)
        s.commit()
    return ids


async def test_replay_index_ranges_and_export(app: Any, services: Services) -> None:
    assert services.objects is not None
    t0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
    ids = _add_segments(services, t0)
    for i in range(3):
        await services.objects.put_bytes(
            services.cfg.storage.s3.bucket_segments, f"seg/{i}.mp4", bytes(range(250)) * 4
        )
    eid = add_event(services.db, started_at=t0 + timedelta(seconds=12))
    q = {"start": t0.isoformat(), "end": (t0 + timedelta(minutes=1)).isoformat()}
    async with client(app) as c:
        await login(c, "auditor")
        r = await c.get("/api/replay/site1/room1/cam1", params=q)
        assert r.status_code == 200
        body = r.json()
        assert [s["id"] for s in body["segments"]] == ids
        assert [e["id"] for e in body["events"]] == [eid]
        url = body["segments"][1]["url"]
        r = await c.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == bytes(range(10, 20))
        assert r.headers["content-range"] == "bytes 10-19/1000"
        r = await c.get(url, headers={"Range": "bytes=-5"})
        assert r.status_code == 206 and len(r.content) == 5
        assert (await c.get(url, headers={"Range": "bytes=5000-"})).status_code == 416
        for huge in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000):
            r = await c.get(url, headers={"Range": huge})  # #12 finding 10: was a 500
            assert r.status_code == 416 and r.headers["content-range"] == "bytes */1000"
        assert (await c.get(url)).content == bytes(range(250)) * 4
        bad = {"start": q["end"], "end": q["start"]}
        r = await c.get("/api/replay/site1/room1/cam1", params=bad)
        assert r.status_code == 422 and r.json()["code"] == "err.bad_range"
        r = await c.get("/api/replay/site1/room1/nope", params=q)
        assert r.status_code == 404 and r.json()["code"] == "err.unknown_camera"
        r = await c.get("/api/replay/site1/room1/cam1", params={"start": "yesterday", "end": "now"})
        assert r.status_code == 422
        # these rows are not real chain links: the badge checks them (#12 finding 8)
        r = await c.get("/api/replay/site1/room1/cam1/verify", params=q)
        assert r.status_code == 200 and r.json()["ok"] is False and r.json()["problem"] == "altered"
        assert "the database's link seq 1" in r.json()["message"]
        later = {"start": (t0 + timedelta(hours=1)).isoformat(), "end": (t0 + timedelta(hours=2)).isoformat()}
        r = await c.get("/api/replay/site1/room1/cam1/verify", params=later)
        assert r.status_code == 200 and r.json()["ok"] is True  # nothing archived in that hour
        stray = "site1/room1/cam1/2025/01/01/090005_000.mp4"  # an object no chain link names
        await services.objects.put_bytes(services.cfg.storage.s3.bucket_segments, stray, b"forged")
        r = await c.get("/api/replay/site1/room1/cam1/verify", params=later)
        assert r.status_code == 200 and r.json()["ok"] is False and r.json()["problem"] == "inserted"
        services.objects.fail = True
        r = await c.get("/api/replay/site1/room1/cam1/verify", params=later)
        assert r.status_code == 502 and r.json()["code"] == "err.storage_unavailable"
        services.objects.fail = False
        # these rows have no chain links in storage: the export refuses with the missing piece
        # (tests/test_dashboard_sessions.py exports real archived footage and verifies it offline)
        r = await c.get("/api/export/site1/room1/cam1", params=q)
        assert r.status_code == 502 and "chain link seq 1 of site1/room1/cam1" in r.json()["detail"]
    assert [a.target for a in audit_rows(services, "replay")] == ["site1/room1/cam1"]
    assert audit_rows(services, "export") == []


async def test_admin_users_and_audit(app: Any, services: Services) -> None:
    async with client(app) as c:
        await login(c, "admin")
        r = await c.post("/api/users", json={"username": "new1", "role": "observer", "password": "short"})
        assert r.status_code == 422 and r.json()["code"] == "err.password_too_short"
        r = await c.post(
            "/api/users", json={"username": "new1", "role": "observer", "password": "long-enough-pw"}
        )
        assert r.status_code == 201
        r = await c.post(
            "/api/users", json={"username": "new1", "role": "observer", "password": "long-enough-pw"}
        )
        assert r.status_code == 409
        r = await c.post(
            "/api/users", json={"username": "bad name!", "role": "observer", "password": "x" * 12}
        )
        assert r.status_code == 422
        r = await c.post("/api/users", json={"username": "new2", "role": "god", "password": "x" * 12})
        assert r.status_code == 422
        r = await c.patch("/api/users/admin", json={"role": "observer"})
        assert r.status_code == 409 and r.json()["code"] == "err.cannot_demote_self"
        r = await c.patch("/api/users/new1", json={"active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        users = (await c.get("/api/users")).json()["users"]
        assert "password_hash" not in json.dumps(users)
        cfg = (await c.get("/api/config")).json()
        assert "test-secret-key" not in json.dumps(cfg) and password_of("admin") not in json.dumps(cfg)
        entries = (await c.get("/api/audit", params={"action": "user_create"})).json()["entries"]
        assert [e["target"] for e in entries] == ["user:new1"]
    async with client(app) as c:
        r = await c.post("/api/auth/login", json={"username": "new1", "password": "long-enough-pw"})
        assert r.status_code == 401  # deactivated


async def test_health_metrics_i18n_docs(app: Any) -> None:
    async with client(app) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200 and r.json()["db"] is True
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/api/i18n/zh-CN")).json()["app.title"] == load_dictionary("zh-CN")["app.title"]
        assert (await c.get("/api/i18n/xx")).status_code == 404
        assert (await c.get("/api/openapi.json")).status_code == 401
        r = await c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        from dashboard.security import metrics_token

        tok = metrics_token("test-secret-key-0123456789")
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200
        assert "evalwatch_camera_online" in r.text and "evalwatch_queue_depth" in r.text
        assert 'evalwatch_camera_fps{camera="cam1",room="room1",site="site1"} 15.0' in r.text
        # memory: the hub's RSS and SQLite's own heap (the app's database is SQLite, in use)
        gauges = {ln.split()[0]: float(ln.split()[1]) for ln in r.text.splitlines()
                  if ln.startswith(("process_resident_memory_bytes", "evalwatch_sqlite_memory_bytes"))}
        assert gauges["process_resident_memory_bytes"] > 10 * 2**20
        assert 0 < gauges["evalwatch_sqlite_memory_bytes"] < gauges["process_resident_memory_bytes"]
        await login(c, "observer")
        assert (await c.get("/metrics")).status_code == 403
        spec = (await c.get("/api/openapi.json")).json()
        assert "/api/events/{event_id}/ack" in spec["paths"]
        r = await c.get("/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "default-src 'self'" in r.headers["content-security-policy"]


async def test_bad_input_never_500(app: Any) -> None:
    async with client(app) as c:
        r = await c.post(
            "/api/auth/login", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and "detail" in r.json()
        r = await c.post(
            "/api/auth/login", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["code"] == "err.body_too_large"
        await login(c, "supervisor")
        for path in ("/api/events/abc", "/api/events/-1/snapshot", "/api/segments/99/video", "/nope"):
            r = await c.get(path)
            assert 400 <= r.status_code < 500, (path, r.status_code)
            assert "Traceback" not in r.text
        r = await c.post("/api/live/site1/room1/cam1/offer", json={"sdp": "garbage-garbage", "type": "offer"})
        assert r.status_code == 422 and r.json()["code"] == "err.bad_sdp"
        r = await c.post("/api/live/site9/room1/cam1/offer", json={"sdp": "garbage-garbage", "type": "offer"})
        assert r.status_code == 404


async def test_camera_status_with_alert_counts(app: Any, services: Services) -> None:
    add_event(services.db, rule="phone")
    add_event(services.db, rule="phone")
    add_event(services.db, rule="phone", status="resolved")
    assert services.recorder is not None
    services.recorder.statuses[("site1", "room2", "cam1")].online = False
    async with client(app) as c:
        await login(c, "observer")
        cams = {
            (d["site"], d["room"], d["camera"]): d
            for d in (await c.get("/api/cameras/status")).json()["cameras"]
        }
        assert len(cams) == 4
        assert cams[("site1", "room1", "cam1")]["alerts"] == {"phone": 2}
        assert cams[("site1", "room2", "cam1")]["online"] is False
        sites = (await c.get("/api/sites")).json()["sites"]
        assert [s["id"] for s in sites] == ["site1", "site2"]


# --- WebSocket push over a real server -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(services: Services) -> AsyncIterator[str]:
    app = create_app(services)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    await task


async def _cookie(host: str, role: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=f"http://{host}") as c:
        csrf = await login(c, role)
        return f"evalwatch_session={c.cookies['evalwatch_session']}", csrf


async def test_ws_pushes_bus_events_and_workflow(server: str, services: Services) -> None:
    cookie, _csrf = await _cookie(server, "observer")
    async with websockets.connect(f"ws://{server}/ws/events", additional_headers={"Cookie": cookie}) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        eid = add_event(services.db, snapshot_key="snap/x.jpg")
        assert services.bus is not None
        services.bus.publish(
            EventLive(
                id=eid,
                uid="u1",
                site="site1",
                room="room1",
                camera="cam1",
                seat="s1",
                rule="phone",
                kind=None,
                started_at=datetime.now(UTC),
                ended_at=None,
                confidence=0.8,
                footage_start=None,
                footage_end=None,
                snapshot_url=snapshot_url(eid),
                status="new",
                phase="opened",
            )
        )
        msg = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert msg["type"] == "event" and msg["event"]["id"] == eid and msg["event"]["phase"] == "opened"
        assert (
            msg["event"]["snapshot_url"] == f"/api/events/{eid}/snapshot"
            and "snapshot_key" not in msg["event"]
        )
        sup_cookie, sup_csrf = await _cookie(server, "supervisor")
        async with httpx.AsyncClient(base_url=f"http://{server}") as c:
            r = await c.post(
                f"/api/events/{eid}/ack", headers={"Cookie": sup_cookie, "X-CSRF-Token": sup_csrf}
            )
            assert r.status_code == 200
        msg = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert msg["event"]["phase"] == "workflow" and msg["event"]["status"] == "acknowledged"
        await ws.send("ping")
        assert json.loads(await asyncio.wait_for(ws.recv(), 2))["type"] == "pong"


async def test_ws_refuses_anonymous_and_foreign_origin(server: str) -> None:
    with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
        async with websockets.connect(f"ws://{server}/ws/events") as ws:
            await ws.recv()
    assert ei.value.rcvd is not None and ei.value.rcvd.code == 4401
    cookie, _ = await _cookie(server, "supervisor")
    with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
        async with websockets.connect(
            f"ws://{server}/ws/events",
            origin=Origin("http://evil.example"),
            additional_headers={"Cookie": cookie},
        ) as ws:
            await ws.recv()
    assert ei.value.rcvd is not None and ei.value.rcvd.code == 4403


@pytest.mark.security
async def test_chunked_body_past_the_limit_is_413_and_the_hub_keeps_serving(app: Any) -> None:
    """Finding 7 of issue #12: a body without Content-Length (chunked) was read without bound,
    also on the anonymous login; now it is cut at ``hub.max_body_bytes`` with a clear 413."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 64 x 64 KiB = 4 MiB, well past the 1 MB limit
            sent += 65536
            yield b"x" * 65536

    async with client(app) as c:
        r = await c.post("/api/auth/login", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and r.json()["code"] == "err.body_too_large", r.text
        await login(c, "supervisor")
        r = await c.post("/api/events/1/ack", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "err.body_too_large", r.text
        assert (await c.get("/healthz")).status_code == 200


@pytest.mark.security
async def test_metrics_do_not_label_arbitrary_methods(app: Any) -> None:
    """Finding 9 of issue #12: the request counter was labelled with whatever method the client
    sent, so anonymous requests could add time series without bound."""
    from dashboard.security import metrics_token

    async with client(app) as c:
        for i in range(5):
            await c.request(f"BOGUS{i}", "/api/events")
        token = metrics_token("test-secret-key-0123456789")
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert "BOGUS" not in r.text
        assert 'method="other"' in r.text


@pytest.mark.security
async def test_logout_revokes_the_session_on_the_server(app: Any, services: Services) -> None:
    """Finding 5 of #12: logout only deleted the cookie (a copy stayed valid 12 h); now the
    session is revoked on the server: the old cookie is anonymous at once.  A password change
    revokes every session of the user, also ones opened elsewhere."""
    async with client(app) as c:
        await login(c, "observer")
        stolen = c.cookies["evalwatch_session"]
        assert (await c.post("/api/auth/logout")).status_code == 200
    async with client(app) as thief:
        thief.cookies.set("evalwatch_session", stolen)
        r = await thief.get("/api/auth/me")
        assert r.status_code == 401 and r.json()["code"] == "err.not_logged_in"
    async with client(app) as c, client(app) as other:
        await login(c, "auditor")
        await login(other, "auditor")
        r = await c.post(
            "/api/auth/password", json={"old_password": password_of("auditor"), "new_password": "n" * 12}
        )
        assert r.status_code == 200
        assert (await other.get("/api/auth/me")).status_code == 401
    with services.db.session() as s:
        from storage.models import LoginSession

        rows = list(s.scalars(select(LoginSession)))
        assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)
        assert stolen not in {r.id for r in rows}  # the row holds a hash, not the cookie's id


@pytest.mark.security
async def test_ws_closes_when_the_session_is_revoked_even_while_pinging(
    server: str, services: Services
) -> None:
    """Finding 5 of #12: the WebSocket re-checked auth only after 30 s *idle* while the UI pings
    every 25 s, so a logged-out session kept receiving alerts.  Now logout closes it at once
    (4401 ``session revoked``), and every client message re-checks the session."""
    cookie, csrf = await _cookie(server, "observer")
    async with websockets.connect(f"ws://{server}/ws/events", additional_headers={"Cookie": cookie}) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send("ping")
        assert json.loads(await asyncio.wait_for(ws.recv(), 2))["type"] == "pong"
        async with httpx.AsyncClient(base_url=f"http://{server}") as c:
            r = await c.post("/api/auth/logout", headers={"Cookie": cookie, "X-CSRF-Token": csrf})
            assert r.status_code == 200
        with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
            await asyncio.wait_for(ws.recv(), 2)
        assert ei.value.rcvd is not None and ei.value.rcvd.code == 4401
        assert ei.value.rcvd.reason == "session revoked"
    # pings do not postpone the re-check (a revocation only the database knows: the row revoked
    # behind this process's back, e.g. by an operator)
    cookie, csrf = await _cookie(server, "observer")
    async with websockets.connect(f"ws://{server}/ws/events", additional_headers={"Cookie": cookie}) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        from sqlalchemy import update

        from storage.common import utcnow
        from storage.models import LoginSession

        with services.db.session() as s:
            s.execute(update(LoginSession).values(revoked_at=utcnow()))
            s.commit()
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
            while True:
                await ws.send("ping")
                await asyncio.wait_for(ws.recv(), 3)
                await asyncio.sleep(0.1)
        assert ei.value.rcvd is not None and ei.value.rcvd.code == 4401
        assert asyncio.get_running_loop().time() - t0 < 4


@pytest.mark.security
async def test_live_stream_ends_when_its_session_is_revoked(app: Any, services: Services) -> None:
    """Finding 5 of #12: a live WebRTC stream was never re-checked, so it outlived logout; now
    revoking the viewer's session (logout here) closes the stream at once (``live_view_end``)."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with client(app) as c:
            await login(c, "supervisor")
            r = await c.post(
                "/api/live/site1/room1/cam1/offer",
                json={"sdp": pc.localDescription.sdp, "type": "offer", "quality": "full"},
            )
            assert r.status_code == 200, r.text
            live = app.state.dash.live
            assert len(live.sessions) == 1
            assert (await c.post("/api/auth/logout")).status_code == 200
            assert len(live.sessions) == 0
        ends = audit_rows(services, "live_view_end")
        assert [a.actor for a in ends] == ["sup"]
    finally:
        await pc.close()


@pytest.mark.security
async def test_seeded_account_must_change_its_password_first(tmp_path: Path) -> None:
    """Finding 11 of #12: seeded passwords (plain text in the secrets file) stayed valid for ever;
    now a seeded account must choose a new password at its first login: every other route
    answers 403 ``err.password_change_required`` until then.  The demo config opts out."""
    from config.loader import load_config
    from config.models import EvalwatchConfig
    from testkit.dashboard import make_config

    assert EvalwatchConfig().hub.force_password_change is True
    assert load_config("config/default.yaml").hub.force_password_change is False  # make run's logins
    services = make_services(tmp_path, cfg=make_config(force_password_change=True))
    a = create_app(services)
    async with a.router.lifespan_context(a):
        await _must_change_flow(a, services)


async def _must_change_flow(a: Any, services: Services) -> None:
    async with client(a) as c:
        r = await c.post("/api/auth/login", json={"username": "obs", "password": password_of("observer")})
        assert r.status_code == 200 and r.json()["password_change_required"] is True
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        r = await c.get("/api/events")
        assert r.status_code == 403 and r.json()["code"] == "err.password_change_required"
        assert (await c.get("/", follow_redirects=False)).status_code == 303
        me = await c.get("/api/auth/me")
        assert me.status_code == 200 and me.json()["password_change_required"] is True
        r = await c.post(
            "/api/auth/password", json={"old_password": password_of("observer"), "new_password": "n" * 12}
        )
        assert r.status_code == 200
        r = await c.post("/api/auth/login", json={"username": "obs", "password": "n" * 12})
        assert r.status_code == 200 and r.json()["password_change_required"] is False
        assert (await c.get("/api/events")).status_code == 200
    # an admin's reset: the admin knows that password, so the user must choose again
    from sqlalchemy import update

    with services.db.session() as s:
        s.execute(update(User).where(User.username == "admin").values(must_change_password=False))
        s.commit()
    async with client(a) as adm, client(a) as c:
        await login(adm, "admin")
        assert (await adm.patch("/api/users/obs", json={"password": "m" * 12})).status_code == 200
        r = await c.post("/api/auth/login", json={"username": "obs", "password": "m" * 12})
        assert r.status_code == 200 and r.json()["password_change_required"] is True


@pytest.mark.security
def test_sqlite_database_file_is_private(tmp_path: Path) -> None:
    """Finding 11 of #12: the SQLite file (password hashes, audit log) was created 0644."""
    import os
    import stat

    from storage.db import Database

    old = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path / 'sub' / 'ew.db'}")
        db.upgrade()
        db.dispose()
        exposed = tmp_path / "old.db"
        exposed.write_bytes(b"")
        exposed.chmod(0o644)
        Database(f"sqlite:///{exposed}").dispose()
    finally:
        os.umask(old)
    for f in [*(tmp_path / "sub").iterdir(), exposed]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name}: {oct(f.stat().st_mode)}"


@pytest.mark.security
async def test_config_view_shows_no_database_password(app: Any, services: Services) -> None:
    """Finding 11 of #12: ``/api/config`` showed the PostgreSQL password inside
    ``storage.database_url`` (and TURN credentials inside their URLs)."""
    services.cfg.hub.turn_urls = ["turn://turnuser:turn-pass-77@turn.example:3478"]
    services.cfg.storage.database_url = "postgresql+psycopg://ew:db-pass-4242@db.example:5432/ew"
    async with client(app) as c:
        await login(c, "admin")
        r = await c.get("/api/config")
        assert r.status_code == 200
    text = r.text
    assert "db-pass-4242" not in text and "turn-pass-77" not in text and "test-secret-key" not in text
    assert "db.example" in r.json()["storage"]["database_url"]
    assert r.json()["hub"]["turn_urls"] == ["turn://***@turn.example:3478"]


@pytest.mark.security
async def test_ingest_errors_keep_their_message_and_a_fitting_code(tmp_path: Path) -> None:
    """Finding 10 of #12: behind the dashboard's error handlers the agents' ingest API must still
    say what is wrong (its own message, not a generic "Invalid input."), with a code that fits the
    status (a refused token is not ``err.invalid_input``)."""
    from pydantic import SecretStr

    from capture.ingest import make_router

    class Rec:
        def known(self, ref: Any) -> bool:
            return True

    services = make_services(tmp_path)
    services.cfg.sites[0].agent_token = SecretStr("agent-token-site1-0123456789")
    services.extra_routers = [make_router(Rec(), None, services.cfg)]  # type: ignore[arg-type]
    a = create_app(services)
    url = "/api/ingest/segments/site1/room1/cam1?start=2026-01-01T00:00:00Z&end=2026-01-01T00:00:10Z"
    async with a.router.lifespan_context(a), client(a) as c:
        r = await c.put(url, content=b"x")
        assert r.status_code == 401 and r.json()["code"] == "err.not_logged_in"
        assert "Authorization: Bearer" in r.json()["detail"]
        good = {"Authorization": "Bearer agent-token-site1-0123456789"}
        r = await c.put(url.replace("site1", "site2"), content=b"x", headers=good)
        assert r.status_code == 403 and r.json()["code"] == "err.forbidden"
        assert "belongs to site 'site1'" in r.json()["detail"]
        r = await c.put(url.replace("2026-01-01T00:00:00Z", "yesterday"), content=b"x", headers=good)
        assert r.status_code == 400 and "'start' is not an ISO 8601 time" in r.json()["detail"]
        assert r.json()["specific"] is True


@pytest.mark.security
def test_many_failures_on_one_account_slow_it_down_but_never_lock_it() -> None:
    """Finding 6 of #12: failures from many addresses on one username (a distributed guess, or
    somebody trying to shut the admin out) only delay that username's answers; a fresh address
    is never refused for it."""
    from dashboard.security import ACCOUNT_DELAY_SECONDS, ACCOUNT_SLOW_AFTER, LoginThrottle

    th = LoginThrottle()
    for i in range(ACCOUNT_SLOW_AFTER + 30):
        assert th.reserve(f"10.6.{i // 250}.{i % 250}", "admin") is not None
    assert th.account_delay("admin") == ACCOUNT_DELAY_SECONDS
    assert th.account_delay("someone-else") == 0
    ticket = th.reserve("10.99.0.1", "admin")
    assert ticket is not None  # the admin's own address gets in
    th.success(ticket)
