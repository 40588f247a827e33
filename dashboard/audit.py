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

#: Every action the audit log holds (the UI names each: ``audit_action.<action>`` in both
#: dictionaries; ``tests/test_dashboard_audit_view.py`` finds the ones the code writes and checks
#: they are here).
ACTIONS: tuple[str, ...] = (
    # who came and went
    "login", "login_failed", "logout", "password_change", "password_change_failed",
    "user_create", "user_update",
    # what was watched (observers' reads included)
    "live_view", "live_view_end", "replay", "segment_view", "snapshot_view", "alerts_watch",
    "event_list", "event_view", "session_list", "session_view", "sites_view", "stats_view",
    "expert_list", "expert_view", "credit_list", "credit_view", "warning_list", "audit_view", "audit_export",
    "anchor_feed",
    # alerts and the evaluation sessions
    "alert_ack", "alert_resolve", "alert_false_alarm", "room_notice", "room_notice_shown",
    "session_create", "session_start", "session_close", "session_report", "seats_assign",
    "seats_assign_failed", "legal_hold", "legal_hold_release",
    # experts and their credit files
    "expert_create", "expert_update", "expert_photo", "experts_import", "credit_confirm",
    "credit_dismiss", "credit_revise", "credit_statement", "credit_appeal", "credit_appeal_decision",
    "credit_export", "warnings_run", "warning_ack", "monthly_report",
    # evidence and storage
    "export", "verify", "retention_purge", "segment_refused",
    # site agents
    "enroll_code_issue", "enroll_code_use", "enroll_code_refused", "agent_revoke",
)


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
