"""Signed anchors of the chain heads (issue #12, "anchor the chain outside the hub"):
``chain_anchors``, the hub's copy of each anchor record (``sessions/anchors.py``).

Revision ID: 0010_anchors
Revises: 0008_credit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_anchors"
down_revision = "0009_warnings"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chain_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("anchored_at", _TS, nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("cameras", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("store_key", sa.String(length=512), nullable=True),
        sa.Column("store_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_chain_anchors_at", "chain_anchors", ["anchored_at"])


def downgrade() -> None:
    op.drop_index("ix_chain_anchors_at", "chain_anchors")
    op.drop_table("chain_anchors")
