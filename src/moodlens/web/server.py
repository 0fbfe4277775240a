"""The MoodLens web app: pages, a JSON API and WebSockets, on FastAPI and uvicorn.

    moodlens.web.server.serve(port=8000)                   # SQLite in ./moodlens.db
    moodlens.web.server.serve(db="postgresql://u:p@host/moodlens")

``create_app`` builds the app for tests and embedding. Recognition runs on worker threads, never
on the event loop; see :mod:`moodlens.web.live` for how live frames are scheduled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from moodlens.annotate import hex_colors
from moodlens.classify import EmotionModel
from moodlens.detect import create_detector
from moodlens.recognizer import Recognizer
from moodlens.store import Session, Store, database_url
from moodlens.web.auth import STUDENT_COOKIE, TEACHER_COOKIE, Auth, teacher_token
from moodlens.web.dashboard import export_name, lesson_report, report_csv, review
from moodlens.web.live import Latest, LiveSession, Recorder
from moodlens.web.tiles import GalleryTiles
from moodlens.web.uploads import Limits, UploadError, VideoJobs, read_upload_image, video_type

log = logging.getLogger("moodlens.web")

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
PRIVACY = ("MoodLens keeps only numbers: for each participant and each second, the share of each emotion "
           "and the most likely one. Camera frames and faces are analysed in memory and never stored; an "
           "uploaded video is deleted as soon as it has been analysed.")
# WebSocket close codes (4000-4999 are the application's own)
CLOSE_UNAUTHORISED, CLOSE_ENDED, CLOSE_NOT_FOUND = 4401, 4000, 4404
# A row id in a URL: bounded to what the database's 64-bit integers hold, so a huge number is
# a 422, never an overflow inside the database driver.
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


def default_recognizer() -> Recognizer:
    """The shipped models with one onnxruntime thread each: the web app runs several frames at
    once on its worker threads instead of one frame on all cores."""
    return Recognizer(model=EmotionModel(threads=1), detector=create_detector(threads=1))


class MoodLens:
    """Everything the routes share: store, recognizer, worker pools, live sessions, uploads."""

    def __init__(self, store: Store, recognizer: Recognizer, token_hash: str, limits: Limits, workers: int,
                 clock: Callable[[], float]):
        self.store, self.recognizer, self.limits, self.clock = store, recognizer, limits, clock
        self.auth = Auth(token_hash, store)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="moodlens-recognize")
        self.video_pool = ThreadPoolExecutor(1, thread_name_prefix="moodlens-video")
        self.recorder = Recorder(store)
        self.videos = VideoJobs(recognizer, store, self.video_pool, limits)
        self.live: dict[int, LiveSession] = {}
        self.sockets: dict[int, set[WebSocket]] = {}
        self._lock = threading.Lock()

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
                live = LiveSession(session, self.clock)
                for p in self.store.participants(session.id):
                    live.add(p)
                self.live[session.id] = live
            return self.live[session.id]

    def record(self, live: LiveSession, records) -> None:
        if records:
            live.count(records)
            self.recorder.put(live.info.id, records)

    def flush_live(self, live: LiveSession) -> None:
        """Store every participant's open (partial) second."""
        for p in list(live.participants.values()):
            self.record(live, p.flush())

    async def end(self, session_id: int) -> None:
        """Mark a session ended, close its connections and store its last seconds."""
        await run_in_threadpool(self.store.end_session, session_id, self.clock())
        with self._lock:
            live = self.live.pop(session_id, None)
        if live is not None:
            live.ended = True
            for ws in list(self.sockets.pop(session_id, ())):
                await _close(ws, CLOSE_ENDED, "the session has ended")
            self.flush_live(live)
        await run_in_threadpool(self.recorder.flush)

    def close(self) -> None:
        """Finish the frames in recognition, store every open second, then let go of the database."""
        self.videos.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.video_pool.shutdown(wait=True, cancel_futures=True)
        for live in list(self.live.values()):
            self.flush_live(live)
        self.recorder.close()
        self.store.close()


# --- connections -----------------------------------------------------------------------------

