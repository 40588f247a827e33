"""Evaluation sessions: eval_sessions, session_cameras, session_seats, session_heads.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("bids", sa.JSON(), nullable=False),
        sa.Column("planned_start", _TS, nullable=False),
        sa.Column("planned_end", _TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seating_seed", sa.String(length=32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("public_key_pem", sa.Text(), nullable=True),
        sa.Column("retention", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "session_cameras",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("camera", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["eval_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "site", "room", "camera"),
    )
    op.create_table(
        "session_seats",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("seat", sa.String(length=64), nullable=False),
        sa.Column("expert", sa.String(length=200), nullable=False),
        sa.Column("bid", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["eval_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "site", "room", "seat"),
        sa.UniqueConstraint("session_id", "expert", name="uq_session_expert"),
    )
    op.create_table(
        "session_heads",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("camera", sa.String(length=64), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", _TS, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["eval_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "site", "room", "camera"),
    )


def downgrade() -> None:
    op.drop_table("session_heads")
    op.drop_table("session_seats")
    op.drop_table("session_cameras")
    op.drop_table("eval_sessions")
