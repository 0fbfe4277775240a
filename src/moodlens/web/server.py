"""The MoodLens web app: pages, a JSON API and WebSockets, on FastAPI and uvicorn.

    moodlens.web.server.serve(port=8000)                   # SQLite in the per-user data folder
    moodlens.web.server.serve(db="postgresql://u:p@host/moodlens")

``create_app`` builds the app for tests and embedding. Recognition runs on worker threads, never
on the event loop; see :mod:`moodlens.web.live` for how live frames are scheduled.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from moodlens.annotate import hex_colors
from moodlens.classify import EmotionModel
from moodlens.detect import create_detector
from moodlens.errors import MoodLensError
from moodlens.journal import Journal
from moodlens.recognizer import Recognizer
from moodlens.store import Session, Store, database_url, journal_path, shown_url
from moodlens.web import browser, privacy, sessions, sockets
from moodlens.web.auth import LOGIN_COOKIE, LOGIN_S, STUDENT_COOKIE, Auth, teacher_token
from moodlens.web.live import LiveSession, Recorder
from moodlens.web.security import Guard, Recent, Throttle, install_error_handlers, page_response
from moodlens.web.uploads import Limits, UploadError, VideoJobs
from moodlens.web.uploads import router as upload_routes

log = logging.getLogger("moodlens.web")

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"


def default_recognizer() -> Recognizer:
    """The shipped models with one onnxruntime thread each: the web app runs several frames at
    once on its worker threads instead of one frame on all cores."""
    return Recognizer(model=EmotionModel(threads=1), detector=create_detector(threads=1))


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
                # after a restart the live view picks up where it was: the stored seconds, the seen flags
                live.count(self.store.seconds(session.id))
                live.acknowledged = {pid: set(starts) for pid, starts in self.store.acknowledged(session.id).items()}
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
                await sockets.close(ws, sockets.CLOSE_ENDED, "the session has ended")
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

    def storage(self) -> dict:
        """Whether per-second records are reaching the database: ``behind`` of them wait in the
        journal since ``behind_since``."""
        return {"behind": self.journal.behind, "behind_since": self.journal.behind_since}


# --- the app ---------------------------------------------------------------------------------

def create_app(db_url: str | None = None, recognizer: Recognizer | None = None, token: str | None = None, *,
               limits: Limits | None = None, workers: int | None = None,
               clock: Callable[[], float] = time.time, trusted_proxies: str | None = None) -> FastAPI:
    """The web app on the database at ``db_url`` (a SQLAlchemy URL or what
    :func:`moodlens.store.database_url` accepts; None: ``moodlens.db`` in the per-user data folder).

    Args:
        recognizer: shared by all connections (default: :func:`default_recognizer`).
        token: the teacher's token (default: ``MOODLENS_TOKEN``, the one whose hash is stored, or
            a new one, printed once).
        limits: upload, frame, join and participant limits.
        workers: recognition threads (default: 2, or 1 on a one-core machine).
        clock: wall-clock time in seconds (tests move time on by hand).
        trusted_proxies: addresses of reverse proxies whose ``X-Forwarded-For`` and
            ``X-Forwarded-Proto`` are believed (comma-separated; default ``MOODLENS_TRUSTED_PROXIES``,
            else none: every peer is taken as it connects).

    Raises:
        MoodLensError: an unusable database or a teacher token shorter than 16 characters.
    """
    trusted_proxies = check_proxies(trusted_proxies or os.environ.get("MOODLENS_TRUSTED_PROXIES"))
    url = database_url(db_url)
    store = Store(url)
    try:
        token_hash, generated = teacher_token(store, token)
    except MoodLensError:
        store.close()
        raise
    if generated:
        print(f"MoodLens teacher token (generated; shown only now, the database keeps its hash): {generated}",
              flush=True)
    from moodlens.paths import data_dir

    uploads = data_dir() / "uploads" / hashlib.sha256(url.encode()).hexdigest()[:16]
    _clean_interrupted(store, uploads)
    ml = MoodLens(store, recognizer or default_recognizer(), token_hash, limits or Limits(),
                  workers or min(2, os.cpu_count() or 1), clock, journal_path(url), uploads)

    async def apply_retention() -> None:
        """Delete the sessions past the retention setting."""
        for session_id in await run_in_threadpool(privacy.purge, ml.store, ml.clock()):
            ml.auth.forget(session_id)

    async def hourly_retention() -> None:
        while True:
            await asyncio.sleep(3600)
            await apply_retention()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await apply_retention()  # before the first request
        retention = asyncio.create_task(hourly_retention())
        yield
        retention.cancel()
        for session_id in list(ml.sockets):
            for ws in list(ml.sockets.get(session_id, ())):
                await sockets.close(ws, 1001, "server stopping")
        await run_in_threadpool(ml.close)

    app = FastAPI(title="MoodLens", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.moodlens = ml
    app.state.token_generated = generated is not None
    app.add_middleware(BodyLimit, limits=ml.limits, auth=ml.auth)
    app.add_middleware(Guard, form_paths=("/login", *BodyLimit.UPLOADS))
    app.add_middleware(browser.CrossOriginIsolation)
    if trusted_proxies:  # outermost: everything after it sees the client the proxy names
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_error_handlers(app)

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError):
        return JSONResponse({"error": exc.message}, exc.status)

    def teacher(request: Request) -> None:
        # a logged-in teacher goes on even when a guesser shares their address; tokens are not checked
        throttled = ml.auth.throttled(request)
        if not ml.auth.is_teacher(request):
            if throttled:
                raise HTTPException(429, "too many wrong teacher tokens from this address; wait a minute")
            raise HTTPException(401, "log in as the teacher first")

    # pages
    def page(name: str, who: str = "teacher") -> Callable[[Request], Awaitable[Response]]:
        async def show(request: Request) -> Response:
            if who == "teacher" and not ml.auth.is_teacher(request):
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            if who == "student" and ml.auth.student(request) is None:
                return RedirectResponse("/join", status_code=303)
            return page_response(PAGES / name, request.headers.get("host", ""))
        return show

    for path, name, who in [("/", "index.html", "teacher"), ("/live", "live.html", "teacher"),
                            ("/upload", "upload.html", "teacher"), ("/sessions", "sessions.html", "teacher"),
                            ("/sessions/{session_id}", "session.html", "teacher"),
                            ("/sessions/{session_id}/report", "report.html", "teacher"),
                            ("/login", "login.html", "anyone"), ("/join", "join.html", "anyone"),
                            ("/student", "student.html", "student")]:
        app.add_api_route(path, page(name, who), methods=["GET"], include_in_schema=False)

    app.include_router(browser.router(ml.recognizer, lambda r: ml.auth.is_teacher(r) or ml.auth.student(r) is not None))
    app.include_router(privacy.router(ml.store, teacher, ml.clock, ml.auth.forget))

    @app.get("/healthz")
    async def healthz() -> Response:
        """Open to anyone: whether the database answers, and how many seconds wait for it."""
        try:
            await run_in_threadpool(ml.store.ping)
            ok = True
        except Exception as exc:  # the details (hosts, ports) go to the log, not to anyone who asks
            log.warning("health check: the database does not answer: %s", str(exc).strip().splitlines()[:1])
            ok = False
        return JSONResponse({"ok": ok, "database": "ok" if ok else "unavailable", "storage": ml.storage()},
                            200 if ok else 503)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
        target = next if re.fullmatch(r"/(?!/)[\w\-/]*", next) else "/"
        again = f"&next={target}" if target != "/" else ""  # a second try still goes where the teacher was going
        if ml.auth.throttled(request):
            return RedirectResponse(f"/login?error=wait{again}", status_code=303)
        if not ml.auth.check_token(request, token):
            return RedirectResponse(f"/login?error=1{again}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LOGIN_COOKIE, await run_in_threadpool(ml.auth.login), max_age=LOGIN_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await run_in_threadpool(ml.auth.logout, request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(LOGIN_COOKIE)
        response.delete_cookie(STUDENT_COOKIE)
        return response

    @app.get("/api/meta")
    async def meta(request: Request) -> dict:
        if not ml.auth.is_teacher(request) and ml.auth.student(request) is None:
            raise HTTPException(401, "log in or join a session first")
        limits = ml.limits
        return {"classes": list(ml.recognizer.classes), "colors": hex_colors(), "privacy": privacy.STATEMENT,
                "limits": {"image_bytes": limits.image_bytes, "video_bytes": limits.video_bytes,
                           "frame_bytes": limits.frame_bytes}}

    app.include_router(upload_routes(ml, teacher))
    app.include_router(sessions.router(ml, teacher))
    app.include_router(sockets.router(ml))
    return app


def check_proxies(proxies: str | None) -> str | None:
    """``proxies`` if each comma-separated entry is an IP address, a network or ``*``. uvicorn
    would take anything else as a literal that never matches a peer, so a typo would silently
    trust no proxy and every student would seem to come from the proxy's address."""
    for entry in (proxies or "").split(","):
        entry = entry.strip()
        try:
            if entry and entry != "*":
                ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise MoodLensError(f"trusted proxies: {entry!r} is not an IP address or network "
                                "(e.g. 10.0.0.5, 10.0.0.0/8, or * for any)") from None
    return proxies


