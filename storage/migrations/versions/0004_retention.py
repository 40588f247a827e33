"""Retention: purged chain ranges (the anchors verification resumes from) and retention holds.

Revision ID: 0004_retention (re-point down_revision at the head of main when merging)
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_TS = sa.DateTime(timezone=True)

revision = "0004_retention"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purged_ranges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("room", sa.String(64), nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("first_prev_hash", sa.String(64), nullable=False),
        sa.Column("last_link_hash", sa.String(64), nullable=False),
        sa.Column("start", _TS, nullable=False),
        sa.Column("end", _TS, nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("purged_at", _TS, nullable=False),
        sa.UniqueConstraint("site", "room", "camera", "first_seq", name="uq_purged_first"),
    )
    op.create_index("ix_purged_camera", "purged_ranges", ["site", "room", "camera", "last_seq"])
    op.create_table(
        "retention_holds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("cameras", sa.JSON(), nullable=True),
        sa.Column("start", _TS, nullable=True),
        sa.Column("end", _TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("released_at", _TS, nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_holds_open", "retention_holds", ["released_at", "kind"])


def downgrade() -> None:
    op.drop_index("ix_holds_open", "retention_holds")
    op.drop_table("retention_holds")
    op.drop_index("ix_purged_camera", "purged_ranges")
    op.drop_table("purged_ranges")
