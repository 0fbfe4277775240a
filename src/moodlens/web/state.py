"""The web app's shared state, :class:`MoodLens`: one per app, in ``app.state.moodlens``.

``create_app`` (:mod:`~moodlens.web.server`) makes it; every router reads it through the
:data:`~moodlens.web.deps.State` dependency. It imports no router, so routers and the state
depend one way only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from moodlens.journal import Journal
from moodlens.recognizer import Recognizer
from moodlens.store import Participant, Session, Store
from moodlens.web.auth import Auth
from moodlens.web.connections import CLOSE_ENDED, CLOSE_GOING_AWAY, close
from moodlens.web.live import LiveSession, Recorder
from moodlens.web.security import Recent, Throttle
from moodlens.web.uploads import Limits, VideoJobs


class MoodLens:
    """Everything the routes share: store, recognizer, worker pools, live sessions, uploads."""

    def __init__(self, store: Store, recognizer: Recognizer, token_hash: str, limits: Limits, workers: int,
                 clock: Callable[[], float], journal: Path, uploads: Path):
        self.store, self.recognizer, self.limits, self.clock, self.uploads = store, recognizer, limits, clock, uploads
        self.auth = Auth(token_hash, store)
        # wrong join codes per address; an address over the limit may still use the codes it
        # has joined with (a class behind one NAT keeps joining while a guesser there is stopped)
        self.join_failures, self.joined = Throttle(limits.join_failures), Recent()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="moodlens-recognize")
        self.video_pool = ThreadPoolExecutor(1, thread_name_prefix="moodlens-video")
        self.journal = Journal(store, journal)
        self.recorder = Recorder(self.journal)
        self.videos = VideoJobs(recognizer, store, self.video_pool, limits)
        self.live: dict[int, LiveSession] = {}
        # class sessions a stopped server left open, until someone connects to them again
        self.left_open = {s["id"] for s in store.list_sessions() if s["open"] and s["kind"] == "class"}
        self.sockets: dict[int, set[WebSocket]] = {}
        self._lock = threading.Lock()
        # the same name twice in one class (two Alices) would make their numbers impossible to tell apart
        self._naming = threading.Lock()

    # live sessions
    def live_session(self, session: Session | int | None) -> LiveSession | None:
        """The live state of an open session (made on first use, also after a restart)."""
        with self._lock:
            if isinstance(session, int):
                if session in self.live:
                    return self.live[session]
                session = self.store.get_session(session)
            if session is None or not session.open or session.kind != "class":
                return None
            if session.id not in self.live:
                self.live[session.id] = self._revive(session)
            return self.live[session.id]

    def _revive(self, session: Session) -> LiveSession:
        """A live session from what the store holds: after a restart the live view picks up where
        it was, with the stored participants, seconds and seen flags."""
        live = LiveSession(session, self.clock)
        for p in self.store.participants(session.id):
            live.add(p)
        live.replay(self.store.seconds(session.id))
        live.acknowledged = {pid: set(starts) for pid, starts in self.store.acknowledged(session.id).items()}
        return live

    def record(self, live: LiveSession, records) -> None:
        if records:
            live.count(records)
            self.recorder.put(live.info.id, records)

    def flush_live(self, live: LiveSession) -> None:
        """Store every participant's open (partial) second."""
        for p in list(live.participants.values()):
            self.record(live, p.flush())

    def add_student(self, live: LiveSession, name: str, token: str) -> Participant:
        """A new student in ``live`` under ``name``, or ``name (2)`` and so on when the class
        has it already; two students joining under one name at once still get two names."""
        with self._naming:
            taken = {p.info.name.casefold() for p in live.participants.values()}
            unique = next(n for n in (name, *(f"{name} ({i})" for i in range(2, len(taken) + 3)))
                          if n.casefold() not in taken)
            participant = self.store.add_participant(live.info.id, unique, "student", token, self.clock())
            live.add(participant)
            return participant

    async def rename(self, participant_id: int, name: str) -> bool:
        """Rename a participant in the store, the cached student tokens and the live sessions;
        False when there is no such participant."""
        if not await run_in_threadpool(self.store.rename_participant, participant_id, name):
            return False
        self.auth.renamed(participant_id, name)
        for live in self.live.values():
            if participant_id in live.participants:
                live.participants[participant_id].info.name = name
        return True

    async def end(self, session_id: int) -> None:
        """Mark a session ended, close its connections and store its last seconds."""
        await run_in_threadpool(self.store.end_session, session_id, self.clock())
        with self._lock:
            live = self.live.pop(session_id, None)
        if live is not None:
            live.ended = True
            for ws in list(self.sockets.pop(session_id, ())):
                await close(ws, CLOSE_ENDED, "the session has ended")
            self.flush_live(live)
        await run_in_threadpool(self.recorder.flush)

    def storage(self) -> dict:
        """Whether per-second records are reaching the database: ``behind`` of them wait in the
        journal since ``behind_since``."""
        return {"behind": self.journal.behind, "behind_since": self.journal.behind_since}

    # stopping
    async def shutdown(self) -> None:
        """Close every connection (going away), then :meth:`close`, off the event loop."""
        for session_id in list(self.sockets):
            for ws in list(self.sockets.get(session_id, ())):
                await close(ws, CLOSE_GOING_AWAY, "server stopping")
        await run_in_threadpool(self.close)

    def close(self) -> None:
        """Finish the frames in recognition, store every open second, then let go of the database."""
        self.videos.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.video_pool.shutdown(wait=True, cancel_futures=True)
        for live in list(self.live.values()):
            self.flush_live(live)
        self.recorder.close()
        self.store.close()
