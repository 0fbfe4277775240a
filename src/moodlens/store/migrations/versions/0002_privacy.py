"""sessions.privacy: per student or class only

Existing sessions keep showing each student, as they did before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 (migration 2 of the hand-written runner, commit ad2a5bb)
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("privacy", sa.String(16), nullable=False, server_default="per_student"))


def downgrade() -> None:
    op.drop_column("sessions", "privacy")  # SQLite drops a column in place since 3.35
