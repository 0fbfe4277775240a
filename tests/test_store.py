"""The database layer on SQLite and, when a PostgreSQL server can be started here, on PostgreSQL:
Alembic migrations (fresh, repeated, the schema they make, an upgrade of a database the
hand-written runner made with its exact DDL, failed, too new, down and up, the command line),
sessions, participants, per-second records, export and delete."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic.script import ScriptDirectory  # noqa: E402

from moodlens.aggregate import POSE_COLUMNS, SecondRecord  # noqa: E402
from moodlens.classes import FER2013_CLASSES  # noqa: E402
from moodlens.store import Store, StoreError, database_url, hash_token, migrate, schema  # noqa: E402


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
    """Facing the camera, the head turned a little (a pose each second of its own)."""
    scores = {c: (0.7 if c == emotion else 0.05) for c in FER2013_CLASSES}
    return [SecondRecord(s, participant_id, emotion, scores, 2, "facing", 12.5 + s, -3.0, 1.25) for s in seconds]


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


# --- migrations ------------------------------------------------------------------------------

HEAD = int(ScriptDirectory.from_config(migrate.config()).get_current_head())

# The DDL the hand-written runner (before Alembic) executed, copied from what it sent to each
# database: migration 0 is its own schema_migrations table. {serial} and {key} are the only
# differences between SQLite and PostgreSQL.
TODAYS_DDL = {
    0: ["""CREATE TABLE schema_migrations (
\tversion INTEGER NOT NULL, \n\tname TEXT NOT NULL, \n\tapplied_at FLOAT NOT NULL, \n\tPRIMARY KEY (version)
)"""],
    1: ["""CREATE TABLE settings (
\t{key} VARCHAR(64) NOT NULL, \n\tvalue TEXT NOT NULL, \n\tPRIMARY KEY ({key})
)""", """CREATE TABLE sessions (
\tid {serial} NOT NULL, \n\tcode VARCHAR(16) NOT NULL, \n\ttitle TEXT NOT NULL, \n\tkind VARCHAR(16) NOT NULL, \
\n\tclasses TEXT NOT NULL, \n\tstarted_at FLOAT NOT NULL, \n\tended_at FLOAT, \n\tPRIMARY KEY (id), \n\tUNIQUE (code)
)""", """CREATE TABLE participants (
\tid {serial} NOT NULL, \n\tsession_id INTEGER NOT NULL, \n\tname TEXT NOT NULL, \n\tsource VARCHAR(16) NOT NULL, \
\n\tjoined_at FLOAT NOT NULL, \n\ttoken_hash VARCHAR(64), \n\tPRIMARY KEY (id), \
\n\tFOREIGN KEY(session_id) REFERENCES sessions (id), \n\tUNIQUE (token_hash)
)""", "CREATE INDEX ix_participants_session_id ON participants (session_id)",
        """CREATE TABLE seconds (
\tparticipant_id INTEGER NOT NULL, \n\tsecond INTEGER NOT NULL, \n\tsession_id INTEGER NOT NULL, \
\n\temotion VARCHAR(16), \n\tframes INTEGER NOT NULL, \n\tscores TEXT NOT NULL, \n\tPRIMARY KEY (participant_id, second), \
\n\tFOREIGN KEY(participant_id) REFERENCES participants (id), \n\tFOREIGN KEY(session_id) REFERENCES sessions (id)
)""", "CREATE INDEX ix_seconds_session_second ON seconds (session_id, second)"],
    2: ["ALTER TABLE sessions ADD COLUMN privacy VARCHAR(16) DEFAULT 'per_student' NOT NULL"],
    3: ["""CREATE TABLE acknowledgements (
\tparticipant_id INTEGER NOT NULL, \n\tstart INTEGER NOT NULL, \n\tsession_id INTEGER NOT NULL, \n\tat FLOAT NOT NULL, \
\n\tPRIMARY KEY (participant_id, start), \n\tFOREIGN KEY(participant_id) REFERENCES participants (id), \
\n\tFOREIGN KEY(session_id) REFERENCES sessions (id)
)""", "CREATE INDEX ix_acknowledgements_session_id ON acknowledgements (session_id)"],
}
TODAYS_NAMES = {1: "settings, sessions, participants, per-second records",
                2: "sessions.privacy: per student or class only",
                3: "acknowledgements: flags the teacher marked as seen"}


def _todays_database(url: str, version: int = 3) -> None:
    """A database as the hand-written runner left it at ``version``, with a class in it: two
    students with join tokens, their seconds, an ended video, settings and (from version 3) an
    acknowledged flag. Rows are inserted as that code did, ids drawn by the database."""
    engine = sa.create_engine(url)
    words = {"sqlite": {"serial": "INTEGER", "key": '"key"'}, "postgresql": {"serial": "SERIAL", "key": "key"}}
    with engine.begin() as conn:
        for v in range(version + 1):
            for statement in TODAYS_DDL[v]:
                conn.exec_driver_sql(statement.format(**words[engine.dialect.name]))
            if v:
                conn.execute(sa.text("INSERT INTO schema_migrations VALUES (:v, :name, :at)"),
                             {"v": v, "name": TODAYS_NAMES[v], "at": 1000.0 + v})
        _fill(conn, version)
    engine.dispose()


_HAPPY_SCORES = json.dumps({c: 0.7 if c == "happy" else 0.05 for c in FER2013_CLASSES})


def _fill(conn, version: int) -> None:
    privacy = ", privacy" if version >= 2 else ""
    insert = f"INSERT INTO sessions (code, title, kind, classes, started_at, ended_at{privacy}) VALUES "
    classes = json.dumps(FER2013_CLASSES)
    conn.execute(sa.text(insert + f"('ABCDEF', 'Maths 3B', 'class', :c, 100.0, NULL{', :p' if privacy else ''})"),
                 {"c": classes, "p": "class_only"})
    conn.execute(sa.text(insert + f"('GHJKMN', 'talk.mp4', 'video', :c, 50.0, 80.0{', :p' if privacy else ''})"),
                 {"c": classes, "p": "per_student"})
    for name, token in (("Ana", "secret-ana"), ("Ben", "secret-ben")):
        conn.execute(sa.text("INSERT INTO participants (session_id, name, source, joined_at, token_hash) "
                             "VALUES (1, :name, 'student', 101.0, :hash)"), {"name": name, "hash": hash_token(token)})
    conn.execute(sa.text("INSERT INTO seconds VALUES (:pid, :s, 1, :e, 2, :scores)"),
                 [{"pid": pid, "s": s, "e": "happy" if s % 2 else None, "scores": _HAPPY_SCORES}
                  for pid in (1, 2) for s in range(20)])
    conn.execute(sa.text(f"INSERT INTO settings VALUES ('teacher_token', 'abc'), ('login:x', '{'%'}')"))
    if version >= 3:
        conn.execute(sa.text("INSERT INTO acknowledgements VALUES (2, 12, 1, 130.5)"))


def _contents(url: str) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """Every table: its columns and every row, in order."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        md = sa.MetaData()
        md.reflect(conn)
        rows = {t.name: (tuple(t.columns.keys()), sorted(tuple(r) for r in conn.execute(t.select())))
                for t in md.sorted_tables}
    engine.dispose()
    return rows