async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    try:
        if ws.application_state != WebSocketState.DISCONNECTED:
            await ws.close(code, reason)
    except (RuntimeError, WebSocketDisconnect):
        pass


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

    async def work() -> None:
        while (item := await slot.get()) is not None:
            seq, t, received, data = item
            started = time.perf_counter()
            try:
                reply = await loop.run_in_executor(ml.pool, process, data, t)
            except UploadError as exc:
                reply = {"error": exc.message, "status": exc.status}
            except Exception as exc:  # a bug in recognition must not kill the connection
                log.exception("frame %d failed", seq)
                reply = {"error": f"could not analyse the frame ({type(exc).__name__})", "status": 500}
            reply.update(seq=seq, dropped=slot.dropped, queue_ms=round((started - received) * 1e3, 1),
                         ms=round((time.perf_counter() - started) * 1e3, 1))
            try:
                await ws.send_json(reply)
            except (WebSocketDisconnect, RuntimeError):
                return

    worker = asyncio.create_task(work())
    seq = 0
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
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


def _main_face(faces):
    return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None


# --- the app ---------------------------------------------------------------------------------

def create_app(db_url: str | None = None, recognizer: Recognizer | None = None, token: str | None = None, *,
               limits: Limits | None = None, workers: int | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The web app on the database at ``db_url`` (a SQLAlchemy URL or what
    :func:`moodlens.store.database_url` accepts; None: ``./moodlens.db``).

    Args:
        recognizer: shared by all connections (default: :func:`default_recognizer`).
        token: the teacher's token (default: ``MOODLENS_TOKEN``, the one whose hash is stored, or
            a new one, printed once).
        limits: upload limits.
        workers: recognition threads (default: 2, or 1 on a one-core machine).
        clock: wall-clock time in seconds (tests move time on by hand).
    """
    store = Store(database_url(db_url))
    token_hash, generated = teacher_token(store, token)
    if generated:
        print(f"MoodLens teacher token (generated; shown only now, the database keeps its hash): {generated}",
              flush=True)
    ml = MoodLens(store, recognizer or default_recognizer(), token_hash, limits or Limits(),
                  workers or min(2, os.cpu_count() or 1), clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for session_id in list(ml.sockets):
            for ws in list(ml.sockets.get(session_id, ())):
                await _close(ws, 1001, "server stopping")
        await run_in_threadpool(ml.close)

    app = FastAPI(title="MoodLens", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.moodlens = ml
    app.state.token_generated = generated is not None
    app.add_middleware(BodyLimit, limits=ml.limits, auth=ml.auth)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError):
        return JSONResponse({"error": exc.message}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": problems or "invalid request"}, 422)

    def teacher(request: Request) -> None:
        if not ml.auth.is_teacher(request):
            raise HTTPException(401, "log in as the teacher first")

    def session_or_404(session_id: int) -> Session:
        session = ml.store.get_session(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id}")
        return session

    # pages
    def page(name: str, who: str = "teacher") -> Callable[[Request], Awaitable[Response]]:
        async def show(request: Request) -> Response:
            if who == "teacher" and not ml.auth.is_teacher(request):
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            if who == "student" and ml.auth.student(request) is None:
                return RedirectResponse("/join", status_code=303)
            return FileResponse(PAGES / name, headers={"Cache-Control": "no-store"})
        return show

    for path, name, who in [("/", "index.html", "teacher"), ("/live", "live.html", "teacher"),
                            ("/upload", "upload.html", "teacher"), ("/sessions", "sessions.html", "teacher"),
                            ("/sessions/{session_id}", "session.html", "teacher"),
                            ("/sessions/{session_id}/report", "report.html", "teacher"),
                            ("/login", "login.html", "anyone"), ("/join", "join.html", "anyone"),
                            ("/student", "student.html", "student")]:
        app.add_api_route(path, page(name, who), methods=["GET"], include_in_schema=False)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.post("/login", include_in_schema=False)
    async def login(token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
        if not ml.auth.is_teacher_token(token):
            return RedirectResponse("/login?error=1", status_code=303)
        target = next if re.fullmatch(r"/(?!/)[\w\-/]*", next) else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TEACHER_COOKIE, token.strip(), max_age=12 * 3600, httponly=True, samesite="strict")
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TEACHER_COOKIE)
        response.delete_cookie(STUDENT_COOKIE)
        return response

    @app.get("/api/meta")
    async def meta(request: Request) -> dict:
        if not ml.auth.is_teacher(request) and ml.auth.student(request) is None:
            raise HTTPException(401, "log in or join a session first")
        limits = ml.limits
        return {"classes": list(ml.recognizer.classes), "colors": hex_colors(), "privacy": PRIVACY,
                "limits": {"image_bytes": limits.image_bytes, "video_bytes": limits.video_bytes,
                           "frame_bytes": limits.frame_bytes}}

    # still images and videos
    @app.post("/api/analyze")
    async def analyze(request: Request, file: Annotated[UploadFile, File()]) -> dict:
        teacher(request)
        data = await file.read(ml.limits.image_bytes + 1)

        def decode_and_analyze():  # decoding up to 40 MP is slow too: keep it off the event loop
            return ml.recognizer.analyze_frame(read_upload_image(data, ml.limits))

        frame = await asyncio.get_running_loop().run_in_executor(ml.pool, decode_and_analyze)
        return {"faces": [f.to_dict() for f in frame.faces], "shape": list(frame.shape),
                "timings": {k: round(v, 1) for k, v in frame.timings.items()}}

    @app.post("/api/videos", status_code=202)
    async def upload_video(request: Request, file: Annotated[UploadFile, File()]) -> dict:
        teacher(request)
        ml.videos.check_capacity()
        video_type(await file.read(16))
        await file.seek(0)
        suffix = Path(file.filename or "").suffix.lower()
        fd, name = tempfile.mkstemp(prefix="moodlens-", suffix=suffix if re.fullmatch(r"\.\w{1,5}", suffix) else "")
        try:
            with os.fdopen(fd, "wb") as out:
                await run_in_threadpool(shutil.copyfileobj, file.file, out, 2**20)
            if Path(name).stat().st_size > ml.limits.video_bytes:
                raise UploadError(413, f"video larger than {ml.limits.video_bytes // 2**20} MB")
            job = await run_in_threadpool(ml.videos.submit, Path(name), (file.filename or "video")[:120])
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return {"job": job.to_dict()}

    @app.get("/api/videos/{job_id}")
    async def video_job(request: Request, job_id: str) -> dict:
        teacher(request)
        job = ml.videos.get(job_id)
        if job is None:
            raise HTTPException(404, f"no video job {job_id}")
        return {"job": job.to_dict(frames=job.status == "done")}

    # sessions
    @app.get("/api/sessions")
    async def list_sessions(request: Request) -> dict:
        teacher(request)
        return {"sessions": await run_in_threadpool(ml.store.list_sessions)}

    @app.post("/api/sessions", status_code=201)
    async def create_session(request: Request) -> dict:
        teacher(request)
        body = await _json(request)
        title = str(body.get("title") or "").strip()[:120] or time.strftime("Class %Y-%m-%d %H:%M")
        session = await run_in_threadpool(ml.store.create_session, title, ml.recognizer.classes, "class", ml.clock())
        ml.live_session(session)
        return {"session": session.to_dict()}

    @app.get("/api/sessions/{session_id}")
    async def get_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        session = await run_in_threadpool(session_or_404, session_id)
        live = ml.live_session(session)
        if live is not None:
            return await run_in_threadpool(live.snapshot)
        return await run_in_threadpool(review, ml.store, session)

    @app.post("/api/sessions/{session_id}/end")
    async def end_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        await run_in_threadpool(session_or_404, session_id)
        await ml.end(session_id)
        return {"session": ml.store.get_session(session_id).to_dict()}

    @app.delete("/api/sessions/{session_id}")
    async def delete_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        await run_in_threadpool(session_or_404, session_id)
        await ml.end(session_id)
        await run_in_threadpool(ml.store.delete_session, session_id)
        ml.auth.forget(session_id)
        return {"deleted": session_id}

    @app.get("/api/sessions/{session_id}/export")
    async def export(request: Request, session_id: RowId, format: str = "csv") -> Response:
        teacher(request)
        if format not in ("csv", "json"):
            raise HTTPException(400, "format must be csv or json")
        await run_in_threadpool(ml.recorder.flush)
        if format == "json":
            data = await run_in_threadpool(ml.store.export_json, session_id)
        else:
            data = await run_in_threadpool(ml.store.export_csv, session_id)
        if data is None:
            raise HTTPException(404, f"no session {session_id}")
        session = await run_in_threadpool(ml.store.get_session, session_id)
        headers = {"Content-Disposition": f'attachment; filename="{export_name(session, format)}"'}
        if format == "json":
            return JSONResponse(data, headers=headers)
        return Response(data, media_type="text/csv", headers=headers)

    @app.patch("/api/participants/{participant_id}")
    async def rename(request: Request, participant_id: RowId) -> dict:
        teacher(request)
        name = str((await _json(request)).get("name") or "").strip()[:60]
        if not name:
            raise HTTPException(400, "name must not be empty")
        if not await run_in_threadpool(ml.store.rename_participant, participant_id, name):
            raise HTTPException(404, f"no participant {participant_id}")
        ml.auth.renamed(participant_id, name)
        for live in ml.live.values():
            if participant_id in live.participants:
                live.participants[participant_id].info.name = name
        return {"id": participant_id, "name": name}

    # after class and during it: the lesson report, acknowledging a flag
    @app.get("/api/sessions/{session_id}/report")
    async def report(request: Request, session_id: RowId, format: str = "json") -> Response:
        teacher(request)
        if format not in ("csv", "json"):
            raise HTTPException(400, "format must be csv or json")
        session = await run_in_threadpool(session_or_404, session_id)
        await run_in_threadpool(ml.recorder.flush)
        data = await run_in_threadpool(lesson_report, ml.store, session)
        if format == "json":
            return JSONResponse(data)
        return Response(report_csv(data), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{export_name(session, "report.csv")}"'})

    @app.post("/api/sessions/{session_id}/acknowledge")
    async def acknowledge(request: Request, session_id: RowId) -> dict:
        teacher(request)
        body = await _json(request)
        try:
            participant, start = int(body.get("participant")), int(body.get("start"))
        except (TypeError, ValueError):
            raise HTTPException(400, "participant and start must be numbers") from None
        live = ml.live_session(await run_in_threadpool(session_or_404, session_id))
        if live is None:
            raise HTTPException(409, "the session has ended")
        if not live.acknowledge(participant, start):
            raise HTTPException(404, f"no flag of participant {participant} starting at second {start}")
        return {"participant": participant, "start": start, "acknowledged": True}

    # students
    @app.post("/api/join")
    async def join(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if ml.auth.too_many_failures(client):
            raise HTTPException(429, "too many wrong codes; wait a minute")
        body = await _json(request)
        code = re.sub(r"[^0-9A-Za-z]", "", str(body.get("code") or "")).upper()
        name = re.sub(r"\s+", " ", str(body.get("name") or "")).strip()[:40]
        if not name:
            raise HTTPException(400, "enter your name")
        session = await run_in_threadpool(ml.store.session_by_code, code) if code else None
        # only an open class session takes students (a video upload's session has a code too)
        live = await run_in_threadpool(ml.live_session, session) if session is not None else None
        if live is None:
            ml.auth.failed(client)
            raise HTTPException(404, "no open session with this code")
        token = secrets.token_urlsafe(24)
        participant = await run_in_threadpool(ml.store.add_participant, session.id, name, "student", token, ml.clock())
        live.add(participant)
        response = JSONResponse({"participant": participant.to_dict(), "token": token,
                                 "session": {"id": session.id, "title": session.title}})
        response.set_cookie(STUDENT_COOKIE, token, max_age=12 * 3600, httponly=True, samesite="strict")
        return response

    @app.get("/api/me")
    async def me(request: Request) -> dict:
        student = ml.auth.student(request)
        if student is None:
            raise HTTPException(401, "join a session first")
        session = await run_in_threadpool(ml.store.get_session, student.session_id)
        return {"participant": student.to_dict(), "privacy": PRIVACY,
                "session": {"id": session.id, "title": session.title, "open": session.open} if session else None}

    # WebSockets
    def decode_frame(data: bytes):
        """A live frame from a socket message, within the live-frame size limit."""
        return read_upload_image(data, ml.limits, ml.limits.frame_bytes)

    @app.websocket("/ws/live")
    async def ws_live(ws: WebSocket) -> None:
        """The teacher's own camera: faces back, nothing stored."""
        if not (ml.auth.is_teacher(ws) and ml.auth.same_origin(ws)):
            return await ws.close(CLOSE_UNAUTHORISED)
        await ws.accept()
        stream, start = ml.recognizer.open_stream(), time.monotonic()

        def process(data: bytes, t: float) -> dict:
            frame = stream.push(decode_frame(data), t)
            return {"faces": [f.to_dict() for f in frame.faces], "shape": list(frame.shape)}

        await run_frames(ws, ml, process, lambda: time.monotonic() - start)

    @app.websocket("/ws/student")
    async def ws_student(ws: WebSocket) -> None:
        """A student's camera: their main face becomes their per-second records."""
        student = ml.auth.student(ws)
        if student is None or not ml.auth.same_origin(ws):
            return await ws.close(CLOSE_UNAUTHORISED)
        live = await run_in_threadpool(ml.live_session, student.session_id)
        if live is None:
            return await ws.close(CLOSE_ENDED)
        await ws.accept()
        me = live.add(student)
        stream = ml.recognizer.open_stream()

        def process(data: bytes, t: float) -> dict:
            frame = stream.push(decode_frame(data), t)
            ml.record(live, me.observe(_main_face(frame.faces), t))
            return {"faces": [f.to_dict() for f in frame.faces], "shape": list(frame.shape)}

        def connect() -> None:
            me.connections += 1

        await _attend(ws, ml, live, connect, lambda: _disconnected([me]), process)

    async def accept_teacher(ws: WebSocket, session_id: int) -> LiveSession | None:
        """Accept a teacher's socket on a live session; close it (and return None) otherwise."""
        if not (ml.auth.is_teacher(ws) and ml.auth.same_origin(ws)):
            await ws.close(CLOSE_UNAUTHORISED)
            return None
        live = await run_in_threadpool(ml.live_session, session_id)
        if live is None:
            await ws.close(CLOSE_NOT_FOUND)
            return None
        await ws.accept()
        return live

    @app.websocket("/ws/sessions/{session_id}/gallery")
    async def ws_gallery(ws: WebSocket, session_id: RowId) -> None:
        """The teacher's screen capture of the meeting's gallery: a participant per tile."""
        live = await accept_teacher(ws, session_id)
        if live is None:
            return
        if live.gallery is None:
            def new_tile(n: int, maybe: int | None):  # called inside gallery.assign, so with gallery.tiles_lock held
                name = f"Tile {n}" if maybe is None else f"Tile {n} (unsure: {live.participants[maybe].info.name}?)"
                tile = live.add(ml.store.add_participant(session_id, name, "tile", joined_at=ml.clock()))
                tile.connections += live.gallery.sockets  # connected while the share(s) last
                return tile
            live.gallery = GalleryTiles(ml.recognizer, new_tile)
        gallery = live.gallery

        def process(data: bytes, t: float) -> dict:
            image = decode_frame(data)
            with gallery.lock:  # one frame at a time through the shared stream and tiles
                frame = gallery.stream.push(image, t)
                assigned = gallery.assign(frame.faces, image)
            faces = []
            for pid, face in assigned.items():
                ml.record(live, live.participants[pid].observe(face, t))
                if face is not None:
                    faces.append({**face.to_dict(), "participant": pid})
            return {"faces": faces, "shape": list(frame.shape)}

        def connect() -> None:
            with gallery.tiles_lock:
                gallery.sockets += 1
                for pid in gallery.tiles:
                    live.participants[pid].connections += 1

        def disconnect() -> list:
            with gallery.tiles_lock:
                gallery.sockets -= 1
                return _disconnected([live.participants[pid] for pid in gallery.tiles])

        await _attend(ws, ml, live, connect, disconnect, process)

    @app.websocket("/ws/sessions/{session_id}/dashboard")
    async def ws_dashboard(ws: WebSocket, session_id: RowId) -> None:
        """A snapshot of the live session every second until it ends."""
        live = await accept_teacher(ws, session_id)
        if live is None:
            return
        ml.sockets.setdefault(session_id, set()).add(ws)

        async def drain() -> None:  # notice when the page goes away
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

        reader = asyncio.create_task(drain())
        try:
            while not reader.done() and not live.ended:
                await ws.send_json(await run_in_threadpool(live.snapshot))
                await asyncio.wait([reader], timeout=1.0)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            ml.sockets.get(session_id, set()).discard(ws)

    return app


