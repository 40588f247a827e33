"""Incident origin (hub | agent), the analysis's stable incident id and the last update sequence.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as b:
        b.add_column(sa.Column("origin", sa.String(length=8), nullable=False, server_default="hub"))
        b.add_column(sa.Column("uid", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        b.create_unique_constraint("uq_events_uid", ["uid"])


def downgrade() -> None:
    with op.batch_alter_table("events") as b:
        b.drop_constraint("uq_events_uid", type_="unique")
        b.drop_column("seq")
        b.drop_column("uid")
        b.drop_column("origin")