def _clean_interrupted(store: Store, uploads: Path) -> None:
    """What a server that stopped without closing (a crash, a power cut) left: uploaded videos
    never analysed, and their sessions still open. Class sessions stay open: they go on."""
    if uploads.is_dir():
        for path in uploads.iterdir():
            path.unlink(missing_ok=True)
            log.warning("deleted %s, an upload a stopped server left unanalysed", path.name)
    for session_id in store.end_interrupted("video"):
        log.warning("ended video session %d, whose analysis a stopped server cut short", session_id)


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
        # an upload's limit as the upload page and the upload routes name it, without the form's room
        too_large = {"/api/analyze": f"image larger than {self.limits.image_bytes // 2**20} MB",
                     "/api/videos": f"video larger than {self.limits.video_bytes // 2**20} MB"}.get(
            scope["path"], f"request body larger than {limit // 2**10} KB")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await JSONResponse({"error": too_large}, 413)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


def serve(host: str = "127.0.0.1", port: int = 8000, db: str | None = None, *,
          ssl_certfile: str | None = None, ssl_keyfile: str | None = None, self_signed: bool = False,
          trusted_proxies: str | None = None, limits: Limits | None = None) -> None:
    """Run the web app with uvicorn until interrupted.

    Args:
        host: address to listen on (the default only accepts this computer; ``0.0.0.0`` lets
            students on the network join).
        port: TCP port (0: any free one).
        db: None for ``moodlens.db`` in the per-user data folder (SQLite), a file path, or a
            ``postgresql://`` URL.
        ssl_certfile, ssl_keyfile: serve HTTPS (default: ``MOODLENS_SSL_CERTFILE`` and
            ``MOODLENS_SSL_KEYFILE``). Browsers give pages a camera only over HTTPS or on
            localhost, so students on other computers need it (or a reverse proxy that adds it).
        self_signed: serve HTTPS with a self-signed certificate for this computer's names and
            addresses, made once in the data folder (browsers warn once per device).
        trusted_proxies: see :func:`create_app`.
        limits: see :func:`create_app`.

    Raises:
        MoodLensError: a port out of range or in use, a missing certificate or key, an unusable
            database, a teacher token shorter than 16 characters.
    """
    import uvicorn

    if not 0 <= port <= 65535:
        raise MoodLensError(f"port {port} is out of range (1-65535, or 0 for any free port)")
    ssl_certfile = ssl_certfile or os.environ.get("MOODLENS_SSL_CERTFILE")
    ssl_keyfile = ssl_keyfile or os.environ.get("MOODLENS_SSL_KEYFILE")
    if self_signed and not ssl_certfile:
        from moodlens.paths import data_dir
        from moodlens.web.tls import self_signed_certificate

        ssl_certfile, ssl_keyfile = map(str, self_signed_certificate(data_dir() / "tls", lan_address()))
    for kind, path in (("certificate", ssl_certfile), ("key", ssl_keyfile)):
        if path and not Path(path).is_file():
            raise MoodLensError(f"{path}: no such {kind} file")
    if ssl_keyfile and not ssl_certfile:
        raise MoodLensError("a key file needs its certificate (--ssl-certfile)")
    listener = _listen(host, port)  # before loading anything: a port in use is said at once
    try:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        app = create_app(db, limits=limits, trusted_proxies=trusted_proxies)
        if ssl_certfile:
            try:
                import ssl

                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(ssl_certfile, ssl_keyfile)
            except (ssl.SSLError, OSError) as exc:
                raise MoodLensError(f"{ssl_certfile}: cannot use this certificate and key ({exc})") from None
        print(f"database: {shown_url(app.state.moodlens.store.url)}", flush=True)
        for line in startup_message(host, listener.getsockname()[1], https=bool(ssl_certfile),
                                    token_known=not app.state.token_generated):
            print(line, flush=True)
        # No per-message compression: JPEG frames do not shrink and score messages are a few hundred
        # bytes, while deflating each cost ~90 us of server CPU (profiled under scripts/load_test.py).
        config = uvicorn.Config(app, ws_max_size=(limits or Limits()).frame_bytes + 2**10, log_level="warning",
                                ws_per_message_deflate=False, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                                proxy_headers=False)
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    except OSError as exc:
        if exc.errno == 98 or "in use" in str(exc).lower():
            raise MoodLensError(f"port {port} on {host} is in use (another MoodLens?); pick another with --port") from None
        raise MoodLensError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def lan_address() -> str | None:
    """This computer's address on its local network (the one its default route leaves from), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # a documentation address: nothing is sent, only a route is chosen
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def startup_message(host: str, port: int, https: bool, token_known: bool) -> list[str]:
    """What ``moodlens serve`` prints: where teachers and students go, and how to get HTTPS."""
    scheme = "https" if https else "http"
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"MoodLens on {scheme}://{local}:{port}/  (teachers log in with the token)"]
    everywhere = host in ("0.0.0.0", "::")
    lan = lan_address() if everywhere else (None if host in ("127.0.0.1", "localhost", "::1") else host)
    if lan:
        lines.append(f"students on other computers: {scheme}://{lan}:{port}/join")
        if not https:
            lines.append("note: browsers give other computers' pages the camera only over https; start with "
                         "--self-signed (or --ssl-certfile/--ssl-keyfile, or put a reverse proxy with https in front)")
    else:
        lines.append(f"students join at {scheme}://{local}:{port}/join; only this computer can reach it "
                     "(--host 0.0.0.0 --self-signed opens it to the classroom network)")
    if token_known and not os.environ.get("MOODLENS_TOKEN"):
        lines.append("teacher token: the one printed at the first start; lost it? `moodlens token --reset`")
    return lines
