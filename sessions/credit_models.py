"""Tables of the expert register and the credit records (schema:
``storage/migrations/versions/0006_experts_credit.py``; docs/credit.md).

* ``experts`` — the register imported from the drawing system's export: ``code`` (the key every
  other table uses), ``name`` (confidential: observers only ever see codes), ``id_hash`` (the ID
  number as a salted PBKDF2 hash — the number itself is never stored), ``phone`` (for notices),
  ``photo_key`` (optional object key of a photo), ``active``.
* ``credit_records`` — one per event that a supervisor judged (confirmed as a violation or
  dismissed): the event, the expert at its seat, the session.  Never deleted.
* ``credit_revisions`` — the record's history, append-only: every change (confirm, dismiss,
  revise, the expert's statement, an appeal and its decision) is a new row holding the whole
  state after the change, who made it, when, and which fields changed.  A record's current
  state is its newest revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from storage.models import Base, UTCDateTime, utcnow

DECISIONS = ("violation", "dismissed")
APPEAL_STATES = ("open", "upheld", "overturned")


class Expert(Base):
    """One expert of the register."""

    __tablename__ = "experts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    id_hash: Mapped[str | None] = mapped_column(String(160))
    phone: Mapped[str | None] = mapped_column(String(32))
    photo_key: Mapped[str | None] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class CreditRecord(Base):
    """An event judged by a supervisor (its state: the newest :class:`CreditRevision`)."""

    __tablename__ = "credit_records"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_credit_event"),
        Index("ix_credit_expert", "expert_code"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(Integer)
    expert_code: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    seat: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class CreditRevision(Base):
    """One state of a credit record, appended by one change (never updated, never deleted)."""

    __tablename__ = "credit_revisions"
    __table_args__ = (UniqueConstraint("record_id", "rev", name="uq_credit_rev"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("credit_records.id"))
    rev: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    # confirm | dismiss | revise | statement | appeal | appeal_decision
    action: Mapped[str] = mapped_column(String(32))
    changed: Mapped[list[str]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16))  # violation | dismissed
    category: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    statement: Mapped[str | None] = mapped_column(Text)
    appeal: Mapped[str | None] = mapped_column(String(16))  # open | upheld | overturned
    reason: Mapped[str | None] = mapped_column(Text)  # why this change was made
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