def _as_before(after: dict, before: dict) -> dict:
    """``after`` cut down to the tables and columns ``before`` had: later revisions may add both."""
    out = {}
    for name, (columns, _) in before.items():
        have, rows = after[name]
        keep = [have.index(c) for c in columns]
        out[name] = (columns, sorted(tuple(r[i] for i in keep) for r in rows))
    return out


def _revision_file(folder: Path, name: str, upgrade: str, revision: str = f"{HEAD + 1:04d}") -> Path:
    """A revision after the package's last, in a folder of its own (``Store(extra_migrations=)``)."""
    folder.mkdir(parents=True, exist_ok=True)
    body = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    (folder / f"{revision}_{name}.py").write_text(
        f'"""{name}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision, down_revision = {revision!r}, {f'{HEAD:04d}'!r}\nbranch_labels = depends_on = None\n\n\n"
        f"def upgrade():\n{body}\n")
    return folder


def _no_differences(store: Store) -> list:
    """What Alembic finds between the database and :mod:`moodlens.store.schema` (nothing, we hope)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": migrate.include_name})
        return compare_metadata(context, schema.metadata)


def test_fresh_database_reaches_the_newest_revision_and_reopening_changes_nothing(db_url):
    s = Store(db_url)
    assert s.version == HEAD
    session = s.create_session("Maths", FER2013_CLASSES)
    s.close()
    before = _contents(db_url)
    again = Store(db_url)
    assert again.version == HEAD and again.get_session(session.id) == session
    assert not sa.inspect(again.engine).has_table("schema_migrations")  # only the old runner kept one
    again.close()
    assert _contents(db_url) == before and before["alembic_version"][1] == [(f"{HEAD:04d}",)]


def test_the_tables_are_what_the_migrations_make(db_url):
    """schema.py (what the queries use) and the revisions (what databases get) say the same."""
    s = Store(db_url)
    assert _no_differences(s) == []
    s.close()


def test_revisions_are_numbered_one_after_another():
    """``NNNN_what.py`` holds revision NNNN, revising NNNN - 1: Store.version is the number."""
    script = ScriptDirectory.from_config(migrate.config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert [r.down_revision for r in revisions] == [None, *(r.revision for r in revisions[:-1])]
    assert all(Path(r.path).name.startswith(r.revision + "_") for r in revisions)


def test_a_database_of_the_old_migration_runner_is_upgraded_with_every_row_intact(db_url):
    _todays_database(db_url, version=3)
    before = _contents(db_url)
    s = Store(db_url)
    assert s.version == HEAD
    after = _contents(db_url)
    marker = after["schema_migrations"][1][-1]
    assert marker[:2] == (4, "schema history moved to Alembic (alembic_version)")
    history = before["schema_migrations"]
    assert _as_before(after, before) == dict(before, schema_migrations=(history[0], [*history[1], marker]))
    assert after["alembic_version"][1] == [(f"{HEAD:04d}",)]
    assert _no_differences(s) == []
    # and the store reads and writes it as before
    ana = s.participant_by_token("secret-ana")
    assert ana.name == "Ana" and s.session_by_code("ABCDEF").privacy == "class_only"
    assert len(s.seconds(1)) == 40 and s.seconds(1, ana.id)[1].scores["happy"] == pytest.approx(0.7)
    assert s.acknowledged(1) == {2: {12: 130.5}} and s.get_setting("teacher_token") == "abc"
    fresh = s.create_session("After the upgrade", FER2013_CLASSES)
    assert fresh.id == 3 and s.add_participant(fresh.id, "Cleo", "student").id == 3
    s.close()
    reopened = Store(db_url)  # bridged once: the second open finds alembic_version and stamps nothing
    reopened.close()
    assert _contents(db_url)["schema_migrations"] == after["schema_migrations"]


def test_a_version_1_database_gets_privacy_and_acknowledgements(db_url):
    _todays_database(db_url, version=1)
    before = _contents(db_url)
    s = Store(db_url)
    assert s.version == HEAD and _no_differences(s) == []
    after = _contents(db_url)
    marker = after["schema_migrations"][1][-1]
    history = before["schema_migrations"]
    assert marker[0] == 4 and history[1][-1][0] == 1
    assert _as_before(after, before) == dict(before, schema_migrations=(history[0], [*history[1], marker]))
    # the sessions go on showing each student, as they did before privacy was a choice
    assert {session["privacy"] for session in s.list_sessions()} == {"per_student"}
    assert after["acknowledgements"][1] == []
    new = s.create_session("New class", FER2013_CLASSES, privacy="class_only")
    assert s.get_session(new.id).privacy == "class_only" and new.to_dict()["privacy"] == "class_only"
    s.acknowledge(1, 1, 7, at=5.0)
    assert s.acknowledged(1) == {1: {7: 5.0}}
    s.close()


def _revision_3_database(url: str, made_by: str) -> None:
    """A database at revision 0003 with a class in it: the old runner's DDL, or Alembic's."""
    if made_by == "the old runner":
        _todays_database(url, version=3)
        return
    from alembic import command

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrate.config(conn), "0003")
        _fill(conn, 3)
    engine.dispose()


@pytest.mark.parametrize("made_by", ["alembic", "the old runner"])
def test_revision_4_adds_attention_and_the_emotions_choice_keeping_every_row(db_url, made_by):
    _revision_3_database(db_url, made_by)
    before = {t: v for t, v in _contents(db_url).items() if t not in ("schema_migrations", "alembic_version")}
    s = Store(db_url)
    assert s.version == HEAD >= 4 and _no_differences(s) == []
    after = _contents(db_url)
    assert _as_before(after, before) == before
    columns, rows = after["seconds"]
    assert set(POSE_COLUMNS) <= set(columns) and len(rows) == 40
    assert {tuple(row[columns.index(c)] for c in POSE_COLUMNS) for row in rows} == {(None, None, None, None)}
    # the sessions go on inferring emotions, as they did before it was a choice
    assert [(row["id"], row["emotions"]) for row in s.list_sessions()] == [(1, True), (2, True)]
    assert s.seconds(1)[1] == SecondRecord(0, 2, None, json.loads(_HAPPY_SCORES), 2)
    s.add_seconds(1, [SecondRecord(20, 1, "happy", {"happy": 1.0}, 2, "away", 41.5, -4.0, 2.25)])
    assert s.seconds(1, 1)[-1] == SecondRecord(20, 1, "happy", {"happy": 1.0}, 2, "away", 41.5, -4.0, 2.25)
    s.close()


BROKEN = """
op.add_column("sessions", sa.Column("half_done", sa.Text))
op.execute("DELETE FROM seconds")
raise RuntimeError("migration bug")
"""


@pytest.mark.parametrize("made_by", ["alembic", "the old runner at version 2"])
def test_failed_upgrade_rolls_back_whole(db_url, tmp_path, made_by):
    """A revision that fails halfway leaves the database as it was: its own changes, the earlier
    revisions of the same upgrade and the bridge's stamp all go."""
    if made_by == "alembic":
        s = Store(db_url)
        session = s.create_session("Keep me", FER2013_CLASSES)
        s.add_seconds(session.id, _records(s.add_participant(session.id, "Ben", "student").id, range(5)))
        s.close()
    else:
        _todays_database(db_url, version=2)
    before = _contents(db_url)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(db_url, extra_migrations=[_revision_file(tmp_path / "versions", "broken", BROKEN)])
    assert _contents(db_url) == before
    engine = sa.create_engine(db_url)
    assert "half_done" not in {c["name"] for c in sa.inspect(engine).get_columns("sessions")}
    engine.dispose()


