"""Site leases for several hub nodes (issue #14 item 2): ``hub_nodes`` (the live nodes and their
URLs), ``site_leases`` (which node ingests which site, with a fencing ``epoch``) and, on
``segments``, the ``node_id``/``epoch`` of the writer of each chain link.  Tables:
``storage/models.py``; logic: ``storage/leases.py``.

Revision ID: 0011_leases
Revises: 0010_anchors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_leases"
down_revision = "0010_anchors"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hub_nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_table(
        "site_leases",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("site_id"),
    )
    with op.batch_alter_table("segments") as b:
        b.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("segments") as b:
        b.drop_column("epoch")
        b.drop_column("node_id")
    op.drop_table("site_leases")
    op.drop_table("hub_nodes")
