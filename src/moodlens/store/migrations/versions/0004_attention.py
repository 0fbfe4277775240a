"""seconds.attention, yaw, pitch, roll; sessions.emotions: attention-only sessions

Seconds stored before keep no attention or pose (NULL); existing sessions go on inferring
emotions, as they did before it was a choice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POSE = ("yaw", "pitch", "roll")


def upgrade() -> None:
    op.add_column("seconds", sa.Column("attention", sa.String(16), nullable=True))
    for angle in POSE:
        op.add_column("seconds", sa.Column(angle, sa.Float, nullable=True))
    op.add_column("sessions", sa.Column("emotions", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("sessions", "emotions")  # SQLite drops a column in place since 3.35
    for column in ("attention", *POSE):
        op.drop_column("seconds", column)
