"""Server-side dashboard sessions (finding 5 of issue #12): a cookie names a row here, and
logout or a password change revokes the row at once.

Revision ID: 0006_login_sessions
Revises: 0005_agent_enrollment
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_login_sessions"
down_revision = "0005_agent_enrollment"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_sessions") as b:
        b.create_index("ix_login_sessions_user", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_sessions") as b:
        b.drop_index("ix_login_sessions_user")
    op.drop_table("login_sessions")
