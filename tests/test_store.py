"""The database layer on SQLite and, when a PostgreSQL server can be started here, on PostgreSQL:
migrations (fresh, repeated, upgraded with data, failed, too new), sessions, participants,
per-second records, export and delete."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")

from moodlens.aggregate import SecondRecord  # noqa: E402
from moodlens.classes import FER2013_CLASSES  # noqa: E402
from moodlens.store import MIGRATIONS, Migration, Store, StoreError, database_url, schema_version  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_binaries() -> tuple[str, str] | None:
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    if not initdb:
        return None
    pg_ctl = str(Path(initdb).resolve().parent / "pg_ctl")
    return (initdb, pg_ctl) if os.path.exists(pg_ctl) else None


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server in a temp dir on a free loopback port (run as the postgres
    user when the tests run as root); skips when PostgreSQL or psycopg is not installed."""
    pytest.importorskip("psycopg", reason="psycopg not installed")
    binaries = _pg_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    initdb, pg_ctl = binaries
    root = Path(tempfile.mkdtemp(prefix="moodlens-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o755)
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=90)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    _PG_CTL[url] = [*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"]
    try:
        yield url
    finally:
        _PG_CTL.pop(url)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_PG_CTL: dict[str, list[str]] = {}  # url -> pg_ctl command line without its action


def pg_ctl(url: str, action: str) -> None:
    """Stop or start the throwaway server of ``postgres_server`` (fault tests)."""
    command = _PG_CTL[url] + ([action, "-m", "immediate"] if action == "stop" else [action])
    subprocess.run(command, check=True, capture_output=True, timeout=90)


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or the PostgreSQL server with an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'moodlens.db'}"
    url = request.getfixturevalue("postgres_server")
    _reset_postgres(url)
    return url


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def _records(participant_id: int, seconds: range, emotion: str = "happy") -> list[SecondRecord]:
    scores = {c: (0.7 if c == emotion else 0.05) for c in FER2013_CLASSES}
    return [SecondRecord(s, participant_id, emotion, scores, 2) for s in seconds]


@pytest.mark.parametrize("given, expected", [
    ("lessons.db", f"sqlite:///{Path('lessons.db').resolve()}"),
    ("sqlite:///x.db", "sqlite:///x.db"),
    ("postgresql://u:p@db/moodlens", "postgresql+psycopg://u:p@db/moodlens"),
    ("postgres://u@db/m", "postgresql+psycopg://u@db/m"),
])
def test_database_url(given, expected):
    assert database_url(given) == expected


def test_the_default_database_is_in_the_per_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MOODLENS_DATA", str(tmp_path / "data"))
    assert database_url(None) == f"sqlite:///{tmp_path / 'data' / 'moodlens.db'}"
    assert (tmp_path / "data").is_dir()
    monkeypatch.delenv("MOODLENS_DATA")
    assert database_url(None) != f"sqlite:///{Path('moodlens.db').resolve()}"  # never the current folder


def test_database_url_refuses_other_schemes():
    with pytest.raises(StoreError, match="unsupported"):
        database_url("mysql://u@db/m")


@pytest.mark.parametrize("url", ["sqlite:////nonexistent/dir/x.db", "mysql://u:secret@db/m", "not a url",
                                 "nosuchdb://x/y"])
def test_an_unusable_database_is_a_one_line_store_error(url):
    from moodlens.errors import MoodLensError

    with pytest.raises(StoreError) as caught:
        Store(url)
    assert isinstance(caught.value, MoodLensError)  # the CLI reports it as one line
    message = str(caught.value)
    assert message and "\n" not in message and "secret" not in message


def test_fresh_database_is_migrated_and_reopening_changes_nothing(db_url):
    s = Store(db_url)
    assert s.version == MIGRATIONS[-1].version
    session = s.create_session("Maths", FER2013_CLASSES)
    s.close()
    again = Store(db_url)
    assert again.version == MIGRATIONS[-1].version
    assert again.get_session(session.id) == session
    with again.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM schema_migrations").scalar() == len(MIGRATIONS)
    again.close()


def test_upgrade_keeps_every_stored_session(db_url):
    s = Store(db_url)
    session = s.create_session("Before the upgrade", FER2013_CLASSES)
    pid = s.add_participant(session.id, "Ana", "student").id
    s.add_seconds(session.id, _records(pid, range(30)))
    s.close()

    def add_note(conn) -> None:
        conn.execute(sa.text("ALTER TABLE sessions ADD COLUMN note TEXT"))
        conn.execute(sa.text("UPDATE sessions SET note = 'migrated'"))

    upgraded = Store(db_url, [*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "session notes", add_note)])
    assert upgraded.version == len(MIGRATIONS) + 1
    assert upgraded.get_session(session.id).title == "Before the upgrade"
    assert len(upgraded.seconds(session.id)) == 30
    with upgraded.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT note FROM sessions").scalar() == "migrated"
    upgraded.close()


