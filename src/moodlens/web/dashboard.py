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

from moodlens.aggregate import SecondRecord, attending, class_timeline, mood
from moodlens.attention import ClassWatch, Rules, Watch
from moodlens.focus import AWAY, FACING, NO_FACE
from moodlens.store import Participant, Session, Store
from moodlens.store.exports import spreadsheet_text
from moodlens.web.live import attention_series, focus_line, spark, window_mood

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
    watch = ClassWatch(session.classes, emotions=session.emotions).run(records).finish()
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
    """The whole session: a tile per participant with their share of the lesson facing the
    screen, their attention line and every flag raised, the class's attending share and its
    timeline (averaged into at most ``timeline_bins`` points; seconds without any record are left
    out, so the chart shows them as gaps); unless the session reads no emotion, also the overall
    class mood, each tile's most frequent emotion and a sparkline on the session's time axis."""
    classes, emotions = session.classes, session.emotions
    records, by_person, people, watch, duration = _assess(store, session)
    seen = store.acknowledged(session.id)
    tiles = []
    for p in people:
        mine = by_person.get(p.id, [])
        tile = {**p.to_dict(), "connected": False, "status": "review", "seconds": len(mine), "attention": None,
                "attending": attending(Counter(r.attention for r in mine))["share"],
                "focus": focus_line(mine, start=0),
                "flags": [{**f.to_dict(), "acknowledged": f.start in seen.get(p.id, {})} for f in watch.flags(p.id)],
                "past": []}
        if emotions:
            tile.update(_mood_tile(mine, watch.watches.get(p.id), classes))
        tiles.append(tile)
    by_second: dict[int, list[SecondRecord]] = defaultdict(list)
    for r in records:
        by_second[r.second].append(r)
    size = max(1, math.ceil((max(by_second) + 1) / timeline_bins)) if by_second else 1
    bins: dict[int, list[int]] = defaultdict(list)  # first second -> the seconds with records in it
    for second in sorted(by_second):
        bins[second // size * size].append(second)
    states = [Counter(r.attention for s in chunk for r in by_second[s]) for chunk in bins.values()]
    series = attention_series(states)
    # per second on average, as a live timeline counts them
    series["on_camera"] = [round(n / len(chunk), 2) for n, chunk in zip(series["on_camera"], bins.values())]
    view = {"session": session.to_dict(), "live": False, "now": round(duration, 2), "present": 0,
            "participants": tiles, "attending_now": None, "attending": attending(Counter(r.attention for r in records)),
            "timeline": {"seconds": list(bins), "step": size, **series},
            "flagged": sum(any(not f["acknowledged"] for f in t["flags"]) for t in tiles)}
    if emotions:
        view.update(classes=list(classes), mood=mood(records, classes),
                    judged=len({r.track_id for r in records if r.emotion}))
        view["timeline"].update(_mood_series(records, classes, size))
    return view


def _mood_series(records: list[SecondRecord], classes: tuple[str, ...], size: int) -> dict:
    """The class mood in bins of ``size`` seconds (those with records): each emotion's share
    among the faces judged (``shares``) and the faces judged per second (``judged``)."""
    bins: dict[int, list] = defaultdict(list)
    for entry in class_timeline(records, classes):
        bins[entry[0] // size * size].append(entry)
    shares, judged = [], []
    for chunk in bins.values():
        n = sum(k for _, _, k in chunk)
        shares.append([round(sum(s[c] * k for _, s, k in chunk) / n, 4) if n else 0.0 for c in classes])
        judged.append(round(n / len(chunk), 2))
    return {"shares": shares, "judged": judged}


def _mood_tile(mine: list[SecondRecord], w: Watch | None, classes: tuple[str, ...]) -> dict:
    """A review tile's emotion: the most frequent one and its share, the sparkline, the usual expression."""
    emotions = Counter(r.emotion for r in mine if r.emotion)
    top = emotions.most_common(1)[0][0] if emotions else None
    return {"emotion": top, "confidence": round(emotions[top] / len(mine), 3) if top else 0.0,
            "spark": spark(mine, start=0), "usual": w.usual_emotion(classes) if w else None}


def wall_clock(session: Session, second: float | None) -> str | None:
    return None if second is None else session.wall_clock(second)


def export_name(session: Session, ext: str) -> str:
    """A download's file name: the class title (letters, digits and dashes) and its start date."""
    title = re.sub(r"[^A-Za-z0-9]+", "-", unicodedata.normalize("NFKD", session.title)).strip("-")[:60] or "session"
    return f"moodlens-{title}-{datetime.fromtimestamp(session.started_at):%Y-%m-%d-%H%M}.{ext}"


# The lesson report's drifts: stretches of at least DRIFT_S seconds in which fewer than
# DRIFT_SHARE of the students on camera faced the screen. The 30 students of
# scripts/attention_sim.py (glances at notes, brief turns and absences, and for two thirds of
# them a long look-away or absence as well) face the screen 85 % of the time and fall under two
# thirds in 4 of 1,199 seconds, never 3 in a row: a drift is a third of the class turned away at
# once, for longer than a shared look at the board or a handout.
DRIFT_SHARE = 0.66
DRIFT_S = 30


def lesson_report(store: Store, session: Session, rules: Rules | None = None) -> dict:
    """After class: attendance; the class's attention over the lesson (``attention``: the share
    facing the screen in bins, with the stretches it drifted below :data:`DRIFT_SHARE`); a row
    per participant (time on camera, facing, looking away and out of view, every flag); and,
    unless the session reads no emotion, the class mood over the lesson with the stretches where
    the class as a whole turned more negative than its usual (``drops``) and each participant's
    usual expression and time away from it."""
    classes, emotions = session.classes, session.emotions
    rules = rules or Rules()
    records, by_person, people, watch, duration = _assess(store, session)
    seen = store.acknowledged(session.id)
    students = []
    for p in people:
        mine = by_person.get(p.id, [])
        first, last = (mine[0].second, mine[-1].second) if mine else (None, None)
        student = {
            **p.to_dict(), "joined": wall_clock(session, p.joined_at - session.started_at),
            "first_second": first, "last_second": last, "left": wall_clock(session, last + 1) if mine else None,
            "on_camera_s": len(mine), **_attention_row(mine),
            "flags": [{**f.to_dict(), "from": wall_clock(session, f.start), "to": wall_clock(session, f.end + 1),
                       "seen": wall_clock(session, seen[p.id][f.start] - session.started_at)
                       if f.start in seen.get(p.id, {}) else None} for f in watch.flags(p.id)],
            "focus": focus_line(mine, start=0, bins=240)}
        if emotions:
            student.update(_mood_row(mine, watch.watches.get(p.id), classes))
        students.append(student)
    # the class in bins of about a 120th of the lesson (at least 10 s), gaps kept as None
    size = max(10, math.ceil(duration / 120))
    by_bin: dict[int, list[SecondRecord]] = defaultdict(list)
    for r in records:
        by_bin[r.second // size].append(r)
    starts = [k * size for k in range(math.ceil(max(duration, 1) / size))]
    chunks = [by_bin.get(k, []) for k in range(len(starts))]
    states = [Counter(r.attention for r in rs) for rs in chunks]
    curve = {"step": size, "seconds": starts, "attending": attention_series(states)["attending"],
             "faces": [len({r.track_id for r in rs if r.attention}) for rs in chunks]}
    drifts = [{"start": a, "end": b, "lowest": min(values)}
              for a, b, values in stretches(starts, curve["attending"], size, lambda v: v < DRIFT_SHARE)
              if b - a + 1 >= DRIFT_S]
    flags = sorted(({**f, "participant": s["id"], "name": s["name"]} for s in students for f in s["flags"]),
                   key=lambda f: (f["start"], f["name"]))
    report = {"session": session.to_dict(), "duration": round(duration, 1),
              "started": wall_clock(session, 0), "ended": wall_clock(session, duration), "students": students,
              "attention": {"attending": attending(sum(states, Counter())), "curve": curve, "drifts": drifts,
                            "drift_share": DRIFT_SHARE, "drift_s": DRIFT_S},
              "flags": flags}
    if emotions:
        report.update(classes=list(classes), rules={"rise": rules.rise, "fall": rules.fall, "absent_s": rules.absent_s},
                      **_mood_curve(chunks, starts, size, watch, rules))
    return report


def stretches(starts: list[int], values: list[float | None], size: int, inside) -> list[tuple[int, int, list[float]]]:
    """The runs of consecutive bins (``size`` seconds each, starting at ``starts``) whose value is
    known and ``inside(value)``: ``(first second, last second, the values)`` of each.

    >>> stretches([0, 10, 20, 30], [0.9, 0.2, 0.3, None], 10, lambda v: v < 0.5)
    [(10, 29, [0.2, 0.3])]
    """
    runs: list[tuple[int, int, list[float]]] = []
    last = None  # the index of the last bin inside
    for i, (start, value) in enumerate(zip(starts, values)):
        if value is None or not inside(value):
            continue
        if last == i - 1:
            first, _, run = runs.pop()
            runs.append((first, start + size - 1, [*run, value]))
        else:
            runs.append((start, start + size - 1, [value]))
        last = i
    return runs


def _attention_row(mine: list[SecondRecord]) -> dict:
    """A participant's attention over the lesson: the share of their seconds on camera spent
    facing the screen, and the seconds looking away and out of view."""
    states = Counter(r.attention for r in mine)
    return {"attending": attending(states)["share"], "facing_s": states[FACING], "looking_away_s": states[AWAY],
            "not_in_view_s": states[NO_FACE]}


def _mood_row(mine: list[SecondRecord], w: Watch | None, classes: tuple[str, ...]) -> dict:
    """A participant's expression over the lesson: how often no face was readable, the most
    frequent and the usual expression, the seconds away from it and the sparkline."""
    emotions = Counter(r.emotion for r in mine if r.emotion)
    return {"no_face_share": round(sum(1 for r in mine if not r.emotion) / len(mine), 3) if mine else None,
            "mostly": emotions.most_common(1)[0][0] if emotions else None,
            "usual": w.usual_emotion(classes) if w else None, "away_s": w.away if w else 0,
            "spark": spark(mine, start=0, bins=240)}


def _mood_curve(chunks: list[list[SecondRecord]], starts: list[int], size: int, watch: ClassWatch,
                rules: Rules) -> dict:
    """The class mood in the report's bins (``mood``: each emotion's share, the faces judged and
    the class's mean shift in log-odds) and the stretches the shift was above ``rules.fall``
    (``drops``)."""
    curve = {"step": size, "seconds": starts, "shares": [], "faces": [], "shift": []}
    for start, rs in zip(starts, chunks):
        shares, faces = window_mood(rs, watch.classes)
        shifts = [watch.shifts[s] for s in range(start, start + size) if s in watch.shifts]
        curve["shares"].append([shares[c] for c in watch.classes] if faces else None)
        curve["faces"].append(faces)
        curve["shift"].append(round(sum(shifts) / len(shifts), 3) if shifts else None)
    drops = [{"start": a, "end": b, "peak": max(values)}
             for a, b, values in stretches(starts, curve["shift"], size, lambda v: v > rules.fall)]
    return {"mood": curve, "drops": drops}


def _blank(v):
    return "" if v is None else v


# The report table's CSV columns: (heading, the cell of a student's row); the emotion columns only
# where the session read emotions.
ROW_COLUMNS = [("participant_id", lambda s: s["id"]), ("name", lambda s: s["name"]), ("source", lambda s: s["source"]),
               ("joined", lambda s: s["joined"]), ("left", lambda s: _blank(s["left"])),
               ("minutes_on_camera", lambda s: round(s["on_camera_s"] / 60, 1)),
               ("attending_share", lambda s: _blank(s["attending"])),
               ("seconds_looking_away", lambda s: s["looking_away_s"]),
               ("seconds_not_in_view", lambda s: s["not_in_view_s"])]
MOOD_COLUMNS = [("no_face_share", lambda s: _blank(s["no_face_share"])), ("usual_expression", lambda s: _blank(s["usual"])),
                ("mostly", lambda s: _blank(s["mostly"])), ("seconds_away_from_usual", lambda s: s["away_s"])]
FLAGS_COLUMN = ("flags", lambda s: "; ".join(f"{f['from']}: {f['text']}" + (f" (seen {f['seen']})" if f["seen"] else "")
                                             for f in s["flags"]))


def report_csv(report: dict) -> str:
    """The per-student table of a lesson report as CSV, with wall-clock times."""
    columns = [*ROW_COLUMNS, *(MOOD_COLUMNS if report["session"]["emotions"] else []), FLAGS_COLUMN]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in columns])
    for s in report["students"]:
        writer.writerow([spreadsheet_text(v) if isinstance(v, str) else v for v in (cell(s) for _, cell in columns)])
    return out.getvalue()
