"""A stored session as the dashboard shows it for review (the same shape as a live snapshot,
:meth:`moodlens.web.live.LiveSession.snapshot`) and the lesson report, both computed from the
per-second records with the same :class:`~moodlens.attention.ClassWatch` the live view uses."""

from __future__ import annotations

import csv
import io
import math
import re
import threading
import unicodedata
from collections import Counter, OrderedDict, defaultdict
from datetime import datetime

from moodlens.aggregate import SecondRecord, class_timeline, mood
from moodlens.attention import ClassWatch, Rules
from moodlens.store import Participant, Session, Store
from moodlens.web.live import spark, window_mood

# Watches of ended sessions, by what they were computed from: stepping a class of 50 through an
# hour is 180,000 steps (scripts/bench_attention.py), and a review is opened again and again.
_WATCHES: OrderedDict[tuple, ClassWatch] = OrderedDict()
_WATCHES_LOCK = threading.Lock()


def _watch(store: Store, session: Session, records: list[SecondRecord]) -> ClassWatch:
    key = (store.url, session.id, session.started_at, session.ended_at, len(records),
           records[-1].second if records else None)
    with _WATCHES_LOCK:
        if session.ended_at is not None and key in _WATCHES:
            _WATCHES.move_to_end(key)
            return _WATCHES[key]
    watch = ClassWatch(session.classes).run(records).finish()
    if session.ended_at is not None:
        with _WATCHES_LOCK:
            _WATCHES[key] = watch
            while len(_WATCHES) > 8:
                _WATCHES.popitem(last=False)
    return watch


def _assess(store: Store, session: Session) -> tuple[list[SecondRecord], dict, list[Participant], ClassWatch, float]:
    """The stored seconds (all, and by participant id), the participants, the watch run over
    the whole session, and the session's length in seconds."""
    records = store.seconds(session.id)
    by_person: dict[int, list[SecondRecord]] = defaultdict(list)
    for r in records:
        by_person[r.track_id].append(r)
    watch = _watch(store, session, records)
    end = session.ended_at if session.ended_at is not None else session.started_at + (
        records[-1].second + 1 if records else 0)
    return records, by_person, store.participants(session.id), watch, end - session.started_at


