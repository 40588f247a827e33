"""Agent enrolment: one-time enrolment codes and per-agent credentials (hashes only).

Revision ID: 0005_agent_enrollment
Revises: 0004_retention
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_agent_enrollment"
down_revision = "0004_retention"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "enroll_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("used_ip", sa.String(length=64), nullable=True),
        sa.Column("credential_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_table(
        "agent_credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("enroll_code_id", sa.Integer(), nullable=True),
        sa.Column("enrolled_ip", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_agent_credentials_site", "agent_credentials", ["site"])


def downgrade() -> None:
    op.drop_index("ix_agent_credentials_site", table_name="agent_credentials")
    op.drop_table("agent_credentials")
    op.drop_table("enroll_codes")
