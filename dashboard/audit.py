"""The append-only audit log: the dashboard only ever INSERTs into ``audit_log``.

Actions written here: ``login``, ``login_failed``, ``logout``, ``live_view`` (start, with room and
camera), ``live_view_end`` (with seconds watched), ``replay`` (camera + range listed),
``replay_segment`` is not logged per request (the ``replay`` row covers the range), ``export``,
``snapshot_view``, ``alert_ack``, ``alert_resolve``, ``alert_false_alarm``, ``user_create``,
``user_update``, ``audit_view``, ``event_list`` (observers' views); site agents
(``dashboard.routes.agents``, ``evalwatch site``): ``enroll_code_issue``, ``enroll_code_use``,
``enroll_code_refused``, ``agent_revoke``; notices in the room (``dashboard.routes.notifications``,
``capture.notices``): ``room_notice`` (sent, by a supervisor), ``room_notice_shown`` (the agent's
report, actor ``agent:<site>``: shown or not and why, spoken, via).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dashboard.dbutil import run_db
from storage.models import AuditLog


def add(
    s: Session,
    actor: str,
    action: str,
    *,
    role: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Queue one audit row in ``s`` (committed with the caller's transaction)."""
    s.add(AuditLog(actor=actor[:64], role=role, action=action, target=target, ip=ip, details=details))


async def record(
    db: Any,
    actor: str,
    action: str,
    *,
    role: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit row in its own transaction."""
    await run_db(db, lambda s: add(s, actor, action, role=role, target=target, ip=ip, details=details))
