"""The class-session API: the teacher's sessions (list, create, watch, end, delete, export, the
lesson report, acknowledging a flag, renaming a participant) and students joining one."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from moodlens.store import CLASS_ONLY, PRIVACY_MODES, Participant, Session, safe_text
from moodlens.web import privacy
from moodlens.web.auth import LOGIN_S, STUDENT_COOKIE, client_address
from moodlens.web.dashboard import export_name, lesson_report, report_csv, review
from moodlens.web.security import RowId, json_object

if TYPE_CHECKING:
    from moodlens.web.server import MoodLens


def router(ml: MoodLens, teacher: Callable[[Request], None]) -> APIRouter:
    """The ``/api/sessions``, ``/api/participants``, ``/api/join`` and ``/api/me`` routes;
    ``teacher(request)`` raises 401 unless the teacher is logged in."""
    routes = APIRouter()
    # the same name twice in one class (two Alices) would make their numbers impossible to tell apart
    naming = threading.Lock()

    def session_or_404(session_id: int) -> Session:
        session = ml.store.get_session(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id}")
        return session

    # sessions
    @routes.get("/api/sessions")
    async def list_sessions(request: Request) -> dict:
        teacher(request)
        sessions = await run_in_threadpool(ml.store.list_sessions)
        return {"sessions": [{**s, "left_open": s["open"] and s["id"] in ml.left_open} for s in sessions]}

    @routes.post("/api/sessions", status_code=201)
    async def create_session(request: Request) -> dict:
        teacher(request)
        body = await json_object(request)
        title = safe_text(body.get("title") or "", 120) or time.strftime("Class %Y-%m-%d %H:%M")
        mode = body.get("privacy") or PRIVACY_MODES[0]
        if mode not in PRIVACY_MODES:
            raise HTTPException(400, f"privacy must be one of: {', '.join(PRIVACY_MODES)}")
        session = await run_in_threadpool(ml.store.create_session, title, ml.recognizer.classes, "class", ml.clock(),
                                          mode)
        await run_in_threadpool(ml.live_session, session)
        return {"session": session.to_dict()}

    @routes.get("/api/sessions/{session_id}")
    async def get_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        session = await run_in_threadpool(session_or_404, session_id)
        live = await run_in_threadpool(ml.live_session, session)
        if live is not None:
            return {**privacy.visible(await run_in_threadpool(live.snapshot), session), "storage": ml.storage()}
        return privacy.visible(await run_in_threadpool(review, ml.store, session), session)

    @routes.post("/api/sessions/{session_id}/end")
    async def end_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        await run_in_threadpool(session_or_404, session_id)
        await ml.end(session_id)
        return {"session": (await run_in_threadpool(ml.store.get_session, session_id)).to_dict()}

    @routes.delete("/api/sessions/{session_id}")
    async def delete_session(request: Request, session_id: RowId) -> dict:
        teacher(request)
        await run_in_threadpool(session_or_404, session_id)
        await ml.end(session_id)
        await run_in_threadpool(ml.store.delete_session, session_id)
        ml.auth.forget(session_id)
        return {"deleted": session_id}

    @routes.get("/api/sessions/{session_id}/export")
    async def export(request: Request, session_id: RowId, format: str = "csv") -> Response:
        teacher(request)
        if format not in ("csv", "json"):
            raise HTTPException(400, "format must be csv or json")
        await run_in_threadpool(ml.recorder.flush)
        session = await run_in_threadpool(session_or_404, session_id)
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

    @routes.patch("/api/participants/{participant_id}")
    async def rename(request: Request, participant_id: RowId) -> dict:
        teacher(request)
        name = safe_text((await json_object(request)).get("name") or "", 60)
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
    @routes.get("/api/sessions/{session_id}/report")
    async def report(request: Request, session_id: RowId, format: str = "json") -> Response:
        teacher(request)
        if format not in ("csv", "json"):
            raise HTTPException(400, "format must be csv or json")
        session = await run_in_threadpool(session_or_404, session_id)
        await run_in_threadpool(ml.recorder.flush)
        data = privacy.visible_report(await run_in_threadpool(lesson_report, ml.store, session), session)
        if format == "json":
            return JSONResponse(data)
        return Response(report_csv(data), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{export_name(session, "report.csv")}"'})

    @routes.post("/api/sessions/{session_id}/acknowledge")
    async def acknowledge(request: Request, session_id: RowId) -> dict:
        teacher(request)
        body = await json_object(request)
        try:
            participant, start = int(body.get("participant")), int(body.get("start"))
        except (TypeError, ValueError):
            raise HTTPException(400, "participant and start must be numbers") from None
        session = await run_in_threadpool(session_or_404, session_id)
        live = await run_in_threadpool(ml.live_session, session)
        if live is None:
            raise HTTPException(409, "the session has ended")
        if not live.acknowledge(participant, start):
            raise HTTPException(404, f"no flag of participant {participant} starting at second {start}")
        await run_in_threadpool(ml.store.acknowledge, session_id, participant, start)
        return {"participant": participant, "start": start, "acknowledged": True}

    # students
    @routes.post("/api/join")
    async def join(request: Request) -> Response:
        client = client_address(request)
        body = await json_object(request)
        code = re.sub(r"[^0-9A-Za-z]", "", str(body.get("code") or ""))[:16].upper()
        if (client, code) not in ml.joined and ml.join_failures.blocked(client):
            raise HTTPException(429, "too many wrong codes from this address; wait a minute")
        name = safe_text(body.get("name") or "", 40)
        if not name:
            raise HTTPException(400, "enter your name")
        session = await run_in_threadpool(ml.store.session_by_code, code) if code else None
        # only an open class session takes students (a video upload's session has a code too)
        live = await run_in_threadpool(ml.live_session, session) if session is not None else None
        if live is None:
            ml.join_failures.hit(client)
            raise HTTPException(404, "no open session with this code")
        if len(live.participants) >= ml.limits.participants:
            raise HTTPException(429, f"this session is full ({ml.limits.participants} participants)")
        ml.joined.add((client, code))
        token = secrets.token_urlsafe(24)

        def add() -> Participant:
            with naming:  # two students joining under one name at once still get two names
                taken = {p.info.name.casefold() for p in live.participants.values()}
                unique = next(n for n in (name, *(f"{name} ({i})" for i in range(2, len(taken) + 3)))
                              if n.casefold() not in taken)
                participant = ml.store.add_participant(session.id, unique, "student", token, ml.clock())
                live.add(participant)
                return participant

        participant = await run_in_threadpool(add)
        response = JSONResponse({"participant": participant.to_dict(), "token": token,
                                 "session": {"id": session.id, "title": session.title}})
        response.set_cookie(STUDENT_COOKIE, token, max_age=LOGIN_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @routes.get("/api/me")
    async def me(request: Request) -> dict:
        student = ml.auth.student(request)
        if student is None:
            raise HTTPException(401, "join a session first")
        session = await run_in_threadpool(ml.store.get_session, student.session_id)
        return {"participant": student.to_dict(), "privacy": privacy.STATEMENT,
                "retention_days": await run_in_threadpool(privacy.retention_days, ml.store),
                "session": {"id": session.id, "title": session.title, "open": session.open,
                            "privacy": session.privacy} if session else None}

    return routes
