"""What the teacher may see of a class session, and how long stored sessions are kept.

- A session's privacy mode (``sessions.privacy``, chosen when it is opened): ``per_student``
  shows a tile per student; ``class_only`` shows only the class mood and counts, and only while
  at least :data:`MIN_CLASS` students are in (:func:`visible`); its export is the class's
  per-second shares, never a student's (:func:`class_export`).
- Retention (the ``retention_days`` setting): ended sessions older than that are deleted with
  their participants and numbers (:func:`purge`, :func:`apply_retention`), when the server
  starts, every hour, and when the setting changes (:data:`router`).
"""

from __future__ import annotations

import csv
import io
import time

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from moodlens.aggregate import class_timeline
from moodlens.store import CLASS_ONLY, Session, Store
from moodlens.web.deps import State, teacher
from moodlens.web.security import json_object
from moodlens.web.state import MoodLens

MIN_CLASS = 5  # fewer students and a class figure would say too much about each of them
RETENTION_KEY = "retention_days"
MAX_RETENTION_DAYS = 3650
STATEMENT = ("MoodLens keeps only numbers: for each participant and each second, the share of each emotion "
             "and the most likely one. Where a student's browser can, it analyses their camera itself and sends "
             "only those numbers; other camera frames and faces are analysed in memory and never stored; an "
             "uploaded video is deleted as soon as it has been analysed.")


def visible(view: dict, session: Session, minimum: int = MIN_CLASS) -> dict:
    """A live snapshot or a review (the same shape) as the session's privacy mode shows it."""
    if session.privacy != CLASS_ONLY:
        return {**view, "privacy": session.privacy}
    # live: students connected now; review: students who sent any numbers
    students = view["present"] if view["live"] else sum(bool(p.get("seconds")) for p in view["participants"])
    enough = students >= minimum
    timeline = view["timeline"]
    keep = [i for i, n in enumerate(timeline["judged"]) if enough and n >= minimum]
    return {**view, "privacy": CLASS_ONLY, "minimum": minimum, "students": students,
            "participants": [], "flagged": 0,
            "mood": view["mood"] if enough else {c: 0.0 for c in view["classes"]},
            "judged": view["judged"] if enough else 0,
            "timeline": {k: [v[i] for i in keep] if isinstance(v, list) else v for k, v in timeline.items()},
            "hidden": None if enough else f"class figures appear once at least {minimum} students are in"}


def visible_report(report: dict, session: Session, minimum: int = MIN_CLASS) -> dict:
    """A lesson report as the session's privacy mode shows it: a class-only session keeps the
    class mood (bins with at least ``minimum`` faces) and the number of students, no student."""
    if session.privacy != CLASS_ONLY:
        return {**report, "privacy": session.privacy}
    mood = report["mood"]
    hide = [faces < minimum for faces in mood["faces"]]
    return {**report, "privacy": CLASS_ONLY, "minimum": minimum, "students_count": len(report["students"]),
            "students": [], "flags": [],
            "mood": {**mood, "shares": [None if h else v for v, h in zip(mood["shares"], hide)],
                     "shift": [None if h else v for v, h in zip(mood["shift"], hide)],
                     "faces": [0 if h else v for v, h in zip(mood["faces"], hide)]},
            "drops": [d for d in report["drops"] if not any(
                h for second, h in zip(mood["seconds"], hide) if d["start"] <= second <= d["end"])]}


def class_export(store: Store, session: Session, format: str, minimum: int = MIN_CLASS) -> str | dict:
    """A class-only session's export: per second, how many faces were judged and each emotion's
    share among them, for seconds with at least ``minimum`` judged."""
    rows = [(s, shares, n) for s, shares, n in class_timeline(store.seconds(session.id), session.classes) if n >= minimum]
    if format == "json":
        return {"session": session.to_dict(), "seconds": [{"second": s, "judged": n, "shares": shares}
                                                          for s, shares, n in rows]}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["second", "judged", *session.classes])
    for s, shares, n in rows:
        writer.writerow([s, n, *(round(shares[c], 4) for c in session.classes)])
    return out.getvalue()


def retention_days(store: Store) -> int | None:
    value = store.get_setting(RETENTION_KEY)
    return int(value) if value else None


def purge(store: Store, now: float | None = None) -> list[int]:
    """Delete the ended sessions older than the retention setting (none when it is unset)."""
    days = retention_days(store)
    if days is None:
        return []
    return store.delete_sessions_ended_before((time.time() if now is None else now) - days * 86400)


async def apply_retention(ml: MoodLens) -> list[int]:
    """Delete the sessions past the retention setting (and their cached student tokens); their ids."""
    deleted = await run_in_threadpool(purge, ml.store, ml.clock())
    for session_id in deleted:
        ml.auth.forget(session_id)
    return deleted


# ``GET``/``PUT /api/settings/retention``, for the teacher
router = APIRouter(dependencies=[Depends(teacher)])


@router.get("/api/settings/retention")
async def get_retention(ml: State) -> dict:
    return {"retention_days": await run_in_threadpool(retention_days, ml.store)}


@router.put("/api/settings/retention")
async def set_retention(request: Request, ml: State) -> dict:
    days = (await json_object(request)).get("retention_days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                             or not 1 <= days <= MAX_RETENTION_DAYS):
        raise HTTPException(400, f"retention_days must be a whole number of days, 1 to {MAX_RETENTION_DAYS}, "
                                 "or null to keep sessions until deleted")
    await run_in_threadpool(ml.store.set_setting, RETENTION_KEY, "" if days is None else str(days))
    return {"retention_days": days, "deleted": await apply_retention(ml)}
