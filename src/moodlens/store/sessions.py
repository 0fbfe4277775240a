"""Sessions: a class or a video's analysis, with its join code, title, classes, privacy and
whether emotions are inferred."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from moodlens.store.engine import StoreError
from moodlens.store.records import PER_STUDENT, PRIVACY_MODES, Session, safe_text
from moodlens.store.schema import acknowledgements, participants, seconds, sessions

# Join codes: no 0/O, 1/I/L, so a code read aloud or off a slide is typed right.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6


class SessionsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``sessions`` (and
    deletes a session's rows in the other tables with it)."""

    engine: Engine

    def create_session(self, title: str, classes: Iterable[str], kind: str = "class",
                       started_at: float | None = None, privacy: str = PER_STUDENT, emotions: bool = True) -> Session:
        """A new open session with a fresh join code; ``privacy`` is one of :data:`PRIVACY_MODES`;
        ``emotions`` False: attention only, no emotion is stored for it."""
        if privacy not in PRIVACY_MODES:
            raise ValueError(f"privacy must be one of {', '.join(PRIVACY_MODES)}")
        started_at = time.time() if started_at is None else started_at
        classes, title = tuple(classes), safe_text(title, 200)
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self.engine.begin() as conn:
                    sid = conn.execute(sessions.insert().values(
                        code=code, title=title, kind=kind, classes=json.dumps(list(classes)),
                        started_at=started_at, privacy=privacy, emotions=emotions)).inserted_primary_key[0]
                return Session(sid, code, title, kind, classes, started_at, privacy=privacy, emotions=emotions)
            except sa.exc.IntegrityError:
                continue  # the code was taken: draw another
        raise StoreError("could not draw a free join code")

    def get_session(self, session_id: int) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(sessions.select().where(sessions.c.id == session_id)).first()
        return Session.from_row(row) if row else None

    def session_by_code(self, code: str) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(sessions.select().where(sessions.c.code == code.strip().upper())).first()
        return Session.from_row(row) if row else None

    def list_sessions(self) -> list[dict]:
        """All sessions, newest first, each with its number of participants and stored seconds."""
        people = (sa.select(participants.c.session_id, sa.func.count().label("n"))
                  .group_by(participants.c.session_id).subquery())
        secs = (sa.select(seconds.c.session_id, sa.func.count(sa.distinct(seconds.c.second)).label("n"))
                .group_by(seconds.c.session_id).subquery())
        query = (sa.select(sessions, people.c.n.label("participants"), secs.c.n.label("seconds"))
                 .outerjoin(people, people.c.session_id == sessions.c.id)
                 .outerjoin(secs, secs.c.session_id == sessions.c.id)
                 .order_by(sessions.c.started_at.desc(), sessions.c.id.desc()))
        with self.engine.connect() as conn:
            return [{**Session.from_row(row).to_dict(), "participants": row.participants or 0,
                     "seconds": row.seconds or 0} for row in conn.execute(query)]

    def end_interrupted(self, kind: str = "video") -> list[int]:
        """End the open sessions of ``kind`` that a stopped server left open (a video whose
        analysis a crash cut short): ended at their last stored second, titled "(interrupted)"."""
        last = (sa.select(seconds.c.session_id, sa.func.max(seconds.c.second).label("last"))
                .group_by(seconds.c.session_id).subquery())
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(sessions.c.id, sessions.c.title, sessions.c.started_at, last.c.last)
                                .outerjoin(last, last.c.session_id == sessions.c.id)
                                .where(sessions.c.ended_at.is_(None) & (sessions.c.kind == kind))).all()
            for row in rows:
                conn.execute(sessions.update().where(sessions.c.id == row.id).values(
                    ended_at=row.started_at + (row.last + 1 if row.last is not None else 0),
                    title=f"{row.title} (interrupted)"))
        return [row.id for row in rows]

    def end_session(self, session_id: int, ended_at: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where((sessions.c.id == session_id) & sessions.c.ended_at.is_(None))
                         .values(ended_at=time.time() if ended_at is None else ended_at))

    def delete_session(self, session_id: int) -> bool:
        """Delete a session with its participants and records; False if there was none."""
        with self.engine.begin() as conn:
            conn.execute(seconds.delete().where(seconds.c.session_id == session_id))
            conn.execute(acknowledgements.delete().where(acknowledgements.c.session_id == session_id))
            conn.execute(participants.delete().where(participants.c.session_id == session_id))
            return conn.execute(sessions.delete().where(sessions.c.id == session_id)).rowcount > 0

    def delete_sessions_ended_before(self, cutoff: float) -> list[int]:
        """Delete every session that ended before ``cutoff`` (open ones are kept), with its
        participants and records; returns their ids."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(sa.select(sessions.c.id).where(sessions.c.ended_at < cutoff)).scalars())
        return [i for i in ids if self.delete_session(i)]
