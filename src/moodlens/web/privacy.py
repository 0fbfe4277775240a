"""What the teacher may see of a class session, and how long stored sessions are kept.

- A session's privacy mode (``sessions.privacy``, chosen when it is opened): ``per_student``
  shows a tile per student; ``class_only`` shows only the class's mood, attention and counts,
  and only while at least :data:`MIN_CLASS` students are in (:func:`visible`); its export is the
  class's per-second figures, never a student's (:func:`class_export`).
- What a session reads (``sessions.emotions``): an attention-only session's student is told so
  in :data:`ATTENTION_ONLY`; its views carry no emotion part (they are built without one).
- Retention (the ``retention_days`` setting): ended sessions older than that are deleted with
  their participants and numbers (:func:`purge`, :func:`apply_retention`), when the server
  starts, every hour, and when the setting changes (:data:`router`).
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter, defaultdict

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from moodlens.aggregate import attending, mood
from moodlens.store import CLASS_ONLY, Session, Store
from moodlens.web.deps import State, teacher
from moodlens.web.security import json_object
from moodlens.web.state import MoodLens

MIN_CLASS = 5  # fewer students and a class figure would say too much about each of them
RETENTION_KEY = "retention_days"
MAX_RETENTION_DAYS = 3650
STATEMENT = ("MoodLens keeps only numbers: for each participant and each second, whether they faced the screen "
             "and which way their head was turned, and, unless the session is attention only, the share of each "
             "emotion and the most likely one. Where a student's browser can, it analyses their camera itself and sends "
             "only those numbers; other camera frames and faces are analysed in memory and never stored; an "
             "uploaded video is deleted as soon as it has been analysed.")

# What a student is told before the camera starts in a session that reads no emotion.
ATTENTION_ONLY = "This session reads only whether you face the screen and are in view; no emotion is read."


def visible(view: dict, session: Session, minimum: int = MIN_CLASS) -> dict:
    """A live snapshot or a review (the same shape) as the session's privacy mode shows it."""
    if session.privacy != CLASS_ONLY:
        return {**view, "privacy": session.privacy}
    # live: students connected now; review: students who sent any numbers
    students = view["present"] if view["live"] else sum(bool(p.get("seconds")) for p in view["participants"])
    enough = students >= minimum
    timeline = view["timeline"]
    # the points of enough faces: judged where emotions are read (a session stored before there
    # was an attention state has none on camera), else on camera; their attending share only
    # where enough were on camera
    keep = [i for i, n in enumerate(timeline.get("judged", timeline["on_camera"])) if enough and n >= minimum]
    timeline = {k: [v[i] for i in keep] if isinstance(v, list) else v for k, v in timeline.items()}
    timeline["attending"] = [a if n >= minimum else None for a, n in zip(timeline["attending"], timeline["on_camera"])]
    shown = {**view, "privacy": CLASS_ONLY, "minimum": minimum, "students": students, "participants": [], "flagged": 0,
             "timeline": timeline,
             **{k: view[k] if enough and view[k] and view[k]["on_camera"] >= minimum else None
                for k in ("attending_now", "attending")},
             "hidden": None if enough else f"class figures appear once at least {minimum} students are in"}
    if "mood" in view:
        shown.update(mood=view["mood"] if enough else {c: 0.0 for c in view["classes"]},
                     judged=view["judged"] if enough else 0)
    return shown


def visible_report(report: dict, session: Session, minimum: int = MIN_CLASS) -> dict:
    """A lesson report as the session's privacy mode shows it: a class-only session keeps the
    class's attention and mood (bins with at least ``minimum`` faces, and the stretches drawn
    from them) and the number of students, no student."""
    if session.privacy != CLASS_ONLY:
        return {**report, "privacy": session.privacy}
    attention = report["attention"]
    curve, hidden = _thinned(attention["curve"], ("attending",), minimum)
    shown = {**report, "privacy": CLASS_ONLY, "minimum": minimum, "students_count": len(report["students"]),
             "students": [], "flags": [],
             "attention": {**attention, "curve": curve, "drifts": _outside(attention["drifts"], curve["seconds"], hidden)}}
    if "mood" in report:
        mood, hidden = _thinned(report["mood"], ("shares", "shift"), minimum)
        shown.update(mood=mood, drops=_outside(report["drops"], mood["seconds"], hidden))
    return shown


def _thinned(curve: dict, figures: tuple[str, ...], minimum: int) -> tuple[dict, list[bool]]:
    """A report curve without its ``figures`` in the bins of fewer than ``minimum`` faces, and
    which bins those are."""
    hidden = [faces < minimum for faces in curve["faces"]]
    thinned = {**curve, **{k: [None if h else v for v, h in zip(curve[k], hidden)] for k in figures},
               "faces": [0 if h else v for v, h in zip(curve["faces"], hidden)]}
    return thinned, hidden


def _outside(spans: list[dict], seconds: list[int], hidden: list[bool]) -> list[dict]:
    """The stretches that touch no hidden bin."""
    return [d for d in spans if not any(h for second, h in zip(seconds, hidden) if d["start"] <= second <= d["end"])]


def class_export(store: Store, session: Session, format: str, minimum: int = MIN_CLASS) -> str | dict:
    """A class-only session's export: per second, how many faces were on camera and the share of
    them facing the screen, and, where emotions are read, how many faces were judged and each
    emotion's share among them; each figure only where it counts at least ``minimum`` faces, and
    a second only where one does."""
    by_second: dict[int, list] = defaultdict(list)
    for r in store.seconds(session.id):
        by_second[r.second].append(r)
    rows = [row for s, rs in sorted(by_second.items()) if len(row := _class_second(s, rs, session, minimum)) > 1]
    if format == "json":
        return {"session": session.to_dict(), "seconds": rows}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["second", "on_camera", "attending", *(["judged", *session.classes] if session.emotions else [])])
    for row in rows:
        shares = row.get("shares", {})
        writer.writerow([row["second"], row.get("on_camera", ""), row.get("attending", ""),
                         *([row.get("judged", ""), *(round(shares[c], 4) if shares else "" for c in session.classes)]
                           if session.emotions else [])])
    return out.getvalue()


def _class_second(second: int, records: list, session: Session, minimum: int) -> dict:
    row: dict = {"second": second}
    counts = attending(Counter(r.attention for r in records))
    if counts["on_camera"] >= minimum:
        row.update(on_camera=counts["on_camera"], attending=counts["share"])
    judged = sum(1 for r in records if r.emotion)
    if session.emotions and judged >= minimum:
        row.update(judged=judged, shares=mood(records, session.classes))
    return row


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
