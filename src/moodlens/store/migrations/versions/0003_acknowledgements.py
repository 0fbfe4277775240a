"""acknowledgements: flags the teacher marked as seen

Acknowledged flags outlive a server restart.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 (migration 3 of the hand-written runner, commit edb5c8b)
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("acknowledgements",
                    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                    sa.Column("start", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
                    sa.Column("at", sa.Float, nullable=False))
    op.create_index("ix_acknowledgements_session_id", "acknowledgements", ["session_id"])


def downgrade() -> None:
    op.drop_table("acknowledgements")
