"""What routes ask FastAPI for: the app's state and who is calling.

    @router.get("/api/sessions", dependencies=[Depends(teacher)])
    async def list_sessions(ml: State) -> dict: ...

- :func:`state` (:data:`State`): the app's :class:`~moodlens.web.state.MoodLens`, for HTTP routes
  and WebSockets alike (it reads the connection's ``app.state``).
- :func:`teacher`: the teacher's access check, 401 (429 for an address sending wrong tokens).
- :func:`student` (:data:`Student`): the participant whose token the request carries, else 401.
- :func:`teacher_or_student`: either of them, else 401.

The checks are ``async``, so they run on the event loop as the routes' own code did before.
WebSocket routes check their callers themselves: a refused socket is closed with a code
(:mod:`~moodlens.web.connections`), not answered with an HTTP status.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from moodlens.store import Participant
from moodlens.web.state import MoodLens


async def state(connection: HTTPConnection) -> MoodLens:
    """The app's shared state (an HTTP request's or a WebSocket's app)."""
    return connection.app.state.moodlens


State = Annotated[MoodLens, Depends(state)]


async def teacher(request: Request, ml: State) -> None:
    """401 unless the teacher is logged in (or sends the token); 429 for an address over its
    limit of wrong tokens. A logged-in teacher goes on even when a guesser shares their address;
    tokens are not checked then."""
    throttled = ml.auth.throttled(request)
    if not ml.auth.is_teacher(request):
        if throttled:
            raise HTTPException(429, "too many wrong teacher tokens from this address; wait a minute")
        raise HTTPException(401, "log in as the teacher first")


async def student(request: Request, ml: State) -> Participant:
    """The participant whose token the request carries; 401 for anyone who has not joined."""
    participant = ml.auth.student(request)
    if participant is None:
        raise HTTPException(401, "join a session first")
    return participant


Student = Annotated[Participant, Depends(student)]


async def teacher_or_student(request: Request, ml: State) -> None:
    """401 unless the teacher is logged in or a student has joined."""
    if not ml.auth.is_teacher(request) and ml.auth.student(request) is None:
        raise HTTPException(401, "log in or join a session first")
