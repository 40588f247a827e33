"""Agent enrolment on the hub: one-time enrolment codes and per-agent credentials.

* An admin issues an **enrolment code** for a site (:func:`issue_code`: dashboard or
  ``evalwatch site enroll-code``).  The code is shown once; the database keeps its sha256 only.
  It is valid until ``expires_at`` and can be redeemed once.
* The room PC redeems it (:func:`redeem_code`, ``evalwatch agent enroll``) for a new random
  **agent credential** of that site (``ewa1.<id>.<secret>``); the database keeps its sha256
  only.  The redemption is one atomic ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``,
  so two concurrent redemptions of one code cannot both succeed.
* The ingest API authenticates a credential with :meth:`CredentialStore.site_of` — one indexed
  lookup per request, no cache, so a revocation (:func:`revoke`, from the dashboard or the
  command line of another process) is refused from the next request on.

Codes and credentials are secrets: neither is ever logged; only the public credential id and the
code's row id are.  The callers write the audit rows (the dashboard and the command line).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.common import utcnow
from storage.models import AgentCredential, EnrollCode

#: Prefix of an enrolled agent's credential (the secrets-file tokens never start with it).
CREDENTIAL_PREFIX = "ewa1."
#: Alphabet of enrolment codes: no 0/O, 1/I/L (read off a screen, typed on a room PC).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_GROUPS, CODE_GROUP_LEN = 4, 5  # 20 symbols of 31: ~99 bits


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_code(code: str) -> str:
    """Upper case, without the dashes and spaces people type or leave out."""
    return "".join(ch for ch in code.upper() if ch not in "- \t")


def new_code() -> str:
    """A fresh code, ``XXXXX-XXXXX-XXXXX-XXXXX``."""
    groups = (
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LEN)) for _ in range(CODE_GROUPS)
    )
    return "-".join(groups)


@dataclass(frozen=True)
class IssuedCode:
    id: int
    site: str
    code: str  # shown once, never stored
    expires_at: datetime


def issue_code(s: Session, site: str, actor: str, valid_for: timedelta) -> IssuedCode:
    """Store a new code's hash for ``site`` (the caller checks the site exists and audits)."""
    if valid_for <= timedelta(0):
        raise ValueError("an enrolment code must be valid for a positive time")
    code = new_code()
    now = utcnow()
    row = EnrollCode(
        site=site,
        code_hash=_sha(normalize_code(code)),
        created_at=now,
        created_by=actor[:64],
        expires_at=now + valid_for,
    )
    s.add(row)
    s.flush()
    return IssuedCode(id=row.id, site=site, code=code, expires_at=row.expires_at)


RefusalReason = Literal["unknown", "used", "expired", "malformed", "site_gone"]


@dataclass(frozen=True)
class Redeemed:
    """A code exchanged for a credential (``credential`` is shown to the agent once)."""

    code_id: int
    site: str
    credential_id: str
    credential: str


@dataclass(frozen=True)
class Refused:
    reason: RefusalReason
    code_id: int | None = None
    site: str | None = None


def redeem_code(
    s: Session, code: str, ip: str | None, sites: set[str] | None = None
) -> Redeemed | Refused:
    """Exchange ``code`` for a new credential of its site, or say why not (``site_gone``: its
    site is not among ``sites``, the hub's configured ones, any more)."""
    norm = normalize_code(code)
    if len(norm) != CODE_GROUPS * CODE_GROUP_LEN or any(ch not in CODE_ALPHABET for ch in norm):
        return Refused("malformed")
    h = _sha(norm)
    now = utcnow()
    row = s.scalars(select(EnrollCode).where(EnrollCode.code_hash == h)).first()
    if row is None:
        return Refused("unknown")
    if row.used_at is not None:
        return Refused("used", row.id, row.site)
    if row.expires_at <= now:
        return Refused("expired", row.id, row.site)
    if sites is not None and row.site not in sites:
        return Refused("site_gone", row.id, row.site)
    cred_id = secrets.token_hex(6)
    # Atomic: of two concurrent redemptions exactly one updates the row.
    done = s.execute(
        update(EnrollCode)
        .where(EnrollCode.id == row.id, EnrollCode.used_at.is_(None), EnrollCode.expires_at > now)
        .values(used_at=now, used_ip=(ip or "")[:64] or None, credential_id=cred_id)
        .execution_options(synchronize_session=False)
    )
    if not getattr(done, "rowcount", 0):
        return Refused("used", row.id, row.site)
    credential = f"{CREDENTIAL_PREFIX}{cred_id}.{secrets.token_urlsafe(32)}"
    s.add(
        AgentCredential(
            id=cred_id,
            site=row.site,
            secret_hash=_sha(credential),
            created_at=now,
            enroll_code_id=row.id,
            enrolled_ip=(ip or "")[:64] or None,
        )
    )
    s.flush()
    return Redeemed(code_id=row.id, site=row.site, credential_id=cred_id, credential=credential)


def is_credential(token: str) -> bool:
    """Whether ``token`` has the form of an enrolled agent's credential."""
    return token.startswith(CREDENTIAL_PREFIX)


def credential_site(s: Session, token: str) -> tuple[str, str] | None:
    """``(site, credential id)`` of a valid (known, not revoked) credential, else None."""
    if not is_credential(token) or len(token) > 200:
        return None
    row = s.scalars(select(AgentCredential).where(AgentCredential.secret_hash == _sha(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row.site, row.id


def active_ids(s: Session, ids: set[str]) -> set[str]:
    """Those of ``ids`` that are known and not revoked."""
    if not ids:
        return set()
    q = select(AgentCredential.id).where(AgentCredential.id.in_(ids), AgentCredential.revoked_at.is_(None))
    return set(s.scalars(q))


def revoke(s: Session, site: str, credential_id: str | None, actor: str) -> list[str]:
    """Revoke one credential of ``site`` (or every live one when ``credential_id`` is None);
    the ids revoked now (empty: nothing to revoke)."""
    q = select(AgentCredential).where(AgentCredential.site == site, AgentCredential.revoked_at.is_(None))
    if credential_id is not None:
        q = q.where(AgentCredential.id == credential_id)
    now = utcnow()
    out = []
    for row in s.scalars(q):
        row.revoked_at, row.revoked_by = now, actor[:64]
        out.append(row.id)
    s.flush()
    return out


def credentials(s: Session, site: str | None = None) -> list[AgentCredential]:
    """Every credential (of ``site``), oldest first."""
    q = select(AgentCredential).order_by(AgentCredential.created_at, AgentCredential.id)
    if site is not None:
        q = q.where(AgentCredential.site == site)
    return list(s.scalars(q))


class CredentialStore:
    """The ingest API's view of the enrolled credentials (``capture.ingest.AgentAuthLike``)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def site_of(self, token: str) -> tuple[str, str] | None:
        """``(site, credential id)`` of a valid credential, else None (a DB lookup each call)."""
        if not is_credential(token):
            return None
        return await asyncio.to_thread(self._lookup, token)

    def _lookup(self, token: str) -> tuple[str, str] | None:
        with self.db.session() as s:
            return credential_site(s, token)

    async def active(self, ids: set[str]) -> set[str]:
        """Those of the credential ``ids`` still valid."""
        return await asyncio.to_thread(self._active, ids)

    def _active(self, ids: set[str]) -> set[str]:
        with self.db.session() as s:
            return active_ids(s, ids)
