"""Acknowledgements: the flags the teacher marked as seen, so they stay seen after a restart."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from moodlens.store.schema import acknowledgements


def _keep_the_first(insert) -> sa.Executable:
    """An insert whose clash the database settles: a flag acknowledged again (two clicks at
    once, say) keeps its first acknowledgement."""
    return insert(acknowledgements).on_conflict_do_nothing(
        index_elements=[acknowledgements.c.participant_id, acknowledgements.c.start])


_ACKNOWLEDGE = {"sqlite": _keep_the_first(sqlite.insert), "postgresql": _keep_the_first(postgresql.insert)}


class AcknowledgementsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``acknowledgements``."""

    engine: Engine

    def acknowledge(self, session_id: int, participant_id: int, start: int, at: float | None = None) -> None:
        """Remember that the flag of ``participant_id`` starting at second ``start`` was seen
        (again is a no-op)."""
        with self.engine.begin() as conn:
            conn.execute(_ACKNOWLEDGE[conn.dialect.name].values(
                participant_id=participant_id, start=start, session_id=session_id,
                at=time.time() if at is None else at))

    def acknowledged(self, session_id: int) -> dict[int, dict[int, float]]:
        """participant id -> {first second of an acknowledged flag: when it was acknowledged}."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(acknowledgements).where(acknowledgements.c.session_id == session_id))
            out: dict[int, dict[int, float]] = {}
            for r in rows:
                out.setdefault(r.participant_id, {})[r.start] = r.at
            return out
