"""What keeps other sites, guessers and malformed requests out of the web app: security
headers, a same-origin rule for every state-changing request, JSON errors for everything
(unknown routes, an unavailable database, a bug), and throttles with bounded memory.

- Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin`` (with ``no-referrer`` a browser sends ``Origin: null`` on form
  posts, which the origin check must refuse) and a Content-Security-Policy (pages get a
  per-response nonce for their inline scripts, see :func:`page_response`); over HTTPS also HSTS.
- POST, PUT, PATCH and DELETE are refused (403) when the browser says they come from another
  origin (``Origin``, or ``Sec-Fetch-Site``): SameSite cookies are still sent by a page on
  another port of the same host, which is "same-site". Their bodies must be JSON (415
  otherwise), except the upload and login forms, which the origin check covers.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from moodlens.journal import UNAVAILABLE

# A row id in a URL: bounded to what the database's 64-bit integers hold, so a huge number is
# a 422, never an overflow inside the database driver.
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]

log = logging.getLogger("moodlens.web")

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# inline <script> blocks of the pages run with the response's nonce; onnxruntime-web needs
# WebAssembly compilation; the pages' style="" attributes need 'unsafe-inline' for styles
CSP = ("default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' {sockets}; worker-src 'self' blob:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# a script served from /static may run as a worker, which lives under its own response's policy
STATIC_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; worker-src 'self' blob:; "
              "object-src 'none'; frame-ancestors 'none'")
HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}


def same_origin(headers: Headers, scheme: str | None = None) -> bool:
    """Whether a request may come from a page of this server: no ``Origin`` (not a browser's
    cross-origin request) or one whose host and port are this server's."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    host = headers.get("host", "")
    return origin.lower() in {f"http://{host}".lower(), f"https://{host}".lower()}


def page_response(path: Path, host: str) -> Response:
    """A page with a fresh nonce on each of its ``<script>`` tags and the CSP that allows just those."""
    nonce = secrets.token_urlsafe(16)
    html = path.read_text(encoding="utf-8").replace("<script", f'<script nonce="{nonce}"')
    csp = CSP.format(nonce=nonce, sockets=f"ws://{host} wss://{host}" if host else "")
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-store",
                                                          "Content-Security-Policy": csp})


class Guard:
    """ASGI middleware: the headers above on every response, the origin and JSON rules on
    state-changing requests.

    Args:
        form_paths: routes that take a form or an upload instead of JSON.
    """

    def __init__(self, app, form_paths: tuple[str, ...] = ()):
        self.app, self.form_paths = app, form_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if scope["method"] in WRITES:
            refused = None
            if not same_origin(headers):
                log.warning("refused a %s %s from another origin (%s)", scope["method"], scope["path"],
                            headers.get("origin") or headers.get("sec-fetch-site"))
                refused = JSONResponse({"error": "requests from other sites are not allowed"}, 403)
            elif scope["path"] not in self.form_paths and not _json_or_empty(headers):
                refused = JSONResponse({"error": "send a JSON body (Content-Type: application/json)"}, 415)
            if refused is not None:
                return await self._secured(refused, scope["scheme"])(scope, receive, send)

        async def send_secured(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message["headers"]) + _extra(message["headers"], scope["scheme"],
                                                                       scope["path"])
            await send(message)

        await self.app(scope, receive, send_secured)

    @staticmethod
    def _secured(response: Response, scheme: str) -> Response:
        response.raw_headers.extend(_extra(response.raw_headers, scheme, ""))
        return response


def _extra(raw: list[tuple[bytes, bytes]], scheme: str, path: str) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in raw}
    extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
    if b"content-security-policy" not in present:
        extra.append((b"content-security-policy", (STATIC_CSP if path.startswith("/static/") else API_CSP).encode()))
    if scheme == "https":
        extra.append((b"strict-transport-security", b"max-age=31536000"))
    return extra


def _json_or_empty(headers: Headers) -> bool:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind:
        return kind == "application/json"
    return headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers


def install_error_handlers(app: FastAPI) -> None:
    """JSON ``{"error": ...}`` for every failure: unknown routes and methods, invalid requests,
    an unavailable database (503), and bugs (500, logged). A teacher page asked for without
    logging in redirects to the login page instead."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": problems or "invalid request"}, 422)

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable)
    app.add_exception_handler(Exception, _bug)


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("the database is unavailable: %s", str(exc).splitlines()[0])
    return JSONResponse({"error": "the database is unavailable; try again in a moment"}, 503,
                        headers={"Retry-After": "5"})


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)


class Throttle:
    """At most ``per_minute`` events per key in any minute, remembered for at most ``keys`` keys.

    A key is forgotten once its last event is a minute old, and the key idle longest is forgotten
    first when there are too many, so memory stays bounded whatever the traffic. (The ``limits``
    library's in-memory storage was tried and keeps an empty entry per key ever seen.)
    """

    def __init__(self, per_minute: int, keys: int = 10_000, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute, self.keys, self.window_s, self.clock = per_minute, keys, window_s, clock
        self._events: OrderedDict[tuple, deque] = OrderedDict()  # least recently hit first
        self._lock = threading.Lock()

    def blocked(self, *key: str) -> bool:
        return self.count(*key) >= self.per_minute

    def count(self, *key: str) -> int:
        with self._lock:
            events = self._events.get(key)
            if events is None:
                return 0
            self._expire(events, self.clock())
            return len(events)

    def hit(self, *key: str) -> None:
        with self._lock:
            now = self.clock()
            events = self._events.pop(key, None) or deque()
            self._expire(events, now)
            events.append(now)
            self._events[key] = events
            while self._events:
                oldest = next(iter(self._events.values()))
                if len(self._events) <= self.keys and oldest and now - oldest[-1] <= self.window_s:
                    break
                self._events.popitem(last=False)

    def __len__(self) -> int:
        return len(self._events)

    def _expire(self, events: deque, now: float) -> None:
        while events and now - events[0] > self.window_s:
            events.popleft()


class Recent:
    """A bounded set that forgets its oldest entries first."""

    def __init__(self, size: int = 10_000):
        self.size, self._items = size, OrderedDict()

    def add(self, item) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, item) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


async def json_object(request: Request) -> dict:
    """The request's JSON body, which must be an object; else 400."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise HTTPException(400, "expected a JSON body") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object")
    return body
