"""Who may do what: the teacher's token, students' per-participant tokens, cookies.

The teacher's token comes from ``MOODLENS_TOKEN``, or is generated and printed at the first start;
the database keeps only its SHA-256 hash. It is sent as ``Authorization: Bearer ...``, as the cookie that the login
page sets, or (WebSockets only, for scripts) as ``?token=``. A student who joins a session with
its code gets a token of their own that lets them send frames to that session and nothing else.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import replace
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from moodlens.store import Participant, Store, hash_token

TEACHER_COOKIE = "moodlens_token"
STUDENT_COOKIE = "moodlens_student"
TOKEN_SETTING = "teacher_token_sha256"


def teacher_token(store: Store, token: str | None = None) -> tuple[str, str | None]:
    """``(hash of the teacher's token, new token or None)``: the given token, ``MOODLENS_TOKEN``,
    the stored hash, or a new token (its hash stored; returned so the caller prints it once)."""
    token = token or os.environ.get("MOODLENS_TOKEN")
    if token:
        return hash_token(token), None
    stored = store.get_setting(TOKEN_SETTING)
    if stored:
        return stored, None
    token = secrets.token_urlsafe(18)
    store.set_setting(TOKEN_SETTING, hash_token(token))
    return hash_token(token), token


def _presented(conn: HTTPConnection, cookie: str, query: bool) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and cookie == TEACHER_COOKIE:
        return header[7:].strip()
    if conn.cookies.get(cookie):
        return conn.cookies[cookie]
    if query:
        return conn.query_params.get("token")
    return None


class Auth:
    """Checks requests and WebSocket handshakes against the teacher's and students' tokens."""

    def __init__(self, token_hash: str, store: Store):
        self.token_hash, self.store = token_hash, store
        self._students: dict[str, Participant] = {}
        self._failures: dict[str, deque] = defaultdict(deque)

    def is_teacher(self, conn: HTTPConnection) -> bool:
        given = _presented(conn, TEACHER_COOKIE, query=conn.scope["type"] == "websocket")
        return bool(given) and self.is_teacher_token(given)

    def is_teacher_token(self, given: str) -> bool:
        return secrets.compare_digest(hash_token(given.strip()).encode(), self.token_hash.encode())

    def student(self, conn: HTTPConnection) -> Participant | None:
        """The participant whose token the connection carries (cookie, or ``?token=`` on a
        WebSocket), if any."""
        given = _presented(conn, STUDENT_COOKIE, query=conn.scope["type"] == "websocket")
        if not given:
            return None
        if given not in self._students:
            participant = self.store.participant_by_token(given)
            if participant is None:
                return None
            self._students[given] = participant
        return self._students[given]

    def forget(self, session_id: int) -> None:
        """Drop cached student tokens of a deleted session."""
        self._students = {k: p for k, p in self._students.items() if p.session_id != session_id}

    def renamed(self, participant_id: int, name: str) -> None:
        """Keep cached students' names in step with a rename."""
        self._students = {k: replace(p, name=name) if p.id == participant_id else p
                          for k, p in self._students.items()}

    @staticmethod
    def same_origin(conn: HTTPConnection) -> bool:
        """A browser's WebSocket from another site carries our cookies too: refuse it."""
        origin = conn.headers.get("origin")
        return origin is None or urlsplit(origin).netloc == conn.headers.get("host")

    def too_many_failures(self, client: str, limit: int = 20, window_s: float = 60.0) -> bool:
        """Whether ``client`` failed ``limit`` times within ``window_s`` (join-code guessing)."""
        now, failures = time.monotonic(), self._failures[client]
        while failures and now - failures[0] > window_s:
            failures.popleft()
        return len(failures) >= limit

    def failed(self, client: str) -> None:
        self._failures[client].append(time.monotonic())
