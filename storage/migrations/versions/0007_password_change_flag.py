"""``users.must_change_password`` (finding 11 of issue #12): a seeded account must choose its own
password at first login before the API lets it do anything else.

Revision ID: 0007_password_flag
Revises: 0006_login_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_password_flag"
down_revision = "0006_login_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as b:
        b.add_column(
            sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as b:
        b.drop_column("must_change_password")