def review(store: Store, session: Session, timeline_bins: int = 600) -> dict:
    """The whole session: overall class mood, a tile per participant with their most frequent
    emotion, a sparkline on the session's time axis and every attention flag raised, and the
    class timeline (averaged into at most ``timeline_bins`` points; seconds without any record
    are left out, so the chart shows them as gaps)."""
    classes = session.classes
    records, by_person, people, watch, duration = _assess(store, session)
    seen = store.acknowledged(session.id)
    tiles = []
    for p in people:
        mine = by_person.get(p.id, [])
        emotions = Counter(r.emotion for r in mine if r.emotion)
        top = emotions.most_common(1)[0][0] if emotions else None
        w = watch.watches.get(p.id)
        tiles.append({**p.to_dict(), "connected": False, "status": "review", "emotion": top,
                      "confidence": round(emotions[top] / len(mine), 3) if top else 0.0,
                      "seconds": len(mine), "spark": spark(mine, start=0),
                      "usual": w.usual_emotion(classes) if w else None,
                      "flags": [{**f.to_dict(), "acknowledged": f.start in seen.get(p.id, {})}
                                for f in watch.flags(p.id)], "past": []})
    per_second = class_timeline(records, classes)
    size = max(1, math.ceil((per_second[-1][0] + 1) / timeline_bins)) if per_second else 1
    bins: dict[int, list] = defaultdict(list)
    for entry in per_second:
        bins[entry[0] // size * size].append(entry)
    timeline = {"seconds": [], "shares": [], "judged": [], "step": size}
    for start, chunk in bins.items():
        judged = sum(n for _, _, n in chunk)
        timeline["seconds"].append(start)
        timeline["shares"].append([round(sum(s[c] * n for _, s, n in chunk) / judged, 4) if judged else 0.0
                                   for c in classes])
        timeline["judged"].append(round(judged / len(chunk), 2))
    return {"session": session.to_dict(), "classes": list(classes), "live": False,
            "now": round(duration, 2), "mood": mood(records, classes),
            "judged": len({r.track_id for r in records if r.emotion}), "present": 0, "participants": tiles,
            "timeline": timeline,
            "flagged": sum(any(not f["acknowledged"] for f in t["flags"]) for t in tiles)}


def wall_clock(session: Session, second: float | None) -> str | None:
    return None if second is None else session.wall_clock(second)


def export_name(session: Session, ext: str) -> str:
    """A download's file name: the class title (letters, digits and dashes) and its start date."""
    title = re.sub(r"[^A-Za-z0-9]+", "-", unicodedata.normalize("NFKD", session.title)).strip("-")[:60] or "session"
    return f"moodlens-{title}-{datetime.fromtimestamp(session.started_at):%Y-%m-%d-%H%M}.{ext}"


def lesson_report(store: Store, session: Session, rules: Rules | None = None) -> dict:
    """After class: attendance, the class mood over the lesson with the stretches where the
    class as a whole turned more negative than its usual (``drops``), and a row per participant
    (usual expression, time away from it, every flag)."""
    classes = session.classes
    rules = rules or Rules()
    records, by_person, people, watch, duration = _assess(store, session)
    seen = store.acknowledged(session.id)
    students = []
    for p in people:
        mine = by_person.get(p.id, [])
        w = watch.watches.get(p.id)
        emotions = Counter(r.emotion for r in mine if r.emotion)
        first, last = (mine[0].second, mine[-1].second) if mine else (None, None)
        students.append({
            **p.to_dict(), "joined": wall_clock(session, p.joined_at - session.started_at),
            "first_second": first, "last_second": last, "left": wall_clock(session, last + 1) if mine else None,
            "on_camera_s": len(mine),
            "no_face_share": round(sum(1 for r in mine if not r.emotion) / len(mine), 3) if mine else None,
            "mostly": emotions.most_common(1)[0][0] if emotions else None,
            "usual": w.usual_emotion(classes) if w else None,
            "away_s": w.away if w else 0,
            "flags": [{**f.to_dict(), "from": wall_clock(session, f.start), "to": wall_clock(session, f.end + 1),
                       "seen": wall_clock(session, seen[p.id][f.start] - session.started_at)
                       if f.start in seen.get(p.id, {}) else None} for f in watch.flags(p.id)],
            "spark": spark(mine, start=0, bins=240)})
    # the class mood in bins of about a 120th of the lesson (at least 10 s), gaps kept as None
    size = max(10, math.ceil(duration / 120))
    by_bin: dict[int, list[SecondRecord]] = defaultdict(list)
    for r in records:
        by_bin[r.second // size].append(r)
    curve = {"step": size, "seconds": [], "shares": [], "faces": [], "shift": []}
    for k in range(math.ceil(max(duration, 1) / size)):
        rs = by_bin.get(k, [])
        shares, faces = window_mood(rs, classes)
        shifts = [watch.shifts[s] for s in range(k * size, (k + 1) * size) if s in watch.shifts]
        curve["seconds"].append(k * size)
        curve["shares"].append([shares[c] for c in classes] if faces else None)
        curve["faces"].append(faces)
        curve["shift"].append(round(sum(shifts) / len(shifts), 3) if shifts else None)
    drops, run = [], None
    for second, shift in zip(curve["seconds"], curve["shift"]):
        if shift is not None and shift > rules.fall:
            run = run or {"start": second, "peak": shift}
            run["end"], run["peak"] = second + size - 1, max(run["peak"], shift)
        elif run:
            drops.append(run)
            run = None
    if run:
        drops.append(run)
    flags = sorted(({**f, "participant": s["id"], "name": s["name"]} for s in students for f in s["flags"]),
                   key=lambda f: (f["start"], f["name"]))
    return {"session": session.to_dict(), "classes": list(classes), "duration": round(duration, 1),
            "started": wall_clock(session, 0), "ended": wall_clock(session, duration),
            "students": students, "mood": curve, "drops": drops, "flags": flags,
            "rules": {"rise": rules.rise, "fall": rules.fall, "absent_s": rules.absent_s}}


def report_csv(report: dict) -> str:
    """The per-student table of a lesson report as CSV, with wall-clock times."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["participant_id", "name", "source", "joined", "left", "minutes_on_camera", "no_face_share",
                     "usual_expression", "mostly", "seconds_away_from_usual", "flags"])
    for s in report["students"]:
        writer.writerow([s["id"], s["name"], s["source"], s["joined"], s["left"] or "",
                         round(s["on_camera_s"] / 60, 1), s["no_face_share"] if s["no_face_share"] is not None else "",
                         s["usual"] or "", s["mostly"] or "", s["away_s"],
                         "; ".join(f"{f['from']}: {f['text']}" + (f" (seen {f['seen']})" if f["seen"] else "")
                                   for f in s["flags"])])
    return out.getvalue()
