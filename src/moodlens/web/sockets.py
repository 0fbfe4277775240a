"""The server's WebSockets: receiving a connection's frames or scores, answering each, and counting
who is connected to a live session.

- :func:`run_frames` takes camera frames (binary JPEG/PNG/WebP messages) and answers each one it
  analysed; only the newest frame waits, so a slow connection skips frames instead of lagging.
- :func:`run_scores` takes a browser's score messages (browser mode: the student's own browser
  analyses the camera), every one in order.
- :func:`attend` runs either for a session's participants and counts them connected meanwhile.

Both loops read through :func:`messages`, which ends quietly when the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from moodlens.journal import database_unavailable
from moodlens.web.browser import ScoreError
from moodlens.web.live import Latest, LiveSession
from moodlens.web.uploads import UploadError

if TYPE_CHECKING:
    from moodlens.web.server import MoodLens

log = logging.getLogger("moodlens.web")

# WebSocket close codes (4000-4999 are the application's own); a refused handshake is accepted
# and then closed with its code, since a handshake refused outright reaches the browser as a
# bare HTTP 403 with no reason
CLOSE_UNAUTHORISED, CLOSE_ENDED, CLOSE_NOT_FOUND = 4401, 4000, 4404
# A connection uses at most 1/FAIR_SHARE of a recognition worker: after a frame that took t CPU
# seconds, its next one waits (FAIR_SHARE - 1) * t, so costly frames slow only their sender. CPU
# time, not wall time: on a machine busy with other work a cheap frame can take long to finish,
# and that must not hold back its sender.
FAIR_SHARE = 4


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


async def messages(ws: WebSocket) -> AsyncIterator[dict]:
    """The client's messages until it disconnects; a dropped connection ends them, it is not an
    error."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            yield message
    except (WebSocketDisconnect, RuntimeError):
        return


async def run_frames(ws: WebSocket, ml: MoodLens, process: Callable[[bytes, float], dict],
                     now: Callable[[], float]) -> None:
    """Receive frames (binary JPEG/PNG/WebP messages) and answer each processed one with JSON.

    Only the newest frame waits; at most one is in recognition at a time for this connection.
    Each answer carries ``seq``, the number of the frame it is for (frames counted from 1 in the
    order sent), so the client can match answers to frames and measure latency; frames replaced
    before their turn get no answer (``dropped`` counts them).
    """
    slot = Latest()
    loop = asyncio.get_running_loop()

    cpu = [0.0]  # CPU seconds of the last frame

    def timed(data: bytes, t: float) -> dict:
        begin = time.thread_time()
        try:
            return process(data, t)
        finally:
            cpu[0] = time.thread_time() - begin

    async def work() -> None:
        while (item := await slot.get()) is not None:
            seq, t, received, data = item
            started = time.perf_counter()
            try:
                reply = await loop.run_in_executor(ml.pool, timed, data, t)
            except UploadError as exc:
                reply = {"error": exc.message, "status": exc.status}
            except Exception as exc:  # a bug in recognition must not kill the connection
                if database_unavailable(exc):
                    reply = {"error": "the database is unavailable; try again in a moment", "status": 503}
                else:
                    log.exception("frame %d failed", seq)
                    reply = {"error": f"could not analyse the frame ({type(exc).__name__})", "status": 500}
            reply.update(seq=seq, dropped=slot.dropped, queue_ms=round((started - received) * 1e3, 1),
                         ms=round((time.perf_counter() - started) * 1e3, 1))
            try:
                await ws.send_json(reply)
            except (WebSocketDisconnect, RuntimeError):
                return
            await asyncio.sleep((FAIR_SHARE - 1) * cpu[0])

    worker = asyncio.create_task(work())
    seq = 0
    try:
        async for message in messages(ws):
            data = message.get("bytes")
            if data is None:
                continue  # text messages are reserved for control; none are needed yet
            seq += 1
            if len(data) > ml.limits.frame_bytes:
                await ws.send_json({"seq": seq, "error": "frame too large", "status": 413})
                continue
            slot.put((seq, now(), time.perf_counter(), data))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        slot.close()
        await worker


async def run_scores(ws: WebSocket, ml: MoodLens, process: Callable[[str, float], dict],
                     now: Callable[[], float]) -> None:
    """Receive a student's score messages (JSON text) and answer each with ``process(text, t)``'s
    result and ``seq`` (messages counted from 1). Score messages are tiny and cheap, so they are
    handled in order on the event loop, none dropped. A picture sent here is refused: in browser
    mode no image is taken in."""
    seq = 0
    try:
        async for message in messages(ws):
            seq += 1
            started = time.perf_counter()
            text = message.get("text")
            if text is None:
                reply = {"error": "this socket takes score messages (JSON text), not pictures", "status": 415}
            else:
                try:
                    reply = process(text, now())
                except ScoreError as exc:
                    reply = {"error": str(exc), "status": 422}
            reply.update(seq=seq, ms=round((time.perf_counter() - started) * 1e3, 2))
            await ws.send_json(reply)
    except (WebSocketDisconnect, RuntimeError):
        pass


def main_face(faces):
    """A student's own face in their camera frame: the largest."""
    return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None


def disconnected(people: list) -> list:
    """Count one connection less for each of ``people``; those left with none."""
    gone = []
    for p in people:
        p.connections = max(0, p.connections - 1)
        if p.connections == 0:
            gone.append(p)
    return gone


async def attend(ws: WebSocket, ml: MoodLens, live: LiveSession, connect: Callable[[], None],
                 disconnect: Callable[[], list], process: Callable, receive=run_frames) -> None:
    """Run a session connection: ``connect()`` counts its participants (a gallery's grow while it
    runs) as connected, ``disconnect()`` counts them off again and returns those left with no
    connection, whose open second is then stored. Both run on the event loop without awaiting,
    so a cancelled connection still counts itself off. ``receive`` runs the socket: frames
    (:func:`run_frames`) or a browser's scores (:func:`run_scores`)."""
    ml.sockets.setdefault(live.info.id, set()).add(ws)
    ml.left_open.discard(live.info.id)
    connect()
    try:
        await receive(ws, ml, process, live.now)
    finally:
        ml.sockets.get(live.info.id, set()).discard(ws)
        for p in disconnect():
            ml.record(live, p.flush())
