"""Per-second records: a participant's mean scores and dominant emotion for one second."""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from moodlens.aggregate import SecondRecord
from moodlens.store.schema import seconds


def _keep_the_fuller(insert) -> sa.Executable:
    """An insert whose clash on (participant, second) the database settles: a second written
    again (a reconnect within the second) keeps the version seen in more frames."""
    stmt = insert(seconds)
    return stmt.on_conflict_do_update(
        index_elements=[seconds.c.participant_id, seconds.c.second],
        set_={k: stmt.excluded[k] for k in ("emotion", "frames", "scores")},
        where=seconds.c.frames < stmt.excluded.frames)


_UPSERT = {"sqlite": _keep_the_fuller(sqlite.insert), "postgresql": _keep_the_fuller(postgresql.insert)}


class SecondsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``seconds``."""

    engine: Engine

    def add_seconds(self, session_id: int, records: Iterable[SecondRecord]) -> int:
        """Store records whose ``track_id`` is a participant id of the session. A second stored
        twice for a participant (a reconnect within the second) keeps the one with more frames."""
        rows = [{"session_id": session_id, "participant_id": r.track_id, "second": int(r.second),
                 "emotion": r.emotion, "frames": int(r.frames),
                 "scores": json.dumps({k: round(float(v), 4) for k, v in r.scores.items()})}
                for r in records if r.track_id is not None]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_UPSERT[conn.dialect.name], rows)
        return len(rows)

    def seconds(self, session_id: int, participant_id: int | None = None) -> list[SecondRecord]:
        """Records by second, then participant (``track_id`` is the participant id)."""
        query = seconds.select().where(seconds.c.session_id == session_id)
        if participant_id is not None:
            query = query.where(seconds.c.participant_id == participant_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(seconds.c.second, seconds.c.participant_id)).all()
        return [SecondRecord(r.second, r.participant_id, r.emotion, json.loads(r.scores), r.frames) for r in rows]
