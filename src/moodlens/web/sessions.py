"""The class-session API: the teacher's sessions (list, create, watch, end, delete, export, the
lesson report, acknowledging a flag, renaming a participant) and students joining one.

- :data:`router`: the teacher's ``/api/sessions`` and ``/api/participants`` routes.
- :data:`students`: ``/api/join`` and ``/api/me``.
"""

from __future__ import annotations

import re
import secrets
import time

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from moodlens.store import CLASS_ONLY, PRIVACY_MODES, Session, Store, safe_text
from moodlens.web import privacy
from moodlens.web.auth import LOGIN_S, STUDENT_COOKIE, client_address
from moodlens.web.dashboard import export_name, lesson_report, report_csv, review
from moodlens.web.deps import State, Student, teacher
from moodlens.web.live import LiveSession
from moodlens.web.security import RowId, json_object
from moodlens.web.state import MoodLens

router = APIRouter(dependencies=[Depends(teacher)])
students = APIRouter()


def session_or_404(store: Store, session_id: int) -> Session:
    session = store.get_session(session_id)
    if session is None:
        raise HTTPException(404, f"no session {session_id}")
    return session


def check_format(format: str) -> None:
    if format not in ("csv", "json"):
        raise HTTPException(400, "format must be csv or json")


# sessions
@router.get("/api/sessions")
async def list_sessions(ml: State) -> dict:
    sessions = await run_in_threadpool(ml.store.list_sessions)
    return {"sessions": [{**s, "left_open": s["open"] and s["id"] in ml.left_open} for s in sessions]}


@router.post("/api/sessions", status_code=201)
async def create_session(request: Request, ml: State) -> dict:
    body = await json_object(request)
    title = safe_text(body.get("title") or "", 120) or time.strftime("Class %Y-%m-%d %H:%M")
    mode = body.get("privacy") or PRIVACY_MODES[0]
    if mode not in PRIVACY_MODES:
        raise HTTPException(400, f"privacy must be one of: {', '.join(PRIVACY_MODES)}")
    emotions = body.get("emotions", True)
    if not isinstance(emotions, bool):
        raise HTTPException(400, "emotions must be true (read expressions and attention) or false (attention only)")
    session = await run_in_threadpool(ml.store.create_session, title, ml.recognizer.classes, "class", ml.clock(), mode,
                                      emotions)
    await run_in_threadpool(ml.live_session, session)
    return {"session": session.to_dict()}


@router.get("/api/sessions/{session_id}")
async def get_session(ml: State, session_id: RowId) -> dict:
    session = await run_in_threadpool(session_or_404, ml.store, session_id)
    live = await run_in_threadpool(ml.live_session, session)
    if live is not None:
        return {**privacy.visible(await run_in_threadpool(live.snapshot), session), "storage": ml.storage()}
    return privacy.visible(await run_in_threadpool(review, ml.store, session), session)


@router.post("/api/sessions/{session_id}/end")
async def end_session(ml: State, session_id: RowId) -> dict:
    await run_in_threadpool(session_or_404, ml.store, session_id)
    await ml.end(session_id)
    return {"session": (await run_in_threadpool(ml.store.get_session, session_id)).to_dict()}


@router.delete("/api/sessions/{session_id}")
async def delete_session(ml: State, session_id: RowId) -> dict:
    await run_in_threadpool(session_or_404, ml.store, session_id)
    await ml.end(session_id)
    await run_in_threadpool(ml.store.delete_session, session_id)
    ml.auth.forget(session_id)
    return {"deleted": session_id}


@router.get("/api/sessions/{session_id}/export")
async def export(ml: State, session_id: RowId, format: str = "csv") -> Response:
    check_format(format)
    await run_in_threadpool(ml.recorder.flush)
    session = await run_in_threadpool(session_or_404, ml.store, session_id)
    if session.privacy == CLASS_ONLY:
        data = await run_in_threadpool(privacy.class_export, ml.store, session, format)
    elif format == "json":
        data = await run_in_threadpool(ml.store.export_json, session_id)
    else:
        data = await run_in_threadpool(ml.store.export_csv, session_id)
    if data is None:
        raise HTTPException(404, f"no session {session_id}")
    headers = {"Content-Disposition": f'attachment; filename="{export_name(session, format)}"'}
    if format == "json":
        return JSONResponse(data, headers=headers)
    return Response(data, media_type="text/csv", headers=headers)


