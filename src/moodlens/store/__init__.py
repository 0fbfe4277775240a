"""Stored sessions: per-second emotion and attention numbers in SQLite or PostgreSQL, through SQLAlchemy.

Only numbers are kept, never frames or faces: a row per participant per second with the mean
scores, the dominant emotion, the attention state and the head pose (a
:class:`~moodlens.aggregate.SecondRecord` whose ``track_id`` is the participant's id; an
attention-only session, ``create_session(..., emotions=False)``, keeps no emotion or scores),
the session's title and join code, and the participants' names.

    >>> store = Store("sqlite:///moodlens.db")                          # doctest: +SKIP
    >>> session = store.create_session("Maths 3B", classes)            # doctest: +SKIP
    >>> pid = store.add_participant(session.id, "Ana", "student")       # doctest: +SKIP
    >>> store.add_seconds(session.id, timeline.records)                # doctest: +SKIP

:class:`Store` is assembled from one part per concern, each reading and writing its tables
over the store's one engine: :mod:`.settings`, :mod:`.sessions`, :mod:`.participants`,
:mod:`.seconds`, :mod:`.acknowledgements` and :mod:`.exports`. :mod:`.records` holds what they
hand out, :mod:`.schema` the tables they query, :mod:`.engine` how a database is opened.

The schema changes only by Alembic revisions, ``migrations/versions/NNNN_what.py``. Opening a
store applies the missing ones in one transaction (:mod:`.migrate`): an upgrade either completes
or leaves the database as it was, and a database written by a newer MoodLens is refused rather
than touched. A database made before Alembic is bridged on open.

Adding a migration (say 0005, a nullable ``blink_rate`` on ``seconds``):

1. change the table in :mod:`.schema`, which the queries use;
2. add ``migrations/versions/0005_what.py`` with ``revision = "0005"``, ``down_revision =
   "0004"`` and ``upgrade()`` (``op.add_column("seconds", sa.Column("blink_rate", sa.Float,
   nullable=True))``), describing its columns itself, never through :mod:`.schema`. From
   the repository root, ``alembic -x db=scratch.db revision --autogenerate -m "what"
   --rev-id 0005`` writes it from the difference (upgrade ``scratch.db`` to head first);
3. ``pytest tests/test_store.py``: ``test_the_tables_are_what_the_migrations_make`` fails while
   the two disagree, and the upgrade tests run the new revision over databases with rows in
   them, on SQLite and PostgreSQL.

Revision ids are numbers one after another (:attr:`Store.version` is the number); nothing else
is needed: ``moodlens serve`` upgrades an existing database when it opens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from moodlens.store.acknowledgements import AcknowledgementsPart
from moodlens.store.engine import StoreError, check_dialect, create_engine, database_url, journal_path, one_line, shown_url
from moodlens.store.exports import ExportsPart
from moodlens.store.migrate import upgrade
from moodlens.store.participants import ParticipantsPart
from moodlens.store.records import CLASS_ONLY, PER_STUDENT, PRIVACY_MODES, Participant, Session, hash_token, safe_text
from moodlens.store.seconds import SecondsPart
from moodlens.store.sessions import CODE_ALPHABET, CODE_LENGTH, SessionsPart
from moodlens.store.settings import SettingsPart

__all__ = ["CLASS_ONLY", "CODE_ALPHABET", "CODE_LENGTH", "PER_STUDENT", "PRIVACY_MODES",
           "Participant", "Session", "Store", "StoreError", "create_engine", "database_url", "hash_token",
           "journal_path", "safe_text", "shown_url"]


class Store(SettingsPart, SessionsPart, ParticipantsPart, SecondsPart, AcknowledgementsPart, ExportsPart):
    """Sessions, participants and their per-second records in one database.

    Thread-safe: each call takes a pooled connection and its own transaction.

    Args:
        url: a SQLAlchemy URL (see :func:`database_url` for what users type).
        extra_migrations: folders of further Alembic revisions, after the package's own (tests add
            their own).

    Attributes:
        version: the schema's revision, as a number (revision ``0003`` is 3).
    """

    def __init__(self, url: str, extra_migrations: Iterable[str | Path] = ()):
        self.url = url
        try:
            self.engine = create_engine(url)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:  # a bad URL, an unknown or missing driver
            raise StoreError(f"cannot use the database {shown_url(url)}: {one_line(exc)}") from None
        try:
            check_dialect(self.engine)
            with self.engine.begin() as conn:  # one transaction: the upgrade completes or never happened
                self.version = int(upgrade(conn, extra_migrations))
        except sa.exc.DBAPIError as exc:  # a file that cannot be opened, a server that cannot be reached
            self.engine.dispose()
            raise StoreError(f"cannot open the database {shown_url(url)}: {one_line(exc)}") from None
        except Exception:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raises the driver's error when the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
