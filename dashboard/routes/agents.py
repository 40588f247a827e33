"""Site agents: enrolment codes, the anonymous enrolment exchange, credentials and their status.

* ``POST /api/sites/{site}/enroll-codes`` (admin) — a one-time code, shown once (audit
  ``enroll_code_issue``);
* ``POST /api/agent/enroll`` (anyone: the code is the credential) — the code for the site's new
  agent credential; throttled per address like the login (``dashboard.security.LoginThrottle``);
  audit ``enroll_code_use`` or ``enroll_code_refused`` (reason: unknown, malformed, used,
  expired, site_gone, throttled);
* ``GET /api/agents`` (admin) — the agents' latest heartbeats with their flags, and the
  credentials;
* ``POST /api/sites/{site}/revoke-agent`` (admin) — revoke one credential or all of the site's
  (audit ``agent_revoke``); the ingest API refuses it from the next request on.

Codes and credentials are never logged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from dashboard import audit
from dashboard.dbutil import run_db
from dashboard.defs import (
    AgentCameraState,
    AgentCredentialPublic,
    AgentList,
    AgentRevokeCreate,
    AgentRevokePublic,
    AgentStatusPublic,
    EnrollCodeCreate,
    EnrollCodePublic,
    EnrollCreate,
    EnrollPublic,
)
from dashboard.deps import State
from dashboard.errors import ApiError
from dashboard.policy import PUBLIC, Principal, allow, client_ip
from storage import agents as creds
from storage.common import utcnow
from storage.models import AgentCredential

log = logging.getLogger("evalwatch.dashboard.agents")

router = APIRouter(tags=["agents"])

REFUSALS: dict[str, tuple[int, str]] = {
    "unknown": (401, "err.enroll_code_invalid"),
    "malformed": (401, "err.enroll_code_invalid"),
    "used": (409, "err.enroll_code_used"),
    "expired": (410, "err.enroll_code_expired"),
    "site_gone": (410, "err.unknown_site"),
}

#: The throttle's "account" for enrolments: failures count per address (and per address and this
#: pseudo-account), a good enrolment refunds only its own attempt.
ENROLL_ACCOUNT = "<agent-enrolment>"


def _known_site(st: State, site: str) -> None:
    if site not in {s.id for s in st.cfg.sites}:
        raise ApiError(404, "err.unknown_site", f"no site {site[:64]!r} in the hub configuration")


@router.post("/api/sites/{site}/enroll-codes", status_code=201, response_model=EnrollCodePublic)
async def create_enroll_code(
    st: State,
    site: str,
    request: Request,
    me: Annotated[Principal, Depends(allow("admin"))],
    body: EnrollCodeCreate | None = None,
) -> EnrollCodePublic:
    """A one-time enrolment code for ``site``'s agent, valid ``hours`` (default
    ``hub.enroll_code_hours``); the answer is the only place the code is ever shown."""
    _known_site(st, site)
    hours = body.hours if body is not None and body.hours is not None else st.cfg.hub.enroll_code_hours

    def issue(s: Session) -> creds.IssuedCode:
        code = creds.issue_code(s, site, me.username, timedelta(hours=hours))
        audit.add(
            s,
            me.username,
            "enroll_code_issue",
            role=me.role,
            target=f"site:{site}",
            ip=client_ip(request),
            details={"code_id": code.id, "expires_at": code.expires_at.isoformat()},
        )
        return code

    code = await run_db(st.db, issue)
    log.info(
        "enrolment code issued site=%s code_id=%d by=%s expires=%s",
        site,
        code.id,
        me.username,
        code.expires_at.isoformat(),
    )
    return EnrollCodePublic(id=code.id, site=site, code=code.code, expires_at=code.expires_at)


@router.post("/api/agent/enroll", response_model=EnrollPublic, dependencies=[Depends(PUBLIC)])
async def enroll(st: State, body: EnrollCreate, request: Request) -> EnrollPublic:
    """Exchange a one-time code for the site's new agent credential (401 unknown code, 409 used,
    410 expired, 429 too many failures from this address)."""
    ip = client_ip(request) or "?"
    host = (body.host or "")[:128] or None
    ticket = st.enroll_throttle.reserve(ip, ENROLL_ACCOUNT)
    if ticket is None:
        await audit.record(
            st.db, "agent:?", "enroll_code_refused", ip=ip, details={"reason": "throttled", "host": host}
        )
        log.warning("enrolment refused ip=%s: throttled", ip)
        raise ApiError(429, "err.too_many_enroll_attempts")

    def redeem(s: Session) -> creds.Redeemed | creds.Refused:
        out = creds.redeem_code(s, body.code, ip, {site.id for site in st.cfg.sites})
        if isinstance(out, creds.Redeemed):
            audit.add(
                s,
                f"agent:{out.site}",
                "enroll_code_use",
                target=f"site:{out.site}",
                ip=ip,
                details={"code_id": out.code_id, "credential_id": out.credential_id, "host": host},
            )
        return out

    out = await run_db(st.db, redeem)
    if isinstance(out, creds.Refused):
        await audit.record(
            st.db,
            f"agent:{out.site or '?'}",
            "enroll_code_refused",
            target=f"site:{out.site}" if out.site else None,
            ip=ip,
            details={"reason": out.reason, "code_id": out.code_id, "host": host},
        )
        log.warning(
            "enrolment refused site=%s ip=%s code_id=%s: %s", out.site or "?", ip, out.code_id, out.reason
        )
        status, code = REFUSALS[out.reason]
        raise ApiError(status, code)
    st.enroll_throttle.success(ticket)
    log.info("agent enrolled site=%s credential=%s ip=%s host=%s", out.site, out.credential_id, ip, host)
    return EnrollPublic(
        site=out.site,
        credential_id=out.credential_id,
        credential=out.credential,
        hub_url=st.cfg.hub.url,
        tls_fingerprint=_hub_fingerprint(st.cfg.hub.tls_cert),
    )


def _hub_fingerprint(cert_file: str | None) -> str | None:
    """SHA-256 of the certificate the hub serves itself (``hub.tls_cert``); None behind a proxy."""
    if not cert_file:
        return None
    from capture.tls import pem_file_sha256

    try:
        return pem_file_sha256(cert_file)
    except (OSError, ValueError):
        return None


def _credential(c: AgentCredential) -> AgentCredentialPublic:
    return AgentCredentialPublic(
        id=c.id,
        site=c.site,
        created_at=c.created_at,
        enrolled_ip=c.enrolled_ip,
        revoked_at=c.revoked_at,
        revoked_by=c.revoked_by,
    )


@router.get("/api/agents", response_model=AgentList)
async def list_agents(st: State, me: Annotated[Principal, Depends(allow("admin"))]) -> AgentList:
    """Every agent's latest heartbeat (version, OS, CPU load, spool fill, cameras, clock offset)
    with its flags, and every enrolled credential."""
    rows = await run_db(st.db, lambda s: [_credential(c) for c in creds.credentials(s)])
    monitor = getattr(st.services, "agents", None)
    now = utcnow()
    agents = [
        AgentStatusPublic(
            site=a.site,
            credential_id=a.credential_id,
            host=a.host,
            ip=a.ip,
            last_seen=a.last_seen,
            version=a.version,
            os=a.os,
            cpu_load=a.cpu_load,
            cpu_count=a.cpu_count,
            spool_bytes=a.spool_bytes,
            spool_quota_bytes=a.spool_quota_bytes,
            spool_percent=a.spool_percent,
            clock_offset_s=a.clock_offset_s,
            cameras=[AgentCameraState(**c) for c in a.cameras],
            flags=a.flags(now),
        )
        for a in (monitor.agents() if monitor is not None else [])
    ]
    return AgentList(agents=agents, credentials=rows)


@router.post("/api/sites/{site}/revoke-agent", response_model=AgentRevokePublic)
async def revoke_agent(
    st: State,
    site: str,
    body: AgentRevokeCreate,
    request: Request,
    me: Annotated[Principal, Depends(allow("admin"))],
) -> AgentRevokePublic:
    """Revoke the credential ``id`` of ``site`` (404 unknown or already revoked), or with no
    ``id`` every credential of the site; refused on every agent route from the next request."""
    _known_site(st, site)

    def revoke(s: Session) -> list[str]:
        ids = creds.revoke(s, site, body.id, me.username)
        if ids:
            audit.add(
                s,
                me.username,
                "agent_revoke",
                role=me.role,
                target=f"site:{site}",
                ip=client_ip(request),
                details={"credentials": ids},
            )
        return ids

    ids = await run_db(st.db, revoke)
    if body.id is not None and not ids:
        raise ApiError(404, "err.credential_not_found")
    log.info("agent credentials revoked site=%s ids=%s by=%s", site, ids, me.username)
    return AgentRevokePublic(site=site, revoked=ids)