def test_newer_schema_is_refused_untouched(db_url, tmp_path):
    future = _revision_file(tmp_path / "versions", "from_the_future", """
        op.create_table("holograms", sa.Column("id", sa.Integer, primary_key=True))
        """)
    s = Store(db_url, extra_migrations=[future])
    assert s.version == HEAD + 1
    s.create_session("Kept", FER2013_CLASSES)
    s.close()
    before = _contents(db_url)
    with pytest.raises(StoreError, match="newer") as caught:
        Store(db_url)
    assert "\n" not in str(caught.value) and f"{HEAD + 1:04d}" in str(caught.value)
    assert _contents(db_url) == before


def test_a_newer_version_of_the_old_runner_is_refused_untouched(db_url):
    _todays_database(db_url, version=3)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO schema_migrations VALUES (9, 'from a branch', 1.0)")
    engine.dispose()
    before = _contents(db_url)
    with pytest.raises(StoreError, match="version 9, newer"):
        Store(db_url)
    assert _contents(db_url) == before


def test_revisions_go_down_to_nothing_and_up_again(db_url):
    """For developers (``alembic downgrade``): every revision can be undone."""
    from alembic import command

    Store(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        command.downgrade(migrate.config(conn), "base")
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    s = Store(db_url)
    assert s.version == HEAD and _no_differences(s) == []
    s.close()


def test_the_alembic_command_line_upgrades_a_named_database(tmp_path):
    """``alembic -x db=... upgrade head`` from the repository root (alembic.ini) makes the
    database MoodLens makes."""
    root = Path(__file__).resolve().parents[1]
    db = tmp_path / "cli.db"
    done = subprocess.run([sys.executable, "-m", "alembic", "-x", f"db={db}", "upgrade", "head"], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"),
                                                                                       os.environ.get("PYTHONPATH")]))})
    assert done.returncode == 0, done.stderr
    s = Store(database_url(db))
    assert s.version == HEAD and _no_differences(s) == []
    s.close()


