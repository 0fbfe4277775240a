"""The tables as the newest migration leaves them: what the queries read and write.

Only the migrations (``migrations/versions/``) change a database; these tables follow them. A
revision that changes a table changes it here too (``test_the_tables_are_what_the_migrations_make``
compares the two), while each revision keeps its own description of the tables it touches.
"""

from __future__ import annotations

import sqlalchemy as sa

from moodlens.store.records import PER_STUDENT

metadata = sa.MetaData()

settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(16), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("classes", sa.Text, nullable=False),  # JSON: the class set can differ per model
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("privacy", sa.String(16), nullable=False, server_default=PER_STUDENT),
    sa.Column("emotions", sa.Boolean, nullable=False, server_default=sa.true()),  # False: attention only
)

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("joined_at", sa.Float, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
)

seconds = sa.Table(
    "seconds", metadata,
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("second", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("emotion", sa.String(16), nullable=True),
    sa.Column("frames", sa.Integer, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),  # JSON: class -> mean score
    sa.Column("attention", sa.String(16), nullable=True),  # a moodlens.focus state
    sa.Column("yaw", sa.Float, nullable=True),  # the head pose, degrees
    sa.Column("pitch", sa.Float, nullable=True),
    sa.Column("roll", sa.Float, nullable=True),
    sa.Index("ix_seconds_session_second", "session_id", "second"),
)

# A flag the teacher marked as seen, named by its participant and its first second.
acknowledgements = sa.Table(
    "acknowledgements", metadata,
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
    sa.Column("start", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
)