def _disconnected(people: list) -> list:
    """Count one connection less for each of ``people``; those left with none."""
    gone = []
    for p in people:
        p.connections = max(0, p.connections - 1)
        if p.connections == 0:
            gone.append(p)
    return gone


async def _attend(ws: WebSocket, ml: MoodLens, live: LiveSession, connect: Callable[[], None],
                  disconnect: Callable[[], list], process: Callable[[bytes, float], dict]) -> None:
    """Run a session connection: ``connect()`` counts its participants (a gallery's grow while it
    runs) as connected, ``disconnect()`` counts them off again and returns those left with no
    connection, whose open second is then stored. Both run on the event loop without awaiting,
    so a cancelled connection still counts itself off."""
    ml.sockets.setdefault(live.info.id, set()).add(ws)
    connect()
    try:
        await run_frames(ws, ml, process, live.now)
    finally:
        ml.sockets.get(live.info.id, set()).discard(ws)
        for p in disconnect():
            ml.record(live, p.flush())


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "expected a JSON body") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object")
    return body


class BodyLimit:
    """Refuses request bodies over the route's limit with 413, before or while reading them
    (uploads: the upload limits plus room for the form; anything else: 64 KB), and uploads from
    anyone but the teacher with 401 before reading them at all."""

    UPLOADS = ("/api/analyze", "/api/videos")

    def __init__(self, app, limits: Limits, auth: Auth):
        self.app, self.limits, self.auth = app, limits, auth

    def limit(self, path: str) -> int:
        if path == "/api/analyze":
            return self.limits.image_bytes + 2**16
        if path == "/api/videos":
            return self.limits.video_bytes + 2**16
        return 2**16

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] in self.UPLOADS and not self.auth.is_teacher(Request(scope)):
            return await JSONResponse({"error": "log in as the teacher first"}, 401)(scope, receive, send)
        limit = self.limit(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await JSONResponse({"error": f"request body larger than {limit // 2**10} KB"}, 413)(
                scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body larger than {limit // 2**10} KB")
            return message

        await self.app(scope, limited, send)


def serve(host: str = "127.0.0.1", port: int = 8000, db: str | None = None, *,
          ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> None:
    """Run the web app with uvicorn until interrupted.

    Args:
        host: address to listen on (the default only accepts this computer; ``0.0.0.0`` lets
            students on the network join).
        port: TCP port.
        db: None for ``./moodlens.db`` (SQLite), a file path, or a ``postgresql://`` URL.
        ssl_certfile, ssl_keyfile: serve HTTPS (default: ``MOODLENS_SSL_CERTFILE`` and
            ``MOODLENS_SSL_KEYFILE``). Browsers give pages a camera only over HTTPS or on
            localhost, so students on other computers need it (or a reverse proxy that adds it).
    """
    import uvicorn

    ssl_certfile = ssl_certfile or os.environ.get("MOODLENS_SSL_CERTFILE")
    ssl_keyfile = ssl_keyfile or os.environ.get("MOODLENS_SSL_KEYFILE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(db)
    scheme = "https" if ssl_certfile else "http"
    print(f"MoodLens on {scheme}://{host}:{port}/  (teachers log in with the token; students join at "
          f"{scheme}://{host}:{port}/join)", flush=True)
    if not app.state.token_generated and not os.environ.get("MOODLENS_TOKEN"):
        print("teacher token: the one printed at the first start; lost it? start with MOODLENS_TOKEN=<new token>",
              flush=True)
    if scheme == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        print("note: browsers allow cameras only on https:// or localhost pages; give students an https:// "
              "address (MOODLENS_SSL_CERTFILE/KEYFILE, or a reverse proxy)", flush=True)
    uvicorn.run(app, host=host, port=port, ws_max_size=Limits().frame_bytes + 2**10, log_level="warning",
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