def test_acknowledged_flags_are_kept_once_until_the_session_is_deleted(store):
    session = store.create_session("Class", FER2013_CLASSES)
    ana = store.add_participant(session.id, "Ana", "student")
    assert store.acknowledged(session.id) == {}
    store.acknowledge(session.id, ana.id, 12, at=100.0)
    store.acknowledge(session.id, ana.id, 12, at=200.0)  # a second click changes nothing
    store.acknowledge(session.id, ana.id, 40, at=300.0)
    assert store.acknowledged(session.id) == {ana.id: {12: 100.0, 40: 300.0}}
    assert store.delete_session(session.id) and store.acknowledged(session.id) == {}


def test_privacy_is_one_of_the_modes(store):
    new = store.create_session("New class", FER2013_CLASSES, privacy="class_only")
    assert store.get_session(new.id).privacy == "class_only" and new.to_dict()["privacy"] == "class_only"
    assert store.create_session("Default", FER2013_CLASSES).privacy == "per_student"
    with pytest.raises(ValueError, match="privacy"):
        store.create_session("Bad", FER2013_CLASSES, privacy="everyone")


def test_attention_only_is_a_choice_of_the_session(store):
    usual = store.create_session("Usual", FER2013_CLASSES)
    only = store.create_session("Attention only", FER2013_CLASSES, emotions=False)
    assert usual.emotions and not only.emotions
    assert store.get_session(only.id) == only and store.session_by_code(usual.code).emotions is True
    listed = {s["id"]: s for s in store.list_sessions()}
    assert listed[usual.id]["emotions"] is True and listed[usual.id]["classes"] == list(FER2013_CLASSES)
    assert listed[only.id]["emotions"] is False and "classes" not in listed[only.id]
    assert only.to_dict() == {k: v for k, v in listed[only.id].items() if k not in ("participants", "seconds")}


