"""The pieces behind live sessions, without a server: attention flags and the class timeline,
the newest-frame slot, gallery tiles by position, sparklines and the recorder."""

from __future__ import annotations

import asyncio
import time

import pytest

from moodlens.aggregate import NO_FACE, SecondRecord, attention_flags, class_timeline
from moodlens.classes import FER2013_CLASSES
from moodlens.faces import Face

pytest.importorskip("fastapi")

from moodlens.journal import Journal  # noqa: E402
from moodlens.store import Store  # noqa: E402
from moodlens.web.live import GalleryTiles, Latest, LiveParticipant, Recorder, spark  # noqa: E402


def run(emotions: list[str | None], **kwargs) -> list[tuple[str, int, int]]:
    records = [SecondRecord(s, 1, e, {}, 2) for s, e in enumerate(emotions) if e != "-"]
    return [(f.reason, f.start, f.end) for f in attention_flags(records, **kwargs)]


@pytest.mark.parametrize("emotions, kwargs, expected", [
    (["sad"] * 5, {}, [("sad", 0, 4)]),
    (["sad"] * 4, {}, []),
    (["happy", "sad", "fear", "sad", "angry", "sad", "happy"], {}, [("sad", 1, 5)]),
    (["sad", "sad", "happy", "sad", "sad", "sad"], {}, []),
    (["angry"] * 3, {"sustain_s": 3}, [("angry", 0, 2)]),
    (["happy"] + [None] * 10, {}, [(NO_FACE, 1, 10)]),
    (["happy"] + [None] * 9, {}, []),
    (["happy"] + ["-"] * 12, {"end": 12}, [(NO_FACE, 1, 12)]),  # no records at all: a camera gone quiet
    (["happy", "neutral", "surprise"], {}, []),
    ([], {}, []),
    ([], {"start": 0, "end": 11}, [(NO_FACE, 0, 11)]),
])
def test_attention_flags(emotions, kwargs, expected):
    assert run(emotions, **kwargs) == expected


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


class _Stub:
    """Just enough of a Recognizer for GalleryTiles."""

    classes = FER2013_CLASSES

    def open_stream(self, detect_every=2):
        return None


class _Made:
    def __init__(self, id):
        self.id = id


def face(x, y, track, w=40, h=50) -> Face:
    return Face((x, y, w, h), track_id=track)


def test_gallery_tiles_follow_faces_by_position():
    made = []
    tiles = GalleryTiles(_Stub(), lambda n: made.append(_Made(100 + n)) or made[-1])
    shape = (720, 1280)
    first = tiles.assign([face(100, 100, 1), face(700, 100, 2), face(100, 500, 3)], shape)
    assert sorted(first) == [101, 102, 103] and all(first.values())
    # the tracker lost everyone and found them again, a little moved, under new ids; one is gone
    second = tiles.assign([face(104, 98, 7), face(696, 103, 8)], shape)
    assert second[101].track_id == 7 and second[102].track_id == 8 and second[103] is None
    # someone in a new place is a new tile; the empty tile keeps its place
    third = tiles.assign([face(1000, 500, 9), face(102, 502, 10)], shape)
    assert third[104].track_id == 9 and third[103].track_id == 10
    assert len(made) == 4


def test_gallery_tiles_never_give_two_faces_one_tile():
    made = []
    tiles = GalleryTiles(_Stub(), lambda n: made.append(_Made(n)) or made[-1])
    tiles.assign([face(100, 100, 1)], (720, 1280))
    out = tiles.assign([face(100, 100, 2), face(110, 100, 3)], (720, 1280))
    assert len(out) == 2 and {f.track_id for f in out.values()} == {2, 3}


def test_spark_bins_long_histories():
    records = [SecondRecord(s, 1, "happy" if s % 3 else "sad", {"happy": 0.8, "sad": 0.6}, 2) for s in range(600)]
    line = spark(records, bins=120)
    assert len(line) == 120 and line[0][0] == 0 and line[1][0] == 5
    assert line[0][1] == "happy" and line[0][2] == pytest.approx(0.8)
    assert spark([SecondRecord(0, 1, None, {}, 1)]) == [[0, None, 0.0]]


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
    view = p.view(now=3)
    assert view["connected"] and view["status"] == NO_FACE and view["spark"][0][1] == "happy"
    assert [(r.second, r.emotion) for r in p.flush()] == [(2, None)]
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
