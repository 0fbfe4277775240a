"""The MoodLens web app: pages, a JSON API and WebSockets, on FastAPI and uvicorn.

    moodlens.web.server.serve(port=8000)                   # SQLite in the per-user data folder
    moodlens.web.server.serve(db="postgresql://u:p@host/moodlens")

``create_app`` builds the app for tests and embedding: it opens the state
(:class:`~moodlens.web.state.MoodLens`) and assembles the middleware and the routers, which live
in their own modules (:mod:`~moodlens.web.site`, :mod:`~moodlens.web.browser`,
:mod:`~moodlens.web.privacy`, :mod:`~moodlens.web.upload_routes`, :mod:`~moodlens.web.sessions`,
:mod:`~moodlens.web.sockets`) and reach the state through :mod:`~moodlens.web.deps`. Recognition
runs on worker threads, never on the event loop; see :mod:`moodlens.web.live` for how live
frames are scheduled.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from moodlens.classify import EmotionModel
from moodlens.detect import create_detector
from moodlens.errors import MoodLensError
from moodlens.recognizer import Recognizer
from moodlens.store import Store, database_url, journal_path, shown_url
from moodlens.web import browser, privacy, sessions, site, sockets, upload_routes
from moodlens.web.auth import Auth, teacher_token
from moodlens.web.security import Guard, install_error_handlers
from moodlens.web.state import MoodLens
from moodlens.web.uploads import Limits, UploadError, upload_error

log = logging.getLogger("moodlens.web")

HERE = Path(__file__).resolve().parent


def default_recognizer() -> Recognizer:
    """The shipped models with one onnxruntime thread each: the web app runs several frames at
    once on its worker threads instead of one frame on all cores."""
    return Recognizer(model=EmotionModel(threads=1), detector=create_detector(threads=1))


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
    ml, generated = open_state(db_url, recognizer, token, limits or Limits(), workers, clock)
    app = FastAPI(title="MoodLens", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.moodlens = ml
    app.state.token_generated = generated
    app.add_middleware(BodyLimit, limits=ml.limits, auth=ml.auth)
    app.add_middleware(Guard, form_paths=("/login", *BodyLimit.UPLOADS))
    app.add_middleware(browser.CrossOriginIsolation)
    if trusted_proxies:  # outermost: everything after it sees the client the proxy names
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_error_handlers(app)
    app.add_exception_handler(UploadError, upload_error)
    # in this order, which is also the order of the paths in app.openapi()
    for router in (site.pages, browser.router, privacy.router, site.router, upload_routes.router,
                   sessions.router, sessions.students, sockets.router):
        app.include_router(router)
    return app


def open_state(db_url: str | None, recognizer: Recognizer | None, token: str | None, limits: Limits,
               workers: int | None, clock: Callable[[], float]) -> tuple[MoodLens, bool]:
    """The app's state on its database, and whether the teacher's token was generated now (it is
    printed here, once)."""
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
    ml = MoodLens(store, recognizer or default_recognizer(), token_hash, limits,
                  workers or min(2, os.cpu_count() or 1), clock, journal_path(url), uploads)
    return ml, generated is not None


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Retention applied before the first request and every hour; at the end, every connection
    closed and every open second stored."""
    ml: MoodLens = app.state.moodlens
    await privacy.apply_retention(ml)
    retention = asyncio.create_task(hourly_retention(ml))
    yield
    retention.cancel()
    await ml.shutdown()


async def hourly_retention(ml: MoodLens) -> None:
    while True:
        await asyncio.sleep(3600)
        await privacy.apply_retention(ml)


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

    def too_large(self, path: str) -> str:
        """What a 413 says: an upload's limit as the upload page and the upload routes name it,
        without the form's room."""
        if path == "/api/analyze":
            return f"image larger than {self.limits.image_bytes // 2**20} MB"
        if path == "/api/videos":
            return f"video larger than {self.limits.video_bytes // 2**20} MB"
        return f"request body larger than {self.limit(path) // 2**10} KB"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] in self.UPLOADS and not self.auth.is_teacher(Request(scope)):
            return await JSONResponse({"error": "log in as the teacher first"}, 401)(scope, receive, send)
        limit, too_large = self.limit(scope["path"]), self.too_large(scope["path"])
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
    ssl_certfile, ssl_keyfile = tls_files(ssl_certfile, ssl_keyfile, self_signed)
    listener = _listen(host, port)  # before loading anything: a port in use is said at once
    try:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        app = create_app(db, limits=limits, trusted_proxies=trusted_proxies)
        if ssl_certfile:
            check_certificate(ssl_certfile, ssl_keyfile)
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


def tls_files(certfile: str | None, keyfile: str | None, self_signed: bool) -> tuple[str | None, str | None]:
    """``(certificate, key)`` to serve HTTPS with (None, None: plain HTTP): the given ones, else
    ``MOODLENS_SSL_CERTFILE`` and ``MOODLENS_SSL_KEYFILE``, else with ``self_signed`` this
    computer's self-signed certificate (made once in the data folder).

    Raises:
        MoodLensError: a file that does not exist, or a key without its certificate.
    """
    certfile = certfile or os.environ.get("MOODLENS_SSL_CERTFILE")
    keyfile = keyfile or os.environ.get("MOODLENS_SSL_KEYFILE")
    if self_signed and not certfile:
        from moodlens.paths import data_dir
        from moodlens.web.tls import self_signed_certificate

        certfile, keyfile = map(str, self_signed_certificate(data_dir() / "tls", lan_address()))
    for kind, path in (("certificate", certfile), ("key", keyfile)):
        if path and not Path(path).is_file():
            raise MoodLensError(f"{path}: no such {kind} file")
    if keyfile and not certfile:
        raise MoodLensError("a key file needs its certificate (--ssl-certfile)")
    return certfile, keyfile


def check_certificate(certfile: str, keyfile: str | None) -> None:
    """Raises MoodLensError unless the certificate and key load (a pair that does not match, a
    file that is not PEM)."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise MoodLensError(f"{certfile}: cannot use this certificate and key ({exc})") from None


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