def test_migration_3_remembers_acknowledged_flags_until_the_session_is_deleted(db_url):
    old = Store(db_url, MIGRATIONS[:2])  # a database as MoodLens left it before migration 3
    session = old.create_session("Class", FER2013_CLASSES)
    ana = old.add_participant(session.id, "Ana", "student")
    old.close()
    s = Store(db_url)
    assert s.version == 3 and s.acknowledged(session.id) == {}
    s.acknowledge(session.id, ana.id, 12, at=100.0)
    s.acknowledge(session.id, ana.id, 12, at=200.0)  # a second click changes nothing
    s.acknowledge(session.id, ana.id, 40, at=300.0)
    assert s.acknowledged(session.id) == {ana.id: {12: 100.0, 40: 300.0}}
    assert s.delete_session(session.id) and s.acknowledged(session.id) == {}


def test_migration_2_gives_existing_sessions_the_per_student_privacy_they_had(db_url):
    old = Store(db_url, MIGRATIONS[:1])  # a database as MoodLens left it before migration 2
    with old.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sessions (code, title, kind, classes, started_at) "
                             "VALUES ('ABCDEF', 'Old class', 'class', :classes, 1.0)"),
                     {"classes": json.dumps(FER2013_CLASSES)})
    old.close()
    s = Store(db_url)
    assert s.version >= 2
    assert s.session_by_code("ABCDEF").privacy == "per_student"
    new = s.create_session("New class", FER2013_CLASSES, privacy="class_only")
    assert s.get_session(new.id).privacy == "class_only" and new.to_dict()["privacy"] == "class_only"
    with pytest.raises(ValueError, match="privacy"):
        s.create_session("Bad", FER2013_CLASSES, privacy="everyone")
    s.close()


def test_failed_upgrade_rolls_back_whole(db_url):
    s = Store(db_url)
    session = s.create_session("Keep me", FER2013_CLASSES)
    pid = s.add_participant(session.id, "Ben", "student").id
    s.add_seconds(session.id, _records(pid, range(5)))
    s.close()

    def broken(conn) -> None:
        conn.execute(sa.text("ALTER TABLE sessions ADD COLUMN half_done TEXT"))
        conn.execute(sa.text("DELETE FROM seconds"))
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        Store(db_url, [*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "broken", broken)])
    after = Store(db_url)
    assert after.version == len(MIGRATIONS)
    assert len(after.seconds(session.id)) == 5
    assert "half_done" not in {c["name"] for c in sa.inspect(after.engine).get_columns("sessions")}
    after.close()


def test_newer_schema_is_refused_untouched(db_url):
    s = Store(db_url, [*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "from the future", lambda conn: None)])
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db_url)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert schema_version(conn) == len(MIGRATIONS) + 1
    engine.dispose()


def test_sessions_participants_and_seconds(store):
    a = store.create_session("3B maths", FER2013_CLASSES)
    b = store.create_session("4A history", FER2013_CLASSES, kind="video")
    assert a.code != b.code and len(a.code) == 6 and a.open
    assert store.session_by_code(a.code.lower()) == a
    assert store.session_by_code("NOPE99") is None
    ana = store.add_participant(a.id, "Ana", "student", token="secret-ana")
    ben = store.add_participant(a.id, "Ben", "student", token="secret-ben")
    assert store.participant_by_token("secret-ana") == ana
    assert store.participant_by_token("wrong") is None
    assert store.add_seconds(a.id, _records(ana.id, range(10)) + _records(ben.id, range(5, 10), "sad")) == 15
    rows = store.seconds(a.id)
    assert [r.second for r in rows] == sorted(r.second for r in rows)
    assert {r.track_id for r in rows} == {ana.id, ben.id}
    assert rows[0].scores["happy"] == pytest.approx(0.7)
    assert [r.emotion for r in store.seconds(a.id, ben.id)] == ["sad"] * 5
    listed = {s["id"]: s for s in store.list_sessions()}
    assert listed[a.id]["participants"] == 2 and listed[a.id]["seconds"] == 10
    assert listed[b.id]["participants"] == 0 and listed[b.id]["kind"] == "video"
    store.end_session(a.id, ended_at=a.started_at + 10)
    assert store.get_session(a.id).ended_at == pytest.approx(a.started_at + 10)
    store.rename_participant(ana.id, "Ana M.")
    assert store.participants(a.id)[0].name == "Ana M."


def test_renaming_reports_whether_there_was_such_a_participant(store):
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    assert store.rename_participant(pid, "Ana M.") is True
    assert store.rename_participant(pid, "Ana M.") is True  # the same name again still finds the row
    assert store.rename_participant(pid + 1000, "Nobody") is False
    assert [p.name for p in store.participants(session.id)] == ["Ana M."]


def test_a_second_stored_twice_keeps_the_fuller_one(store):
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    store.add_seconds(session.id, [SecondRecord(3, pid, "happy", {"happy": 1.0}, 2)])
    store.add_seconds(session.id, [SecondRecord(3, pid, "sad", {"sad": 1.0}, 1)])  # a reconnect's sliver
    assert [(r.emotion, r.frames) for r in store.seconds(session.id)] == [("happy", 2)]
    store.add_seconds(session.id, [SecondRecord(3, pid, "fear", {"fear": 1.0}, 4)])
    assert [(r.emotion, r.frames) for r in store.seconds(session.id)] == [("fear", 4)]


