"""The pieces behind live sessions, without a server: the class timeline, the newest-frame slot,
the live session's flags against the stored review's, sparklines and the recorder."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from moodlens.aggregate import SecondRecord, class_timeline
from moodlens.attention import NO_FACE
from moodlens.classes import FER2013_CLASSES
from moodlens.faces import Face

pytest.importorskip("fastapi")

from moodlens.journal import Journal  # noqa: E402
from moodlens.store import Store  # noqa: E402
from moodlens.web.dashboard import review  # noqa: E402
from moodlens.web.live import Latest, LiveParticipant, LiveSession, Recorder, spark  # noqa: E402


def test_class_timeline_shares_per_second():
    records = [SecondRecord(0, 1, "happy", {}, 1), SecondRecord(0, 2, "sad", {}, 1), SecondRecord(0, 3, None, {}, 1),
               SecondRecord(2, 1, "happy", {}, 1)]
    timeline = class_timeline(records, FER2013_CLASSES)
    assert [(s, n) for s, _, n in timeline] == [(0, 2), (2, 1)]
    assert timeline[0][1]["happy"] == 0.5 and timeline[0][1]["sad"] == 0.5 and timeline[1][1]["happy"] == 1.0


def test_latest_keeps_only_the_newest_item():
    async def main():
        slot = Latest()
        for i in range(5):
            slot.put(i)
        assert await slot.get() == 4 and slot.dropped == 4
        waiter = asyncio.create_task(slot.get())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        slot.put("next")
        assert await waiter == "next"
        slot.close()
        assert await slot.get() is None

    asyncio.run(main())


def test_spark_bins_long_histories():
    records = [SecondRecord(s, 1, "happy" if s % 3 else "sad", {"happy": 0.8, "sad": 0.6}, 2) for s in range(600)]
    line = spark(records, bins=120)
    assert len(line) == 120 and line[0][0] == 0 and line[1][0] == 5
    assert line[0][1] == "happy" and line[0][2] == pytest.approx(0.8)
    assert spark([SecondRecord(0, 1, None, {}, 1)]) == [[0, None, 0.0]]
    # bins are stretches of time: a gap in the records stays a gap on the line
    gappy = [SecondRecord(s, 1, "happy", {"happy": 0.8}, 2) for s in [*range(100), *range(400, 600)]]
    assert {s for s, _, _ in spark(gappy, bins=120, start=0)} == {*range(0, 100, 5), *range(400, 600, 5)}


def test_participant_seconds_and_view(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=1000.0)
    info = store.add_participant(session.id, "Ana", "student", joined_at=1000.0)
    p = LiveParticipant(info, session)
    happy = Face((0, 0, 50, 50), scores={c: (0.9 if c == "happy" else 0.0166) for c in FER2013_CLASSES},
                 emotion="happy")
    closed = []
    for i in range(6):
        closed += p.observe(happy if i < 4 else None, i * 0.5)
    assert [(r.second, r.emotion) for r in closed] == [(0, "happy"), (1, "happy")]
    p.connections = 1
    view = p.view(3, None, FER2013_CLASSES, set())
    assert view["connected"] and view["status"] == NO_FACE and view["spark"][0][1] == "happy"
    assert p.view(6, None, FER2013_CLASSES, set())["status"] == "unknown"  # connected, no frame for 3 s
    assert [(r.second, r.emotion) for r in p.flush()] == [(2, None)]
    store.close()


def test_the_class_timeline_shows_only_seconds_everyone_has_closed(tmp_path):
    """One student's newer seconds alone are not the class: the timeline and the mood wait, as
    the flags do, until every connected participant has closed a second."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0)
    clock = [6.5]
    live = LiveSession(session, lambda: clock[0])
    calm, sad = (live.add(store.add_participant(session.id, n, "student", joined_at=0.0)) for n in ("calm", "sad"))
    calm.connections = sad.connections = 1
    live.count([SecondRecord(t, calm.id, "neutral", {"neutral": 1.0}, 2) for t in range(3)])
    live.count([SecondRecord(t, sad.id, "sad", {"sad": 1.0}, 2) for t in range(6)])
    snap = live.snapshot()
    assert snap["timeline"]["seconds"] == [0, 1, 2] and snap["timeline"]["judged"] == [2, 2, 2]
    assert snap["mood"]["sad"] == 0.5 and snap["judged"] == 2
    live.count([SecondRecord(t, calm.id, "neutral", {"neutral": 1.0}, 2) for t in range(3, 5)])
    assert live.snapshot()["timeline"]["seconds"] == [0, 1, 2, 3, 4]  # up to the settle time (2 s)
    store.close()


