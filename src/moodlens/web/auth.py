"""Who may do what: the teacher's token and login sessions, students' per-participant tokens.

The teacher's token comes from ``MOODLENS_TOKEN`` (at least 16 characters), or is generated and
printed at the first start; ``moodlens token --reset`` makes a new one. The database keeps only
its SHA-256 hash. Logging in with it on the login page opens a login session: the cookie holds a
random session id, never the token, and the server keeps the id's hash with its expiry (in the
``settings`` table, ``login:`` keys), so logging out or resetting the token ends it. Scripts
send the token itself as ``Authorization: Bearer ...`` (or ``?token=`` on a WebSocket).

Wrong teacher tokens are logged and throttled per address. A student who joins a session with
its code gets a token of their own that lets them send frames to that session and nothing else.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import replace

from starlette.requests import HTTPConnection

from moodlens.errors import MoodLensError
from moodlens.journal import UNAVAILABLE
from moodlens.store import Participant, Store, hash_token
from moodlens.web.security import Throttle

log = logging.getLogger("moodlens.web")

LOGIN_COOKIE = "moodlens_login"
STUDENT_COOKIE = "moodlens_student"
TOKEN_SETTING = "teacher_token_sha256"
LOGIN_PREFIX = "login:"
LOGIN_S = 12 * 3600
MIN_TOKEN = 16


def teacher_token(store: Store, token: str | None = None) -> tuple[str, str | None]:
    """``(hash of the teacher's token, new token or None)``: the given token, ``MOODLENS_TOKEN``,
    the stored hash, or a new token (its hash stored; returned so the caller prints it once).

    Raises:
        MoodLensError: a given token shorter than 16 characters (spaces around it do not count,
            as on the login page).
    """
    token = (token or os.environ.get("MOODLENS_TOKEN") or "").strip()
    if token:
        if len(token) < MIN_TOKEN:
            raise MoodLensError(f"MOODLENS_TOKEN is {len(token)} characters long; use at least {MIN_TOKEN} "
                                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(18))')")
        return hash_token(token), None
    stored = store.get_setting(TOKEN_SETTING)
    if stored:
        return stored, None
    return hash_token(token := reset_teacher_token(store)), token


def reset_teacher_token(store: Store) -> str:
    """Make and store a new teacher token (returned, to be shown once) and end every login session."""
    token = secrets.token_urlsafe(18)
    store.set_setting(TOKEN_SETTING, hash_token(token))
    store.delete_settings(store.settings_like(LOGIN_PREFIX))
    return token


def client_address(conn: HTTPConnection) -> str:
    """The peer's address (a proxy's ``X-Forwarded-For`` counts only when the app trusts it,
    see ``create_app(trusted_proxies=...)``)."""
    return conn.client.host if conn.client else "?"


class Auth:
    """Checks requests and WebSocket handshakes against the teacher's token, login sessions and
    students' tokens.

    Args:
        failures_per_minute: wrong teacher tokens an address may send in a minute; more are
            refused unchecked (429 on the API) until the minute has passed.
    """

    def __init__(self, token_hash: str, store: Store, failures_per_minute: int = 10):
        self.token_hash, self.store = token_hash, store
        self.failures = Throttle(failures_per_minute)
        self._students: dict[str, Participant] = {}
        # login id hash -> (expiry, when last confirmed in the database); the database is asked
        # again every minute, so a login ended by another process ends here too
        self._logins: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    # the teacher
    def throttled(self, conn: HTTPConnection) -> bool:
        return self.failures.blocked(client_address(conn))

    def check_token(self, conn: HTTPConnection, given: str) -> bool:
        """Whether ``given`` is the teacher's token; a wrong one is logged and counted against
        the sender's address, and nothing is checked for an address over its limit."""
        client = client_address(conn)
        if self.failures.blocked(client):
            return False
        if secrets.compare_digest(hash_token(given.strip()).encode(), self.token_hash.encode()):
            return True
        self.failures.hit(client)
        log.warning("wrong teacher token from %s (%d in the last minute)", client, self.failures.count(client))
        return False

    def is_teacher(self, conn: HTTPConnection) -> bool:
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.check_token(conn, header[7:])
        if conn.cookies.get(LOGIN_COOKIE):
            return self._logged_in(conn.cookies[LOGIN_COOKIE])
        if conn.scope["type"] == "websocket" and conn.query_params.get("token"):
            return self.check_token(conn, conn.query_params["token"])
        return False

    def login(self) -> str:
        """A new login session's id (for the cookie)."""
        login_id, now = secrets.token_urlsafe(32), time.time()
        expired = [k for k, v in self.store.settings_like(LOGIN_PREFIX).items() if _float(v) < now]
        self.store.delete_settings(expired)
        self.store.set_setting(_login_key(login_id), repr(now + LOGIN_S))
        with self._lock:
            self._logins[_login_key(login_id)] = (now + LOGIN_S, now)
        return login_id

    def logout(self, conn: HTTPConnection) -> None:
        login_id = conn.cookies.get(LOGIN_COOKIE)
        if login_id:
            with self._lock:
                self._logins.pop(_login_key(login_id), None)
            self.store.delete_settings([_login_key(login_id)])

    def _logged_in(self, login_id: str) -> bool:
        key, now = _login_key(login_id), time.time()
        with self._lock:
            known = self._logins.get(key)
        if known is None or now - known[1] > 60:
            try:
                stored = self.store.get_setting(key)
            except UNAVAILABLE:  # keep a known login working while the database is away
                return known is not None and known[0] > now
            with self._lock:
                if stored is None:
                    self._logins.pop(key, None)
                    return False
                known = self._logins[key] = (_float(stored), now)
        return known[0] > now

    # students
    def student(self, conn: HTTPConnection) -> Participant | None:
        """The participant whose token the connection carries (cookie, or ``?token=`` on a
        WebSocket), if any."""
        given = conn.cookies.get(STUDENT_COOKIE)
        if not given and conn.scope["type"] == "websocket":
            given = conn.query_params.get("token")
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


def _login_key(login_id: str) -> str:
    return LOGIN_PREFIX + hash_token(login_id)[:40]  # the settings key holds 64 characters


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