def test_records_without_emotion_are_kept(store):
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    store.add_seconds(session.id, [SecondRecord(0, pid, None, {}, 2)])
    assert store.seconds(session.id) == [SecondRecord(0, pid, None, {}, 2)]


def test_export_csv_and_json(store):
    session = store.create_session("Export me", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana, \"the\" first", "student").id
    store.add_seconds(session.id, _records(pid, range(3)))
    rows = list(csv.DictReader(io.StringIO(store.export_csv(session.id))))
    assert len(rows) == 3
    assert list(rows[0]) == ["second", "time", "participant_id", "participant", "emotion", "frames", *FER2013_CLASSES]
    # wall-clock times with the UTC offset, one second apart from the session's start
    assert datetime.fromisoformat(rows[2]["time"]).timestamp() == pytest.approx(session.started_at + 2, abs=1)
    assert rows[0]["participant"] == "Ana, \"the\" first" and rows[0]["emotion"] == "happy"
    assert float(rows[0]["happy"]) == pytest.approx(0.7)
    data = store.export_json(session.id)
    assert data["session"]["title"] == "Export me" and len(data["seconds"]) == 3
    assert data["seconds"][2]["time"] == rows[2]["time"]
    assert data["participants"][0]["name"] == "Ana, \"the\" first"
    assert store.export_csv(9999) is None and store.export_json(9999) is None


@pytest.mark.parametrize("name, shown", [
    ("=HYPERLINK(\"http://evil.example\")", "'=HYPERLINK(\"http://evil.example\")"),
    ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("Ana", "Ana"), ("Ana=B", "Ana=B")])
def test_csv_export_never_writes_a_formula(store, name, shown):
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, name, "student").id
    store.add_seconds(session.id, _records(pid, range(1)))
    assert next(csv.DictReader(io.StringIO(store.export_csv(session.id))))["participant"] == shown
    assert store.export_json(session.id)["participants"][0]["name"] == name  # JSON keeps the name as it is


def test_any_text_is_stored(store):
    """NUL (PostgreSQL refuses it), lone UTF-16 surrogates (UTF-8 cannot encode them), controls."""
    session = store.create_session("Maths\x00 3B\ud800", FER2013_CLASSES)
    pid = store.add_participant(session.id, "A\x00na\udc00\n  B", "student").id
    assert store.rename_participant(pid, "Ben\x00\ud83d") is True
    assert store.get_session(session.id).title == "Maths 3B\ufffd"
    assert [p.name for p in store.participants(session.id)] == ["Ben \ufffd"]


def test_video_sessions_a_crash_left_open_are_ended_as_interrupted(store):
    video = store.create_session("talk.mp4", FER2013_CLASSES, kind="video", started_at=100.0)
    pid = store.add_participant(video.id, "Face #1", "video").id
    store.add_seconds(video.id, _records(pid, range(5)))
    lesson = store.create_session("lesson", FER2013_CLASSES, started_at=100.0)
    assert store.end_interrupted("video") == [video.id]
    ended = store.get_session(video.id)
    assert ended.ended_at == 105.0 and ended.title == "talk.mp4 (interrupted)"
    assert store.get_session(lesson.id).open  # a class session goes on after a restart
    assert store.end_interrupted("video") == []


def test_delete_removes_only_that_session(store):
    keep = store.create_session("keep", FER2013_CLASSES)
    drop = store.create_session("drop", FER2013_CLASSES)
    for session in (keep, drop):
        pid = store.add_participant(session.id, "Ana", "student", token=f"t{session.id}").id
        store.add_seconds(session.id, _records(pid, range(4)))
    assert store.delete_session(drop.id)
    assert not store.delete_session(drop.id)
    assert store.get_session(drop.id) is None and store.seconds(drop.id) == [] and store.participants(drop.id) == []
    assert store.participant_by_token(f"t{drop.id}") is None
    assert len(store.seconds(keep.id)) == 4


def test_settings(store):
    assert store.get_setting("teacher_token") is None
    store.set_setting("teacher_token", "abc")
    store.set_setting("teacher_token", "def")
    assert store.get_setting("teacher_token") == "def"
    store.set_setting("login:a", "1")
    store.set_setting("login:b", "2")
    store.set_setting("login_%x", "3")  # a LIKE wildcard in a key is matched literally
    assert store.settings_like("login:") == {"login:a": "1", "login:b": "2"}
    store.delete_settings(["login:a", "login:b"])
    assert store.settings_like("login") == {"login_%x": "3"}


def test_concurrent_writers(store):
    """Worker threads write at once (the recorder, joins, uploads) without losing a row."""
    from concurrent.futures import ThreadPoolExecutor

    session = store.create_session("busy", FER2013_CLASSES)
    pids = [store.add_participant(session.id, f"S{i}", "student").id for i in range(8)]
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda pid: [store.add_seconds(session.id, _records(pid, range(s, s + 1))) for s in range(20)],
                      pids))
    assert len(store.seconds(session.id)) == 8 * 20
    assert time.perf_counter() - start < 30