@router.patch("/api/participants/{participant_id}")
async def rename(request: Request, ml: State, participant_id: RowId) -> dict:
    name = safe_text((await json_object(request)).get("name") or "", 60)
    if not name:
        raise HTTPException(400, "name must not be empty")
    if not await ml.rename(participant_id, name):
        raise HTTPException(404, f"no participant {participant_id}")
    return {"id": participant_id, "name": name}


# after class and during it: the lesson report, acknowledging a flag
@router.get("/api/sessions/{session_id}/report")
async def report(ml: State, session_id: RowId, format: str = "json") -> Response:
    check_format(format)
    session = await run_in_threadpool(session_or_404, ml.store, session_id)
    await run_in_threadpool(ml.recorder.flush)
    data = privacy.visible_report(await run_in_threadpool(lesson_report, ml.store, session), session)
    if format == "json":
        return JSONResponse(data)
    return Response(report_csv(data), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{export_name(session, "report.csv")}"'})


@router.post("/api/sessions/{session_id}/acknowledge")
async def acknowledge(request: Request, ml: State, session_id: RowId) -> dict:
    body = await json_object(request)
    try:
        participant, start = int(body.get("participant")), int(body.get("start"))
    except (TypeError, ValueError):
        raise HTTPException(400, "participant and start must be numbers") from None
    session = await run_in_threadpool(session_or_404, ml.store, session_id)
    live = await run_in_threadpool(ml.live_session, session)
    if live is None:
        raise HTTPException(409, "the session has ended")
    if not live.acknowledge(participant, start):
        raise HTTPException(404, f"no flag of participant {participant} starting at second {start}")
    await run_in_threadpool(ml.store.acknowledge, session_id, participant, start)
    return {"participant": participant, "start": start, "acknowledged": True}


# students
@students.post("/api/join")
async def join(request: Request, ml: State) -> Response:
    client = client_address(request)
    body = await json_object(request)
    code = re.sub(r"[^0-9A-Za-z]", "", str(body.get("code") or ""))[:16].upper()
    if (client, code) not in ml.joined and ml.join_failures.blocked(client):
        raise HTTPException(429, "too many wrong codes from this address; wait a minute")
    name = safe_text(body.get("name") or "", 40)
    if not name:
        raise HTTPException(400, "enter your name")
    session, live = await open_class(ml, code)
    if live is None:
        ml.join_failures.hit(client)
        raise HTTPException(404, "no open session with this code")
    if len(live.participants) >= ml.limits.participants:
        raise HTTPException(429, f"this session is full ({ml.limits.participants} participants)")
    ml.joined.add((client, code))
    token = secrets.token_urlsafe(24)
    participant = await run_in_threadpool(ml.add_student, live, name, token)
    response = JSONResponse({"participant": participant.to_dict(), "token": token,
                             "session": {"id": session.id, "title": session.title}})
    response.set_cookie(STUDENT_COOKIE, token, max_age=LOGIN_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def open_class(ml: MoodLens, code: str) -> tuple[Session | None, LiveSession | None]:
    """``(session, live session)`` of a join code; the live session is None unless it is an open
    class session (a video upload's session has a code too)."""
    session = await run_in_threadpool(ml.store.session_by_code, code) if code else None
    live = await run_in_threadpool(ml.live_session, session) if session is not None else None
    return session, live


@students.get("/api/me")
async def me(ml: State, student: Student) -> dict:
    session = await run_in_threadpool(ml.store.get_session, student.session_id)
    return {"participant": student.to_dict(), "privacy": privacy.STATEMENT,
            "notice": privacy.ATTENTION_ONLY if session and not session.emotions else None,
            "retention_days": await run_in_threadpool(privacy.retention_days, ml.store),
            "session": {"id": session.id, "title": session.title, "open": session.open,
                        "privacy": session.privacy, "emotions": session.emotions} if session else None}
