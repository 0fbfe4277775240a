"""The pages and the app's small routes: who sees which page, the teacher's login and logout,
the health check, and ``/api/meta`` (classes, colours, the privacy statement, upload limits).

- :data:`pages`: the page table, :data:`PAGES_SHOWN`; a teacher page sends anyone else to the
  login page, the student page sends anyone who has not joined to the join page.
- :data:`router`: ``/healthz``, ``/login`` (the form's POST), ``/logout`` and ``/api/meta``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from moodlens.annotate import hex_colors
from moodlens.attention import Rules
from moodlens.focus import FocusRules
from moodlens.web import privacy
from moodlens.web.auth import LOGIN_COOKIE, LOGIN_S, STUDENT_COOKIE
from moodlens.web.deps import State, teacher_or_student
from moodlens.web.security import page_response

log = logging.getLogger("moodlens.web")

PAGES = Path(__file__).resolve().parent / "pages"
# path, page file, who may see it (teacher, student or anyone)
PAGES_SHOWN = [("/", "index.html", "teacher"), ("/live", "live.html", "teacher"),
               ("/upload", "upload.html", "teacher"), ("/sessions", "sessions.html", "teacher"),
               ("/sessions/{session_id}", "session.html", "teacher"),
               ("/sessions/{session_id}/report", "report.html", "teacher"),
               ("/login", "login.html", "anyone"), ("/join", "join.html", "anyone"),
               ("/student", "student.html", "student")]


def page(name: str, who: str = "teacher") -> Callable[..., Awaitable[Response]]:
    """The route that shows page ``name`` to ``who`` and redirects anyone else."""
    async def show(request: Request, ml: State) -> Response:
        if who == "teacher" and not ml.auth.is_teacher(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if who == "student" and ml.auth.student(request) is None:
            return RedirectResponse("/join", status_code=303)
        return page_response(PAGES / name, request.headers.get("host", ""))
    return show


def page_routes() -> APIRouter:
    routes = APIRouter()
    for path, name, who in PAGES_SHOWN:
        routes.add_api_route(path, page(name, who), methods=["GET"], include_in_schema=False)
    return routes


pages = page_routes()

router = APIRouter()


@router.get("/healthz")
async def healthz(ml: State) -> Response:
    """Open to anyone: whether the database answers, and how many seconds wait for it."""
    try:
        await run_in_threadpool(ml.store.ping)
        ok = True
    except Exception as exc:  # the details (hosts, ports) go to the log, not to anyone who asks
        log.warning("health check: the database does not answer: %s", str(exc).strip().splitlines()[:1])
        ok = False
    return JSONResponse({"ok": ok, "database": "ok" if ok else "unavailable", "storage": ml.storage()},
                        200 if ok else 503)


@router.post("/login", include_in_schema=False)
async def login(request: Request, ml: State, token: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/") -> Response:
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


@router.get("/logout", include_in_schema=False)
async def logout(request: Request, ml: State) -> Response:
    await run_in_threadpool(ml.auth.logout, request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(LOGIN_COOKIE)
    response.delete_cookie(STUDENT_COOKIE)
    return response


@router.get("/api/meta", dependencies=[Depends(teacher_or_student)])
async def meta(ml: State) -> dict:
    limits = ml.limits
    rules = Rules()
    return {"classes": list(ml.recognizer.classes), "colors": hex_colors(), "privacy": privacy.STATEMENT,
            "limits": {"image_bytes": limits.image_bytes, "video_bytes": limits.video_bytes,
                       "frame_bytes": limits.frame_bytes},
            # the thresholds the pages explain the attention states and flags by
            "attention": {**asdict(FocusRules()), "looking_away_s": rules.looking_away_s,
                          "not_in_view_s": rules.not_in_view_s}}
