"""Early warnings (table ``warnings``: ``sessions/earlywarning.py``, docs/statistics.md).

Revision ID: 0009_warnings
Revises: 0008_credit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_warnings"
down_revision = "0008_credit"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.Column("bid", sa.String(length=64), nullable=True),
        sa.Column("expert_codes", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("raised_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", "fingerprint", name="uq_warning_evidence"),
    )
    op.create_index("ix_warnings_subject", "warnings", ["kind", "subject", "status"])
    op.create_index("ix_warnings_raised", "warnings", ["raised_at"])


def downgrade() -> None:
    op.drop_index("ix_warnings_raised", table_name="warnings")
    op.drop_index("ix_warnings_subject", table_name="warnings")
    op.drop_table("warnings")
