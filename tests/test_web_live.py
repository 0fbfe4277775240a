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
