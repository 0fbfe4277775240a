"""settings, sessions, participants, per-second records

Revision ID: 0001
Revises:
Create Date: 2026-11-25 (migration 1 of the hand-written runner, commit 5494296)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("settings",
                    sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("sessions",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("code", sa.String(16), nullable=False, unique=True),
                    sa.Column("title", sa.Text, nullable=False),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("classes", sa.Text, nullable=False),
                    sa.Column("started_at", sa.Float, nullable=False),
                    sa.Column("ended_at", sa.Float, nullable=True))
    op.create_table("participants",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
                    sa.Column("name", sa.Text, nullable=False),
                    sa.Column("source", sa.String(16), nullable=False),
                    sa.Column("joined_at", sa.Float, nullable=False),
                    sa.Column("token_hash", sa.String(64), nullable=True, unique=True))
    op.create_index("ix_participants_session_id", "participants", ["session_id"])
    op.create_table("seconds",
                    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                    sa.Column("second", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
                    sa.Column("emotion", sa.String(16), nullable=True),
                    sa.Column("frames", sa.Integer, nullable=False),
                    sa.Column("scores", sa.Text, nullable=False))
    op.create_index("ix_seconds_session_second", "seconds", ["session_id", "second"])


def downgrade() -> None:
    for table in ("seconds", "participants", "sessions", "settings"):
        op.drop_table(table)
