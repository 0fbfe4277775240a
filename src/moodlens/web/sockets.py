"""The server's WebSockets: receiving a connection's frames or scores, answering each, and counting
who is connected to a live session.

- :func:`run_frames` takes camera frames (binary JPEG/PNG/WebP messages) and answers each one it
  analysed; only the newest frame waits, so a slow connection skips frames instead of lagging.
- :func:`run_scores` takes a browser's score messages (browser mode: the student's own browser
  analyses the camera), every one in order.
- :func:`attend` runs either for a session's participants and counts them connected meanwhile.
- :data:`router`: ``/ws/live`` (the teacher's own camera), ``/ws/student`` and
  ``/ws/student/scores`` (a student's camera or browser), ``/ws/sessions/{id}/gallery`` (the
  teacher's meeting gallery) and ``/ws/sessions/{id}/dashboard`` (a snapshot every second).

Each route checks its caller itself and refuses a socket with a close code
(:mod:`~moodlens.web.connections`); the state comes from the :data:`~moodlens.web.deps.State`
dependency.

Every loop reads through :func:`messages`, which ends quietly when the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from moodlens.journal import database_unavailable
from moodlens.web import browser, privacy
from moodlens.web.browser import ScoreError
from moodlens.web.connections import CLOSE_ENDED, CLOSE_NORMAL, CLOSE_NOT_FOUND, CLOSE_UNAUTHORISED, refuse
from moodlens.web.deps import State
from moodlens.web.live import Latest, LiveParticipant, LiveSession
from moodlens.web.security import RowId, same_origin
from moodlens.web.state import MoodLens
from moodlens.web.tiles import GalleryTiles
from moodlens.web.uploads import UploadError, read_upload_image

log = logging.getLogger("moodlens.web")

# A connection uses at most 1/FAIR_SHARE of a recognition worker: after a frame that took t CPU
# seconds, its next one waits (FAIR_SHARE - 1) * t, so costly frames slow only their sender. CPU
# time, not wall time: on a machine busy with other work a cheap frame can take long to finish,
# and that must not hold back its sender.
FAIR_SHARE = 4


async def messages(ws: WebSocket) -> AsyncIterator[dict]:
    """The client's messages until it disconnects; a dropped connection ends them, it is not an
    error."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                ws.state.close_code = message.get("code")
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
            except Exception as exc:  # a bug in recognition must not kill the connection
                reply = failed_frame(exc, seq)
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


def failed_frame(exc: Exception, seq: int) -> dict:
    """The answer for frame ``seq`` whose processing raised ``exc``: a refused frame's status, 503
    while the database is unavailable, else 500 (and the bug logged)."""
    if isinstance(exc, UploadError):
        return {"error": exc.message, "status": exc.status}
    if database_unavailable(exc):
        return {"error": "the database is unavailable; try again in a moment", "status": 503}
    log.error("frame %d failed", seq, exc_info=exc)
    return {"error": f"could not analyse the frame ({type(exc).__name__})", "status": 500}


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




router = APIRouter()


def decode_frame(ml: MoodLens, data: bytes):
    """A live frame from a socket message, within the live-frame byte and pixel limits (read
    from its header, before decoding)."""
    return read_upload_image(data, ml.limits, ml.limits.frame_bytes, ml.limits.frame_pixels)


@router.websocket("/ws/live")
async def ws_live(ws: WebSocket, ml: State) -> None:
    """The teacher's own camera: faces back, nothing stored."""
    if not (same_origin(ws.headers) and ml.auth.is_teacher(ws)):
        return await refuse(ws, CLOSE_UNAUTHORISED, "log in as the teacher first")
    await ws.accept()
    stream, start = ml.recognizer.open_stream(), time.monotonic()

    def process(data: bytes, t: float) -> dict:
        frame = stream.push(decode_frame(ml, data), t)
        return {"faces": [f.to_dict() for f in frame.faces], "shape": list(frame.shape)}

    await run_frames(ws, ml, process, lambda: time.monotonic() - start)


# a student's camera or browser
async def attend_student(ws: WebSocket, ml: MoodLens, handler: Callable[[LiveSession, LiveParticipant], Callable],
                         receive=run_frames) -> None:
    """Run a student's socket on their live session (or close it if they have not joined or it
    has ended); ``handler(live, me)`` makes the function that processes each message."""
    student = ml.auth.student(ws) if same_origin(ws.headers) else None
    if student is None:
        return await refuse(ws, CLOSE_UNAUTHORISED, "join the session first")
    live = await run_in_threadpool(ml.live_session, student.session_id)
    if live is None:
        return await refuse(ws, CLOSE_ENDED, "the session has ended")
    await ws.accept()
    me = live.add(student)

    def connect() -> None:
        me.connections += 1
        me.camera_off = False

    def disconnect() -> list:
        # a normal close (1000) is the page's Pause or Stop camera: the student is still there;
        # a closed page says "going away" (1001), a lost connection says nothing (1006)
        me.camera_off = getattr(ws.state, "close_code", None) == CLOSE_NORMAL
        return disconnected([me])

    await attend(ws, ml, live, connect, disconnect, handler(live, me), receive)


