"""Per-second records: a participant's mean scores, dominant emotion, attention state and head
pose for one second."""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from moodlens.aggregate import POSE_COLUMNS, SecondRecord
from moodlens.store.schema import seconds, sessions

_STORED = ("emotion", "frames", "scores", *POSE_COLUMNS)  # what a second written again replaces


def _keep_the_fuller(insert) -> sa.Executable:
    """An insert whose clash on (participant, second) the database settles: a second written
    again (a reconnect within the second) keeps the version seen in more frames."""
    stmt = insert(seconds)
    return stmt.on_conflict_do_update(
        index_elements=[seconds.c.participant_id, seconds.c.second],
        set_={k: stmt.excluded[k] for k in _STORED},
        where=seconds.c.frames < stmt.excluded.frames)


_UPSERT = {"sqlite": _keep_the_fuller(sqlite.insert), "postgresql": _keep_the_fuller(postgresql.insert)}


def _keeps_emotions(conn: Connection, session_id: int) -> bool:
    # a missing session keeps them: the insert then fails on its foreign key, as it always did
    return conn.execute(sa.select(sessions.c.emotions).where(sessions.c.id == session_id)).scalar() is not False


def _angle(value: float | None) -> float | None:
    return None if value is None else float(value)


def _row(session_id: int, r: SecondRecord, emotions: bool) -> dict:
    scores = {k: round(float(v), 4) for k, v in r.scores.items()} if emotions else {}
    return {"session_id": session_id, "participant_id": r.track_id, "second": int(r.second),
            "emotion": r.emotion if emotions else None, "frames": int(r.frames), "scores": json.dumps(scores),
            "attention": r.attention, **{k: _angle(v) for k, v in r.pose().items()}}


class SecondsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``seconds``."""

    engine: Engine

    def add_seconds(self, session_id: int, records: Iterable[SecondRecord]) -> int:
        """Store records whose ``track_id`` is a participant id of the session. A second stored
        twice for a participant (a reconnect within the second) keeps the one with more frames.
        An attention-only session (``emotions`` False) gets no emotion and no scores, whatever
        the records carry."""
        records = [r for r in records if r.track_id is not None]
        if records:
            # read before the write's transaction: SQLite refuses at once, without waiting, a write
            # in a transaction that read before another writer committed; a session's choice never changes
            with self.engine.connect() as conn:
                emotions = _keeps_emotions(conn, session_id)
            with self.engine.begin() as conn:
                conn.execute(_UPSERT[conn.dialect.name], [_row(session_id, r, emotions) for r in records])
        return len(records)

    def seconds(self, session_id: int, participant_id: int | None = None) -> list[SecondRecord]:
        """Records by second, then participant (``track_id`` is the participant id)."""
        query = seconds.select().where(seconds.c.session_id == session_id)
        if participant_id is not None:
            query = query.where(seconds.c.participant_id == participant_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(seconds.c.second, seconds.c.participant_id)).all()
        return [SecondRecord(r.second, r.participant_id, r.emotion, json.loads(r.scores), r.frames,
                             r.attention, r.yaw, r.pitch, r.roll) for r in rows]
