"""WebSocket close codes and closing or refusing a connection, shared by the socket routes
(:mod:`~moodlens.web.sockets`) and the app state (:mod:`~moodlens.web.state`), which closes a
session's connections when it ends and every connection when the server stops.

Codes 4000-4999 are the application's own. A refused handshake is accepted and then closed with
its code, since a handshake refused outright reaches the browser as a bare HTTP 403 with no
reason.
"""

from __future__ import annotations

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

CLOSE_UNAUTHORISED, CLOSE_ENDED, CLOSE_NOT_FOUND = 4401, 4000, 4404
CLOSE_NORMAL = 1000  # the student page's Pause or Stop camera
CLOSE_GOING_AWAY = 1001  # the server stopping (or, from a browser, a closed page)


async def close(ws: WebSocket, code: int, reason: str = "") -> None:
    """Close ``ws`` unless the client already went away."""
    try:
        if ws.application_state != WebSocketState.DISCONNECTED:
            await ws.close(code, reason)
    except (RuntimeError, WebSocketDisconnect):
        pass


async def refuse(ws: WebSocket, code: int, reason: str) -> None:
    """Refuse a connection with a close code and a reason the page can show."""
    await ws.accept()
    await ws.close(code, reason)
