"""Notifications to people on site (their deliveries and the delivery log) and notices shown in
a room.  Tables: ``storage.models.NotificationDelivery``, ``NotificationAttempt``,
``RoomNotice`` (docs/notifications.md).

Revision ID: 0012_notifications
Revises: 0011_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_notifications"
down_revision = "0011_leases"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("dedupe", sa.String(length=400), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _TS, nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe"),
    )
    op.create_index("ix_notify_due", "notification_deliveries", ["status", "next_at"])
    op.create_table(
        "notification_attempts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("delivery_id", _ID, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["notification_deliveries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notify_attempt_time", "notification_attempts", ["at"])
    op.create_index(
        op.f("ix_notification_attempts_delivery_id"), "notification_attempts", ["delivery_id"]
    )
    op.create_table(
        "room_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("preset", sa.String(length=64), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=True),
        sa.Column("reported_at", _TS, nullable=True),
        sa.Column("shown_at", _TS, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("spoken", sa.Boolean(), nullable=True),
        sa.Column("agent_host", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_room_notice_room", "room_notices", ["site", "room", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_room_notice_room", table_name="room_notices")
    op.drop_table("room_notices")
    op.drop_index(op.f("ix_notification_attempts_delivery_id"), table_name="notification_attempts")
    op.drop_index("ix_notify_attempt_time", table_name="notification_attempts")
    op.drop_table("notification_attempts")
    op.drop_index("ix_notify_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
