"""The schema's history: numbered migrations applied on open, in one transaction (the
hand-written runner, before Alembic)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from moodlens.store.engine import StoreError
from moodlens.store.records import PER_STUDENT

migrations_table = sa.Table(
    "schema_migrations", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _v1_tables(md: sa.MetaData) -> tuple[sa.Table, ...]:
    """The tables as migration 1 creates them. Frozen: a later migration that changes a table
    gets its own description, and the query tables below move to the newest one."""
    return (
        sa.Table("settings", md,
                 sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.Text, nullable=False)),
        sa.Table("sessions", md,
                 sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("code", sa.String(16), nullable=False, unique=True),
                 sa.Column("title", sa.Text, nullable=False),
                 sa.Column("kind", sa.String(16), nullable=False),
                 sa.Column("classes", sa.Text, nullable=False),
                 sa.Column("started_at", sa.Float, nullable=False),
                 sa.Column("ended_at", sa.Float, nullable=True)),
        sa.Table("participants", md,
                 sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
                 sa.Column("name", sa.Text, nullable=False),
                 sa.Column("source", sa.String(16), nullable=False),
                 sa.Column("joined_at", sa.Float, nullable=False),
                 sa.Column("token_hash", sa.String(64), nullable=True, unique=True)),
        sa.Table("seconds", md,
                 sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                 sa.Column("second", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
                 sa.Column("emotion", sa.String(16), nullable=True),
                 sa.Column("frames", sa.Integer, nullable=False),
                 sa.Column("scores", sa.Text, nullable=False),
                 sa.Index("ix_seconds_session_second", "session_id", "second")),
    )


def _v2_privacy_column() -> sa.Column:
    return sa.Column("privacy", sa.String(16), nullable=False, server_default=PER_STUDENT)


def _v3_acknowledgements_table(md: sa.MetaData) -> sa.Table:
    """A flag the teacher marked as seen, named by its participant and its first second."""
    return sa.Table("acknowledgements", md,
                    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                    sa.Column("start", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
                    sa.Column("at", sa.Float, nullable=False))


@dataclass(frozen=True)
class Migration:
    """One schema change. ``apply`` runs inside the upgrade's transaction and must describe its
    tables itself (never through the module's current tables, which move on with later versions)."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    _v1_tables(md)
    md.create_all(conn)


def _v2_privacy(conn: Connection) -> None:
    """sessions.privacy: existing sessions keep showing each student (as before)."""
    column = _v2_privacy_column()
    ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE sessions ADD COLUMN {ddl}")


def _v3_acknowledgements(conn: Connection) -> None:
    """Acknowledged flags outlive a server restart."""
    md = sa.MetaData()
    _v1_tables(md)  # the tables its foreign keys name
    _v3_acknowledgements_table(md).create(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "settings, sessions, participants, per-second records", _v1_initial),
    Migration(2, "sessions.privacy: per student or class only", _v2_privacy),
    Migration(3, "acknowledgements: flags the teacher marked as seen", _v3_acknowledgements),
]


def schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    return conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar() or 0


def migrate(engine: Engine, migrations: Iterable[Migration] = MIGRATIONS) -> int:
    """Apply the migrations the database lacks, in one transaction; returns the version reached.

    Raises:
        StoreError: the database has a version this code does not know (written by a newer
            MoodLens); nothing is changed.
    """
    migrations = sorted(migrations, key=lambda m: m.version)
    latest = migrations[-1].version if migrations else 0
    with engine.begin() as conn:
        migrations_table.create(conn, checkfirst=True)
        current = schema_version(conn)
        if current > latest:
            raise StoreError(f"the database schema is version {current}, newer than this MoodLens knows "
                             f"({latest}); upgrade MoodLens to open it")
        for m in migrations:
            if m.version > current:
                m.apply(conn)
                conn.execute(migrations_table.insert().values(version=m.version, name=m.name, applied_at=time.time()))
                current = m.version
    return current