@router.websocket("/ws/student")
async def ws_student(ws: WebSocket, ml: State) -> None:
    """A student's camera: their main face becomes their per-second records."""
    def frames(live: LiveSession, me: LiveParticipant) -> Callable[[bytes, float], dict]:
        emotions = live.info.emotions
        stream = ml.recognizer.open_stream(emotions=emotions)

        def process(data: bytes, t: float) -> dict:
            frame = stream.push(decode_frame(ml, data), t)
            ml.record(live, me.observe(main_face(frame.faces), t))
            return {"faces": [f.to_dict(emotions) for f in frame.faces], "shape": list(frame.shape)}
        return process

    await attend_student(ws, ml, frames)


@router.websocket("/ws/student/scores")
async def ws_student_scores(ws: WebSocket, ml: State) -> None:
    """Browser mode: the student's browser analyses the camera and sends only numbers (a face's
    box, head pose and, unless the session is attention only, scores)."""
    def scores(live: LiveSession, me: LiveParticipant) -> Callable[[str, float], dict]:
        stream = browser.ScoreStream(ml.recognizer)
        emotions = live.info.emotions

        def process(text: str, t: float) -> dict:
            face = stream.push(browser.parse_scores(text, live.info.classes, emotions), t)
            ml.record(live, me.observe(face, t))
            return {"face": None if face is None else face.to_dict(emotions)}
        return process

    await attend_student(ws, ml, scores, run_scores)


# the teacher's views of a live session
async def accept_teacher(ws: WebSocket, ml: MoodLens, session_id: int) -> LiveSession | None:
    """Accept a teacher's socket on a live session; close it (and return None) otherwise."""
    if not (same_origin(ws.headers) and ml.auth.is_teacher(ws)):
        await refuse(ws, CLOSE_UNAUTHORISED, "log in as the teacher first")
        return None
    live = await run_in_threadpool(ml.live_session, session_id)
    if live is None:
        await refuse(ws, CLOSE_NOT_FOUND, "no such open session")
        return None
    await ws.accept()
    return live


def gallery_of(ml: MoodLens, live: LiveSession) -> GalleryTiles:
    """The live session's gallery, made on the first share: each new tile becomes a participant,
    counted connected while the share(s) last."""
    if live.gallery is None:
        def new_tile(n: int, maybe: int | None):  # called inside gallery.assign, so with gallery.tiles_lock held
            name = f"Tile {n}" if maybe is None else f"Tile {n} (unsure: {live.participants[maybe].info.name}?)"
            tile = live.add(ml.store.add_participant(live.info.id, name, "tile", joined_at=ml.clock()))
            tile.connections += live.gallery.sockets  # connected while the share(s) last
            return tile
        live.gallery = GalleryTiles(ml.recognizer, new_tile, emotions=live.info.emotions)
    return live.gallery


@router.websocket("/ws/sessions/{session_id}/gallery")
async def ws_gallery(ws: WebSocket, ml: State, session_id: RowId) -> None:
    """The teacher's screen capture of the meeting's gallery: a participant per tile."""
    live = await accept_teacher(ws, ml, session_id)
    if live is None:
        return
    gallery = gallery_of(ml, live)

    def process(data: bytes, t: float) -> dict:
        image = decode_frame(ml, data)
        with gallery.lock:  # one frame at a time through the shared stream and tiles
            frame = gallery.stream.push(image, t)
            assigned = gallery.assign(frame.faces, image)
        faces = []
        for pid, face in assigned.items():
            ml.record(live, live.participants[pid].observe(face, t))
            if face is not None:
                faces.append({**face.to_dict(live.info.emotions), "participant": pid})
        return {"faces": faces, "shape": list(frame.shape)}

    def connect() -> None:
        with gallery.tiles_lock:
            gallery.sockets += 1
            for pid in gallery.tiles:
                live.participants[pid].connections += 1

    def disconnect() -> list:
        with gallery.tiles_lock:
            gallery.sockets -= 1
            return disconnected([live.participants[pid] for pid in gallery.tiles])

    await attend(ws, ml, live, connect, disconnect, process)


@router.websocket("/ws/sessions/{session_id}/dashboard")
async def ws_dashboard(ws: WebSocket, ml: State, session_id: RowId) -> None:
    """A snapshot of the live session every second until it ends."""
    live = await accept_teacher(ws, ml, session_id)
    if live is None:
        return
    ml.sockets.setdefault(session_id, set()).add(ws)

    async def drain() -> None:  # notice when the page goes away
        async for _ in messages(ws):
            pass

    reader = asyncio.create_task(drain())
    try:
        while not reader.done() and not live.ended:
            await ws.send_json({**privacy.visible(await run_in_threadpool(live.snapshot), live.info),
                                "storage": ml.storage()})
            await asyncio.wait([reader], timeout=1.0)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()
        ml.sockets.get(session_id, set()).discard(ws)
