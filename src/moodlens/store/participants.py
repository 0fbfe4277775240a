"""Participants: the students, gallery tiles or video faces of a session, and their join tokens."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from moodlens.store.records import Participant, hash_token, safe_text
from moodlens.store.schema import participants


class ParticipantsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``participants``."""

    engine: Engine

    def add_participant(self, session_id: int, name: str, source: str, token: str | None = None,
                        joined_at: float | None = None) -> Participant:
        joined_at, name = time.time() if joined_at is None else joined_at, safe_text(name, 120)
        with self.engine.begin() as conn:
            pid = conn.execute(participants.insert().values(
                session_id=session_id, name=name, source=source, joined_at=joined_at,
                token_hash=hash_token(token) if token else None)).inserted_primary_key[0]
        return Participant(pid, session_id, name, source, joined_at)

    def participants(self, session_id: int) -> list[Participant]:
        query = participants.select().where(participants.c.session_id == session_id).order_by(participants.c.id)
        with self.engine.connect() as conn:
            return [Participant.from_row(row) for row in conn.execute(query)]

    def participant_by_token(self, token: str) -> Participant | None:
        with self.engine.connect() as conn:
            row = conn.execute(participants.select().where(participants.c.token_hash == hash_token(token))).first()
        return Participant.from_row(row) if row else None

    def rename_participant(self, participant_id: int, name: str) -> bool:
        """Rename a participant; False if there is none with this id."""
        with self.engine.begin() as conn:
            return conn.execute(participants.update().where(participants.c.id == participant_id)
                                .values(name=safe_text(name, 120))).rowcount > 0