# --- sessions, participants, seconds ---------------------------------------------------------

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
    fuller = SecondRecord(3, pid, "happy", {"happy": 1.0}, 2, "facing", 5.0, -2.5, 1.0)
    store.add_seconds(session.id, [fuller])
    store.add_seconds(session.id, [SecondRecord(3, pid, "sad", {"sad": 1.0}, 1, "away", 60.0, 1.0, 0.0)])  # a sliver
    assert store.seconds(session.id) == [fuller]
    fullest = SecondRecord(3, pid, None, {}, 4, "no_face")
    store.add_seconds(session.id, [fullest])
    assert store.seconds(session.id) == [fullest]


def test_attention_only_sessions_keep_no_emotion_whatever_the_records_carry(store):
    usual = store.create_session("Usual", FER2013_CLASSES)
    only = store.create_session("Attention only", FER2013_CLASSES, emotions=False)
    for session in (usual, only):
        pid = store.add_participant(session.id, "Ana", "student").id
        assert store.add_seconds(session.id, _records(pid, range(2))) == 2
        store.add_seconds(session.id, [SecondRecord(1, pid, "sad", {"sad": 1.0}, 3, "away", 40.0, 0.5, 0.0)])  # fuller
    with store.engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT emotion, scores FROM seconds WHERE session_id = :s"), {"s": only.id}).all()
    assert [tuple(row) for row in kept] == [(None, "{}"), (None, "{}")]
    pid = store.participants(only.id)[0].id
    assert store.seconds(only.id) == [SecondRecord(0, pid, None, {}, 2, "facing", 12.5, -3.0, 1.25),
                                      SecondRecord(1, pid, None, {}, 3, "away", 40.0, 0.5, 0.0)]
    assert [r.emotion for r in store.seconds(usual.id)] == ["happy", "sad"]  # only that session's choice