def test_recorder_batches_and_survives_a_failing_write(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    journal = Journal(store, tmp_path / "x.journal")
    recorder = Recorder(journal, batch_s=0.05)
    recorder.put(session.id, [SecondRecord(0, pid, "happy", {"happy": 1.0}, 1)])
    recorder.put(999, [SecondRecord(0, 12345, "happy", {"happy": 1.0}, 1)])  # no such participant
    recorder.put(session.id, [SecondRecord(1, pid, "sad", {"sad": 1.0}, 1)])
    start = time.perf_counter()
    recorder.flush()
    assert time.perf_counter() - start < 5
    assert [r.second for r in store.seconds(session.id)] == [0, 1]
    assert journal.dropped == 1 and journal.behind == 0  # a write that can never succeed is not kept
    recorder.close()
    store.close()


def test_the_live_view_raises_the_flags_the_stored_review_shows(tmp_path):
    """Seconds closing a little out of order, as they do live, one student's arriving in bursts
    6 s late (a busy server), and a student who leaves: every poll of the live view shows the
    flags of the review so far, and none blinks."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0)
    clock = [0.0]
    live = LiveSession(session, lambda: clock[0])
    rng = np.random.default_rng(0)
    people = [live.add(store.add_participant(session.id, f"P{i}", "student", joined_at=0.0)) for i in range(8)]

    def scores(sad: bool) -> dict:
        p = np.array([0.02, 0.02, 0.05, 0.05, 0.7 if sad else 0.15, 0.01, 0.15 if sad else 0.7])
        p = np.clip(p + rng.normal(0, 0.03, 7), 0.001, None)
        return dict(zip(FER2013_CLASSES, (p / p.sum()).tolist()))

    seen_up: dict[int, int] = {}
    late: list[SecondRecord] = []
    burst: list[SecondRecord] = []
    rose: set[str] = set()  # tinted before their first flag
    for second in range(120):
        batch = []
        for i, p in enumerate(people):
            if i == 7 and second >= 70:
                continue  # P7 left at 70
            sad = i < 3 and 50 <= second < 95
            s = scores(sad)
            batch.append(SecondRecord(second, p.id, max(s, key=s.get), s, 2))
        # half the class's seconds close one second late; P0's come 6 at a time
        live.count(batch[1:4])
        live.count(late)
        late = batch[4:]
        burst.append(batch[0])
        if len(burst) == 6:
            live.count(burst)
            burst = []
        clock[0] = second + 1.2
        for p in people:
            p.connections = 0 if p is people[7] and second >= 70 else 1
        snap = live.snapshot()
        for tile in snap["participants"]:
            up = bool(tile["flags"])
            if tile["rising"] and tile["id"] not in seen_up:
                rose.add(tile["name"])
            if seen_up.get(tile["id"]) == "ended":
                assert not up, f"{tile['name']} flagged again at {second}"
            if seen_up.get(tile["id"]) is True and not up:
                seen_up[tile["id"]] = "ended"
            elif up:
                seen_up[tile["id"]] = True
        store.add_seconds(session.id, batch)
    tiles = {t["name"]: t for t in snap["participants"]}
    assert tiles["P7"]["status"] == "left" and tiles["P7"]["left_at"] == 69
    store.end_session(session.id, 121.0)
    stored = {t["name"]: t["flags"] for t in review(store, store.get_session(session.id))["participants"]}
    for name, tile in tiles.items():
        assert [(f["reason"], f["start"], f["end"]) for f in tile["past"]] == \
            [(f["reason"], f["start"], f["end"]) for f in stored[name]], name
    assert {n for n, flags in stored.items() if flags} == {"P0", "P1", "P2"}
    assert rose and rose <= {"P0", "P1", "P2"}
    assert all(f["reason"] == "sad" and 50 <= f["start"] <= 53 and f["text"].startswith("sadder than usual")
               for n in ("P0", "P1", "P2") for f in stored[n])
    store.close()


@pytest.mark.parametrize("movers, drops", [(10, 1), (3, 0)])
def test_the_report_marks_a_drop_only_when_the_class_as_a_whole_moves(tmp_path, movers, drops):
    from moodlens.web.dashboard import lesson_report

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("Maths", FER2013_CLASSES, started_at=0.0)
    rng = np.random.default_rng(0)
    people = [store.add_participant(session.id, f"P{i}", "student", joined_at=0.0).id for i in range(10)]
    records = []
    for second in range(600):
        for i, pid in enumerate(people):
            sad = i < movers and 300 <= second < 420
            p = np.clip(np.array([0.02, 0.02, 0.05, 0.05, 0.7 if sad else 0.15, 0.01, 0.15 if sad else 0.7])
                        + rng.normal(0, 0.03, 7), 0.001, None)
            scores = dict(zip(FER2013_CLASSES, (p / p.sum()).tolist()))
            records.append(SecondRecord(second, pid, max(scores, key=scores.get), scores, 2))
    store.add_seconds(session.id, records)
    store.end_session(session.id, 600.0)
    report = lesson_report(store, store.get_session(session.id))
    assert len(report["drops"]) == drops
    if drops:
        assert 290 <= report["drops"][0]["start"] <= 310 and 410 <= report["drops"][0]["end"] <= 430
    assert sum(bool(s["flags"]) for s in report["students"]) == (0 if movers == 10 else movers)
    assert len(report["mood"]["seconds"]) == 60 and all(report["mood"]["shares"])
    store.close()


def test_an_ended_session_is_assessed_once_until_its_seconds_change(tmp_path, monkeypatch):
    from moodlens.attention import ClassWatch
    from moodlens.web.dashboard import lesson_report

    runs = []
    run = ClassWatch.run
    monkeypatch.setattr(ClassWatch, "run", lambda self, *a, **k: runs.append(1) or run(self, *a, **k))
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0)
    pid = store.add_participant(session.id, "Ana", "student", joined_at=0.0).id
    store.add_seconds(session.id, [SecondRecord(s, pid, "happy", {"happy": 1.0}, 2) for s in range(30)])
    review(store, store.get_session(session.id))
    review(store, store.get_session(session.id))
    assert len(runs) == 2  # open: assessed each time
    store.end_session(session.id, 30.0)
    review(store, store.get_session(session.id))
    lesson_report(store, store.get_session(session.id))
    assert len(runs) == 3  # ended: once
    store.add_seconds(session.id, [SecondRecord(30, pid, "happy", {"happy": 1.0}, 2)])  # a late second
    assert review(store, store.get_session(session.id))["participants"][0]["seconds"] == 31 and len(runs) == 4
    store.close()


def attention_seconds(plan: dict[int, str]) -> list[SecondRecord]:
    """Scripted attention-only seconds: participant id -> one letter a second, ``f`` facing, ``a``
    away, ``n`` out of view, ``-`` camera off (no record)."""
    state = {"f": "facing", "a": "away", "n": "no_face"}
    return [SecondRecord(s, pid, None, {}, 2, attention=state[c]) for pid, line in plan.items()
            for s, c in enumerate(line) if c != "-"]


def test_the_live_view_shows_the_share_attending_now_and_over_the_lesson(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0, emotions=False)
    clock = [12.5]
    live = LiveSession(session, lambda: clock[0])
    ana, ben, cai, dee = (live.add(store.add_participant(session.id, n, "student", joined_at=0.0))
                          for n in ("Ana", "Ben", "Cai", "Dee"))
    for p in (ana, ben, cai):
        p.connections = 1
    records = attention_seconds({ana.id: "f" * 12, ben.id: "ffffffaaaaaa", cai.id: "ffffffffnnnn", dee.id: "ffff"})
    live.count(records)
    for r in records:
        live.participants[r.track_id].recent.append(r)
        live.participants[r.track_id].last_frame = r.second + 0.5
    snap = live.snapshot()
    # the watch has taken seconds 0-10 (settle_s 2): at 10 Ana faces, Ben is away, Cai is out of
    # view; Dee's camera went off at 4, which says nothing about attention
    assert snap["attending_now"] == {"facing": 1, "on_camera": 3, "share": 0.3333}
    assert snap["attending"] == {"facing": 4 + 11 + 6 + 8, "on_camera": 4 + 3 * 11, "share": round(29 / 37, 4)}
    assert snap["timeline"]["seconds"] == list(range(11))
    assert snap["timeline"]["attending"][:4] == [1.0] * 4 and snap["timeline"]["on_camera"][:5] == [4, 4, 4, 4, 3]
    tiles = {t["name"]: t for t in snap["participants"]}
    assert {n: t["attention"] for n, t in tiles.items()} == \
        {"Ana": "facing", "Ben": "away", "Cai": "no_face", "Dee": "camera_off"}
    assert tiles["Ben"]["attending"] == round(6 / 11, 4) and tiles["Dee"]["attending"] == 1.0
    assert tiles["Ben"]["focus"][-1] == [11, "away"] and tiles["Ben"]["focus"][0] == [0, "facing"]
    store.close()


def test_the_live_attention_flags_are_the_stored_reviews(tmp_path):
    """An attention-only class: seconds closing out of order, one student's in late bursts, one
    who looks away for 50 s, one out of view for 70 s, one away for 35 s (not long enough) and
    one who leaves while looking away. Every poll shows the review's flags so far, raised after
    40 s away and 60 s out of view, and none blinks."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0, emotions=False)
    clock = [0.0]
    live = LiveSession(session, lambda: clock[0])
    people = [live.add(store.add_participant(session.id, f"P{i}", "student", joined_at=0.0)) for i in range(6)]
    plan = {people[0].id: "f" * 20 + "a" * 50 + "f" * 80,
            people[1].id: "f" * 30 + "n" * 70 + "f" * 50,
            people[2].id: "f" * 40 + "a" * 35 + "f" * 75,
            people[3].id: "f" * 60 + "a" * 45,  # leaves at 105 while still away
            people[4].id: "f" * 150,
            people[5].id: "f" * 10 + "a" * 39 + "f" * 101}
    by_second: dict[int, list[SecondRecord]] = {}
    for r in attention_seconds(plan):
        by_second.setdefault(r.second, []).append(r)
    shown: dict[str, list] = {}  # name -> the flags shown at each poll, in order
    late: list[SecondRecord] = []
    burst: list[SecondRecord] = []
    for second in range(150):
        batch = by_second.get(second, [])
        burst += [r for r in batch if r.track_id == people[0].id]
        rest = [r for r in batch if r.track_id != people[0].id]
        live.count(rest[:2])
        live.count(late)
        late = rest[2:]
        if len(burst) == 6:
            live.count(burst)
            burst = []
        clock[0] = second + 1.2
        for p in people:
            p.connections = 0 if p is people[3] and second >= 105 else 1
        snap = live.snapshot()
        assert "mood" not in snap and "emotion" not in snap["participants"][0]
        for tile in snap["participants"]:
            shown.setdefault(tile["name"], []).append([(f["reason"], f["start"]) for f in tile["flags"]])
        store.add_seconds(session.id, batch)
    tiles = {t["name"]: t for t in snap["participants"]}
    store.end_session(session.id, 150.0)
    stored = {t["name"]: t["flags"] for t in review(store, store.get_session(session.id))["participants"]}
    for name, tile in tiles.items():
        assert [(f["reason"], f["start"], f["end"]) for f in tile["past"]] == \
            [(f["reason"], f["start"], f["end"]) for f in stored[name]], name
    assert {n: [(f["reason"], f["start"], f["end"]) for f in flags] for n, flags in stored.items() if flags} == \
        {"P0": [("looking_away", 20, 69)], "P1": [("not_in_view", 30, 99)], "P3": [("looking_away", 60, 104)]}
    # raised once, when the state had lasted 40 s (60 s) by the seconds the watch had taken
    for name, reason, start, needed in (("P0", "looking_away", 20, 40), ("P1", "not_in_view", 30, 60)):
        polls = [i for i, up in enumerate(shown[name]) if up]
        assert polls == list(range(polls[0], polls[-1] + 1)), f"{name}'s flag blinked"
        assert shown[name][polls[0]] == [(reason, start)]
        # poll i is at second i + 1, the watch settle_s (2) behind it, or more while P0's seconds wait
        assert start + needed - 1 <= polls[0] - 1 <= start + needed - 1 + 6
    assert tiles["P3"]["status"] == "left" and not tiles["P3"]["flags"]  # left: not flagged any more
    store.close()


def test_a_session_revived_after_a_restart_keeps_the_whole_lessons_flags_and_attention(tmp_path):
    """20 minutes stored, more than the 15 a live session keeps: a look away early in the lesson
    is still flagged after a restart, and the lesson's attention counts every stored second."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("s", FER2013_CLASSES, started_at=0.0, emotions=False)
    ana, ben = (store.add_participant(session.id, n, "student", joined_at=0.0) for n in ("Ana", "Ben"))
    store.add_seconds(session.id, attention_seconds({ana.id: "f" * 20 + "a" * 50 + "f" * 1130, ben.id: "f" * 1200}))
    live = LiveSession(session, lambda: 1201.5)
    for p in (ana, ben):
        live.add(p)
    live.replay(store.seconds(session.id))
    snap = live.snapshot()
    tiles = {t["name"]: t for t in snap["participants"]}
    assert [(f["reason"], f["start"], f["end"]) for f in tiles["Ana"]["past"]] == [("looking_away", 20, 69)]
    assert snap["attending"]["on_camera"] == 2400 and snap["attending"]["share"] == pytest.approx(2350 / 2400, abs=1e-4)
    store.end_session(session.id, 1200.0)
    stored = {t["name"]: t["flags"] for t in review(store, store.get_session(session.id))["participants"]}
    assert [(f["reason"], f["start"], f["end"]) for f in stored["Ana"]] == [("looking_away", 20, 69)]
    store.close()


@pytest.mark.parametrize("drifters, emotions", [(8, False), (2, False), (8, True)])
def test_the_report_gives_each_students_attention_and_the_stretches_the_class_drifted(tmp_path, drifters, emotions):
    from moodlens.web.dashboard import DRIFT_SHARE, lesson_report, report_csv

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    session = store.create_session("Maths", FER2013_CLASSES, started_at=0.0, emotions=emotions)
    people = [store.add_participant(session.id, f"P{i}", "student", joined_at=0.0).id for i in range(10)]
    # the drifters look away from 300 to 359; P9 is also out of view for 100 s and off for 50
    plan = {pid: "f" * 300 + ("a" if i < drifters else "f") * 60 + "f" * 240 for i, pid in enumerate(people)}
    plan[people[9]] = "f" * 100 + "n" * 100 + "-" * 50 + "f" * 350
    neutral = {c: (0.7 if c == "neutral" else 0.05) for c in FER2013_CLASSES}
    store.add_seconds(session.id, [SecondRecord(r.second, r.track_id, "neutral", neutral, 2, attention=r.attention)
                                   for r in attention_seconds(plan)])
    store.end_session(session.id, 600.0)
    report = lesson_report(store, store.get_session(session.id))
    attention = report["attention"]
    assert attention["drift_share"] == DRIFT_SHARE
    if drifters == 8:
        [drift] = attention["drifts"]
        assert drift["start"] == 300 and drift["end"] == 359 and drift["lowest"] == pytest.approx(0.2)
    else:
        assert attention["drifts"] == []
    away = 60 * drifters
    assert attention["attending"] == {"facing": 5950 - away - 100, "on_camera": 5950,
                                      "share": round((5850 - away) / 5950, 4)}
    assert len(attention["curve"]["seconds"]) == 60 and attention["curve"]["faces"][0] == 10
    rows = {s["name"]: s for s in report["students"]}
    assert rows["P0"]["attending"] == 0.9 and rows["P0"]["looking_away_s"] == 60
    assert rows["P9"]["not_in_view_s"] == 100 and rows["P9"]["on_camera_s"] == 550
    assert rows["P9"]["attending"] == round(450 / 550, 4) and rows["P9"]["focus"][0] == [0, "facing"]
    assert [f["reason"] for f in rows["P9"]["flags"]] == ["not_in_view"]
    assert ("mood" in report, "usual" in rows["P0"], "spark" in rows["P0"]) == (emotions,) * 3
    header = report_csv(report).splitlines()[0].split(",")
    assert "attending_share" in header and ("usual_expression" in header) is emotions
    store.close()
