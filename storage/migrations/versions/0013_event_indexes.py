"""Indexes for a year of events (issue #17): the events list newest first (all, by time range,
open ones) and the replay's event markers of one camera were full scans of ``events`` or of the
camera's whole history.  Measured with ``bench/dbgrowth.py`` (docs/storage.md, "Database growth").

Revision ID: 0013_event_indexes
Revises: 0012_notifications
"""

from __future__ import annotations

from alembic import op

revision = "0013_event_indexes"
down_revision = "0012_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_started_at", "events", ["started_at", "id"])
    op.create_index("ix_events_status_time", "events", ["status", "started_at"])
    op.create_index("ix_events_camera_end", "events", ["site", "room", "camera", "ended_at", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_events_camera_end", table_name="events")
    op.drop_index("ix_events_status_time", table_name="events")
    op.drop_index("ix_events_started_at", table_name="events")
