"""Stored sessions: per-second emotion numbers in SQLite or PostgreSQL, through SQLAlchemy."""

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
