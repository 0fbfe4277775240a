"""No per-second record is lost while the database is away: the journal keeps what it cannot
write, in order, and writes it when the database is back, without duplicates; meanwhile the
web app answers JSON 503 and /healthz says so. The fault test stops a real PostgreSQL server
for 10 s while five students stream."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

pytest.importorskip("fastapi")

from moodlens.aggregate import SecondRecord  # noqa: E402
from moodlens.classes import FER2013_CLASSES  # noqa: E402
from moodlens.journal import Journal  # noqa: E402
from moodlens.store import Store  # noqa: E402
from test_store import _reset_postgres, pg_ctl, postgres_server  # noqa: E402, F401
from test_web_api import AUTH, TOKEN, jpeg, recognizer, uvicorn_server  # noqa: E402, F401


def records(pid: int, seconds: range, frames: int = 2) -> list[SecondRecord]:
    return [SecondRecord(s, pid, "happy", {c: (0.7 if c == "happy" else 0.05) for c in FER2013_CLASSES}, frames,
                         "away" if s % 2 else "facing", 10.0 + s, -5.5, 0.25) for s in seconds]


@pytest.fixture
def sqlite_store(tmp_path):
    path = tmp_path / "x.db"
    store = Store(f"sqlite:///{path}?timeout=0.2")  # give up on a lock after 0.2 s instead of 30
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    yield store, path, session.id, pid
    store.close()


def test_seconds_written_while_sqlite_is_locked_wait_and_arrive_in_order(sqlite_store, tmp_path):
    store, path, sid, pid = sqlite_store
    journal = Journal(store, tmp_path / "x.journal")
    journal.write(sid, records(pid, range(0, 2)))
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another program holds the database
    journal.write(sid, records(pid, range(2, 4)))
    assert journal.behind == 2 and journal.behind_since is not None
    lock.execute("COMMIT")
    # a later batch queues behind the kept one, even though the database answers again
    journal.write(sid, records(pid, range(4, 6), frames=3))
    assert journal.behind == 4
    assert [r.second for r in store.seconds(sid)] == [0, 1]
    assert journal.replay() and journal.behind == 0 and journal.behind_since is None
    assert store.seconds(sid) == records(pid, range(0, 4)) + records(pid, range(4, 6), frames=3)  # attention and pose too
    assert not (tmp_path / "x.journal").exists()
    lock.close()


def test_a_journal_left_by_a_stopped_server_is_written_at_the_next_start(sqlite_store, tmp_path):
    store, path, sid, pid = sqlite_store
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    Journal(store, tmp_path / "x.journal").write(sid, records(pid, range(3)))
    lock.execute("COMMIT")
    with (tmp_path / "x.journal").open("a") as f:
        f.write('{"session": 1, "rec')  # a line cut short by a crash while appending
    store.add_seconds(sid, records(pid, range(1), frames=1))  # written meanwhile, with fewer frames
    journal = Journal(store, tmp_path / "x.journal")  # the next start
    assert journal.behind == 3
    assert journal.replay()
    assert [(r.second, r.frames) for r in store.seconds(sid)] == [(0, 2), (1, 2), (2, 2)]  # once each
    lock.close()


def test_lines_written_before_attention_was_kept_are_still_written(sqlite_store, tmp_path):
    store, _, sid, pid = sqlite_store
    scores = {"happy": 0.7, "sad": 0.3}
    lines = [[[0, pid, "happy", scores, 2], [1, pid, None, {}, 1]],  # before attention was kept
             [[2, pid, "sad", scores, 3, "no_face", None, None, None]],  # now
             [[3, pid, "happy", scores, 2, "away", 50.0, 1.5]]]  # neither: a field short
    (tmp_path / "x.journal").write_text("".join(json.dumps({"session": sid, "records": r}) + "\n" for r in lines))
    journal = Journal(store, tmp_path / "x.journal")
    assert journal.behind == 3 and journal.replay()
    assert store.seconds(sid) == [SecondRecord(0, pid, "happy", scores, 2), SecondRecord(1, pid, None, {}, 1),
                                  SecondRecord(2, pid, "sad", scores, 3, "no_face")]


def test_a_batch_that_can_never_be_written_does_not_block_the_others(sqlite_store, tmp_path):
    store, _, sid, pid = sqlite_store
    journal = Journal(store, tmp_path / "x.journal")
    journal.write(sid, records(12345, range(1)))  # a participant deleted meanwhile
    journal.write(sid, records(pid, range(1)))
    assert journal.dropped == 1 and journal.behind == 0 and len(store.seconds(sid)) == 1


def test_postgresql_stopped_for_10_s_while_5_students_stream(postgres_server, recognizer, tmp_path, monkeypatch):
    """The bar: every whole second each student streamed is stored after the database is back;
    while it is away the API answers JSON 503, /healthz reports it and the dashboard says
    storage is behind."""
    import httpx
    from websockets.sync.client import connect

    from moodlens.web.server import create_app

    url = postgres_server
    _reset_postgres(url)
    monkeypatch.setenv("MOODLENS_DATA", str(tmp_path / "data"))
    frame = jpeg()
    with uvicorn_server(create_app(url, recognizer, TOKEN)) as (address, server, thread):
        base = f"http://{address}"
        session = httpx.post(f"{base}/api/sessions", json={"title": "outage"}, headers=AUTH).json()["session"]
        tokens = [httpx.post(f"{base}/api/join", json={"code": session["code"], "name": f"S{i}"}).json()["token"]
                  for i in range(5)]
        sent: dict[int, set[int]] = {i: set() for i in range(5)}
        stop = threading.Event()

        def stream(i: int) -> None:
            with connect(f"ws://{address}/ws/student?token={tokens[i]}") as ws:
                while not stop.is_set():
                    sent[i].add(int(time.time() - session["started_at"]))
                    ws.send(frame)
                    ws.recv(timeout=30)
                    time.sleep(0.5)

        students = [threading.Thread(target=stream, args=(i,)) for i in range(5)]
        for t in students:
            t.start()
        time.sleep(3)
        pg_ctl(url, "stop")
        stopped = time.time()
        try:
            time.sleep(2)
            r = httpx.get(f"{base}/api/sessions", headers=AUTH)
            assert r.status_code == 503 and "database" in r.json()["error"]
            health = httpx.get(f"{base}/healthz")
            assert health.status_code == 503 and health.json()["database"].startswith("unavailable")
            with connect(f"ws://{address}/ws/sessions/{session['id']}/dashboard?token={TOKEN}") as dash:
                behind = json.loads(dash.recv(timeout=10))["storage"]["behind"]
            assert behind > 0
            time.sleep(max(0.0, 10 - (time.time() - stopped)))
        finally:
            pg_ctl(url, "start")
        time.sleep(3)
        stop.set()
        for t in students:
            t.join(30)
        deadline = time.time() + 30
        while httpx.get(f"{base}/healthz").json()["storage"]["behind"] and time.time() < deadline:
            time.sleep(0.5)
        assert httpx.post(f"{base}/api/sessions/{session['id']}/end", headers=AUTH).status_code == 200
        export = httpx.get(f"{base}/api/sessions/{session['id']}/export?format=json", headers=AUTH).json()
    stored: dict[int, list[int]] = {}
    for row in export["seconds"]:
        stored.setdefault(row["participant_id"], []).append(row["second"])
    assert len(stored) == 5
    expected_total = 0
    for i, p in enumerate(export["participants"]):
        expected = set(range(min(sent[i]) + 1, max(sent[i])))  # whole seconds inside the stream
        expected_total += len(expected)
        assert expected <= set(stored[p["id"]]), sorted(expected - set(stored[p["id"]]))
        assert len(stored[p["id"]]) == len(set(stored[p["id"]]))  # none twice
    print(f"outage of 10 s: {behind} seconds waited in the journal at its 2nd second; "
          f"{len(export['seconds'])} rows stored, all {expected_total} whole student-seconds, none twice")