def test_records_without_emotion_are_kept(store):
    session = store.create_session("s", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana", "student").id
    store.add_seconds(session.id, [SecondRecord(0, pid, None, {}, 2)])
    assert store.seconds(session.id) == [SecondRecord(0, pid, None, {}, 2)]


def test_export_csv_and_json(store):
    session = store.create_session("Export me", FER2013_CLASSES)
    pid = store.add_participant(session.id, "Ana, \"the\" first", "student").id
    store.add_seconds(session.id, _records(pid, range(2)) + [SecondRecord(2, pid, None, {}, 1, "no_face")])
    rows = list(csv.DictReader(io.StringIO(store.export_csv(session.id))))
    assert len(rows) == 3
    assert list(rows[0]) == ["second", "time", "participant_id", "participant", "emotion", "frames", *FER2013_CLASSES,
                             "attention", "yaw", "pitch", "roll"]
    assert [(r["attention"], r["yaw"], r["pitch"], r["roll"]) for r in rows] == [
        ("facing", "12.5", "-3.0", "1.25"), ("facing", "13.5", "-3.0", "1.25"), ("no_face", "", "", "")]
    # wall-clock times with the UTC offset, one second apart from the session's start
    assert datetime.fromisoformat(rows[2]["time"]).timestamp() == pytest.approx(session.started_at + 2, abs=1)
    assert rows[0]["participant"] == "Ana, \"the\" first" and rows[0]["emotion"] == "happy"
    assert float(rows[0]["happy"]) == pytest.approx(0.7)
    data = store.export_json(session.id)
    assert data["session"]["title"] == "Export me" and len(data["seconds"]) == 3
    assert data["session"]["emotions"] is True and data["session"]["classes"] == list(FER2013_CLASSES)
    assert data["seconds"][2]["time"] == rows[2]["time"]
    assert {k: data["seconds"][0][k] for k in ("emotion", "attention", "yaw", "pitch", "roll")} == {
        "emotion": "happy", "attention": "facing", "yaw": 12.5, "pitch": -3.0, "roll": 1.25}
    assert data["seconds"][0]["scores"]["happy"] == pytest.approx(0.7)
    assert data["participants"][0]["name"] == "Ana, \"the\" first"
    assert store.export_csv(9999) is None and store.export_json(9999) is None


def test_an_attention_only_export_carries_no_emotion(store):
    session = store.create_session("Attention only", FER2013_CLASSES, emotions=False)
    pid = store.add_participant(session.id, "Ana", "student").id
    store.add_seconds(session.id, _records(pid, range(2)))  # emotions sent anyway: the store drops them
    text = store.export_csv(session.id)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["second", "time", "participant_id", "participant", "frames", "attention", "yaw", "pitch",
                             "roll"]
    assert [(r["attention"], r["yaw"]) for r in rows] == [("facing", "12.5"), ("facing", "13.5")]
    data = store.export_json(session.id)
    assert [sorted(second) for second in data["seconds"]] == [sorted(["second", "time", "participant_id", "frames",
                                                                      "attention", "yaw", "pitch", "roll"])] * 2
    assert data["session"]["emotions"] is False
    for exported in (text, json.dumps(data)):
        assert not [c for c in FER2013_CLASSES if c in exported]


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
