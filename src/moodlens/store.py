"""Stored sessions: per-second emotion numbers in SQLite or PostgreSQL, through SQLAlchemy.

Only numbers are kept, never frames or faces: a row per participant per second with the mean
scores and the dominant emotion (a :class:`~moodlens.aggregate.SecondRecord` whose ``track_id``
is the participant's id), the session's title and join code, and the participants' names.

The schema is changed only by numbered migrations (:data:`MIGRATIONS`). Opening a store applies
the missing ones, all in one transaction, and records each in ``schema_migrations``: an upgrade
either completes or leaves the database as it was, and a database written by a newer MoodLens is
refused rather than touched.

    >>> store = Store("sqlite:///moodlens.db")                          # doctest: +SKIP
    >>> session = store.create_session("Maths 3B", classes)            # doctest: +SKIP
    >>> pid = store.add_participant(session.id, "Ana", "student")       # doctest: +SKIP
    >>> store.add_seconds(session.id, timeline.records)                # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from moodlens.aggregate import SecondRecord
from moodlens.errors import MoodLensError

# Join codes: no 0/O, 1/I/L, so a code read aloud or off a slide is typed right.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6


class StoreError(MoodLensError):
    """A database that cannot be used: unknown URL scheme, a file or server that cannot be
    opened, or a schema newer than this code."""


# --- schema ----------------------------------------------------------------------------------

migrations_table = sa.Table(
    "schema_migrations", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _v1_tables(md: sa.MetaData) -> tuple[sa.Table, ...]:
    """The tables as migration 1 creates them. Frozen: a later migration that changes a table
    gets its own description, and the query tables below move to the newest one."""
    return (
        sa.Table("settings", md,
                 sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.Text, nullable=False)),
        sa.Table("sessions", md,
                 sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("code", sa.String(16), nullable=False, unique=True),
                 sa.Column("title", sa.Text, nullable=False),
                 sa.Column("kind", sa.String(16), nullable=False),
                 sa.Column("classes", sa.Text, nullable=False),
                 sa.Column("started_at", sa.Float, nullable=False),
                 sa.Column("ended_at", sa.Float, nullable=True)),
        sa.Table("participants", md,
                 sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
                 sa.Column("name", sa.Text, nullable=False),
                 sa.Column("source", sa.String(16), nullable=False),
                 sa.Column("joined_at", sa.Float, nullable=False),
                 sa.Column("token_hash", sa.String(64), nullable=True, unique=True)),
        sa.Table("seconds", md,
                 sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                 sa.Column("second", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False),
                 sa.Column("emotion", sa.String(16), nullable=True),
                 sa.Column("frames", sa.Integer, nullable=False),
                 sa.Column("scores", sa.Text, nullable=False),
                 sa.Index("ix_seconds_session_second", "session_id", "second")),
    )


# Who the teacher sees in a class session (web/privacy.py): each student, or only the class.
PER_STUDENT, CLASS_ONLY = "per_student", "class_only"
PRIVACY_MODES = (PER_STUDENT, CLASS_ONLY)


def _v2_privacy_column() -> sa.Column:
    return sa.Column("privacy", sa.String(16), nullable=False, server_default=PER_STUDENT)


def _v3_acknowledgements_table(md: sa.MetaData) -> sa.Table:
    """A flag the teacher marked as seen, named by its participant and its first second."""
    return sa.Table("acknowledgements", md,
                    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id"), primary_key=True),
                    sa.Column("start", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=False, index=True),
                    sa.Column("at", sa.Float, nullable=False))


def _latest_tables(md: sa.MetaData) -> tuple[sa.Table, ...]:
    """The tables as the latest migration leaves them."""
    tables = _v1_tables(md)
    tables[1].append_column(_v2_privacy_column())  # sessions, migration 2
    return (*tables, _v3_acknowledgements_table(md))  # migration 3


# The tables queried by Store: the shape the latest migration leaves.
settings, sessions, participants, seconds, acknowledgements = _latest_tables(sa.MetaData())


# --- migrations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Migration:
    """One schema change. ``apply`` runs inside the upgrade's transaction and must describe its
    tables itself (never through the module's current tables, which move on with later versions)."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    _v1_tables(md)
    md.create_all(conn)


def _v2_privacy(conn: Connection) -> None:
    """sessions.privacy: existing sessions keep showing each student (as before)."""
    column = _v2_privacy_column()
    ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE sessions ADD COLUMN {ddl}")


def _v3_acknowledgements(conn: Connection) -> None:
    """Acknowledged flags outlive a server restart."""
    md = sa.MetaData()
    _v1_tables(md)  # the tables its foreign keys name
    _v3_acknowledgements_table(md).create(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "settings, sessions, participants, per-second records", _v1_initial),
    Migration(2, "sessions.privacy: per student or class only", _v2_privacy),
    Migration(3, "acknowledgements: flags the teacher marked as seen", _v3_acknowledgements),
]


def schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    return conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar() or 0


def migrate(engine: Engine, migrations: Iterable[Migration] = MIGRATIONS) -> int:
    """Apply the migrations the database lacks, in one transaction; returns the version reached.

    Raises:
        StoreError: the database has a version this code does not know (written by a newer
            MoodLens); nothing is changed.
    """
    migrations = sorted(migrations, key=lambda m: m.version)
    latest = migrations[-1].version if migrations else 0
    with engine.begin() as conn:
        migrations_table.create(conn, checkfirst=True)
        current = schema_version(conn)
        if current > latest:
            raise StoreError(f"the database schema is version {current}, newer than this MoodLens knows "
                             f"({latest}); upgrade MoodLens to open it")
        for m in migrations:
            if m.version > current:
                m.apply(conn)
                conn.execute(migrations_table.insert().values(version=m.version, name=m.name, applied_at=time.time()))
                current = m.version
    return current


# --- records ---------------------------------------------------------------------------------

@dataclass
class Session:
    """A class session, or a video upload's analysis; ``ended_at`` is None while it is open."""

    id: int
    code: str
    title: str
    kind: str
    classes: tuple[str, ...]
    started_at: float
    ended_at: float | None = None
    privacy: str = PER_STUDENT

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def wall_clock(self, second: float) -> str:
        """A second of the session as local wall-clock time, ISO 8601 with the UTC offset."""
        return datetime.fromtimestamp(self.started_at + second).astimezone().isoformat(timespec="seconds")

    def to_dict(self) -> dict:
        return {**asdict(self), "classes": list(self.classes), "open": self.open}


@dataclass
class Participant:
    """A student who joined, a tile of a shared meeting gallery, or a face in an uploaded video."""

    id: int
    session_id: int
    name: str
    source: str
    joined_at: float

    def to_dict(self) -> dict:
        return asdict(self)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def database_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL from what a user types: None (``moodlens.db`` in the per-user data
    folder, :func:`moodlens.paths.data_dir`), a file path, a ``sqlite://`` URL or a
    ``postgresql://`` URL (served by psycopg 3)."""
    if db is None:
        from moodlens.paths import data_dir

        return f"sqlite:///{data_dir() / 'moodlens.db'}"
    if isinstance(db, Path) or "://" not in str(db):
        return f"sqlite:///{Path(db).resolve()}"
    db = str(db)
    for prefix in ("postgresql://", "postgres://"):
        if db.startswith(prefix):
            return "postgresql+psycopg://" + db[len(prefix):]
    if db.startswith(("sqlite:", "postgresql+")):
        return db
    raise StoreError(f"unsupported database URL {db.split('://')[0]}://...; use a file path, sqlite:// or postgresql://")


def journal_path(url: str) -> Path:
    """Where seconds wait while the database at ``url`` cannot take them
    (:mod:`moodlens.journal`): beside a SQLite file, else in the per-user data folder."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).resolve().with_name(Path(parsed.database).name + ".journal")
    from moodlens.paths import data_dir

    return data_dir() / "journal" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.journal"


def _sqlite_engine(url: str) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    # 30 s of waiting for a lock, unless the URL says otherwise (``?timeout=``)
    timeout = {} if "timeout" in sa.engine.make_url(url).query else {"timeout": 30}
    kwargs: dict = {"connect_args": {"check_same_thread": False, **timeout}}
    if memory:
        kwargs["poolclass"] = sa.pool.StaticPool
    engine = sa.create_engine(url, **kwargs)

    # pysqlite starts no transaction before DDL; take over, so a migration rolls back whole.
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


# --- the store -------------------------------------------------------------------------------

class Store:
    """Sessions, participants and their per-second records in one database.

    Thread-safe: each call takes a pooled connection and its own transaction.

    Args:
        url: a SQLAlchemy URL (see :func:`database_url` for what users type).
        migrations: the schema's migrations (tests add their own).
    """

    def __init__(self, url: str, migrations: Iterable[Migration] = MIGRATIONS):
        self.url = url
        try:
            self.engine = create_engine(url)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:  # a bad URL, an unknown or missing driver
            raise StoreError(f"cannot use the database {shown_url(url)}: {_one_line(exc)}") from None
        try:
            self._upsert, self._acknowledge = self._conflict_statements(self.engine.dialect.name)  # before any write
            self.version = migrate(self.engine, migrations)
        except sa.exc.DBAPIError as exc:  # a file that cannot be opened, a server that cannot be reached
            self.engine.dispose()
            raise StoreError(f"cannot open the database {shown_url(url)}: {_one_line(exc)}") from None
        except Exception:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raises the driver's error when the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # settings
    def get_setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(settings.c.key).where(settings.c.key == key)).first():
                conn.execute(settings.update().where(settings.c.key == key).values(value=value))
            else:
                conn.execute(settings.insert().values(key=key, value=value))

    def settings_like(self, prefix: str) -> dict[str, str]:
        """Every setting whose key starts with ``prefix``."""
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(settings.c.key, settings.c.value)
                                     .where(settings.c.key.startswith(prefix, autoescape=True))).all())

    def delete_settings(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            with self.engine.begin() as conn:
                conn.execute(settings.delete().where(settings.c.key.in_(keys)))

    # sessions
    def create_session(self, title: str, classes: Iterable[str], kind: str = "class",
                       started_at: float | None = None, privacy: str = PER_STUDENT) -> Session:
        """A new open session with a fresh join code; ``privacy`` is one of :data:`PRIVACY_MODES`."""
        if privacy not in PRIVACY_MODES:
            raise ValueError(f"privacy must be one of {', '.join(PRIVACY_MODES)}")
        started_at = time.time() if started_at is None else started_at
        classes, title = tuple(classes), safe_text(title, 200)
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self.engine.begin() as conn:
                    sid = conn.execute(sessions.insert().values(
                        code=code, title=title, kind=kind, classes=json.dumps(list(classes)),
                        started_at=started_at, privacy=privacy)).inserted_primary_key[0]
                return Session(sid, code, title, kind, classes, started_at, privacy=privacy)
            except sa.exc.IntegrityError:
                continue  # the code was taken: draw another
        raise StoreError("could not draw a free join code")

    def get_session(self, session_id: int) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(sessions.select().where(sessions.c.id == session_id)).first()
        return _session(row) if row else None

    def session_by_code(self, code: str) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(sessions.select().where(sessions.c.code == code.strip().upper())).first()
        return _session(row) if row else None

    def list_sessions(self) -> list[dict]:
        """All sessions, newest first, each with its number of participants and stored seconds."""
        people = (sa.select(participants.c.session_id, sa.func.count().label("n"))
                  .group_by(participants.c.session_id).subquery())
        secs = (sa.select(seconds.c.session_id, sa.func.count(sa.distinct(seconds.c.second)).label("n"))
                .group_by(seconds.c.session_id).subquery())
        query = (sa.select(sessions, people.c.n.label("participants"), secs.c.n.label("seconds"))
                 .outerjoin(people, people.c.session_id == sessions.c.id)
                 .outerjoin(secs, secs.c.session_id == sessions.c.id)
                 .order_by(sessions.c.started_at.desc(), sessions.c.id.desc()))
        with self.engine.connect() as conn:
            return [{**_session(row).to_dict(), "participants": row.participants or 0, "seconds": row.seconds or 0}
                    for row in conn.execute(query)]

    def end_interrupted(self, kind: str = "video") -> list[int]:
        """End the open sessions of ``kind`` that a stopped server left open (a video whose
        analysis a crash cut short): ended at their last stored second, titled "(interrupted)"."""
        last = (sa.select(seconds.c.session_id, sa.func.max(seconds.c.second).label("last"))
                .group_by(seconds.c.session_id).subquery())
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(sessions.c.id, sessions.c.title, sessions.c.started_at, last.c.last)
                                .outerjoin(last, last.c.session_id == sessions.c.id)
                                .where(sessions.c.ended_at.is_(None) & (sessions.c.kind == kind))).all()
            for row in rows:
                conn.execute(sessions.update().where(sessions.c.id == row.id).values(
                    ended_at=row.started_at + (row.last + 1 if row.last is not None else 0),
                    title=f"{row.title} (interrupted)"))
        return [row.id for row in rows]

    def end_session(self, session_id: int, ended_at: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where((sessions.c.id == session_id) & sessions.c.ended_at.is_(None))
                         .values(ended_at=time.time() if ended_at is None else ended_at))

    def delete_session(self, session_id: int) -> bool:
        """Delete a session with its participants and records; False if there was none."""
        with self.engine.begin() as conn:
            conn.execute(seconds.delete().where(seconds.c.session_id == session_id))
            conn.execute(acknowledgements.delete().where(acknowledgements.c.session_id == session_id))
            conn.execute(participants.delete().where(participants.c.session_id == session_id))
            return conn.execute(sessions.delete().where(sessions.c.id == session_id)).rowcount > 0

    def delete_sessions_ended_before(self, cutoff: float) -> list[int]:
        """Delete every session that ended before ``cutoff`` (open ones are kept), with its
        participants and records; returns their ids."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(sa.select(sessions.c.id).where(sessions.c.ended_at < cutoff)).scalars())
        return [i for i in ids if self.delete_session(i)]

    # flags the teacher has seen
    def acknowledge(self, session_id: int, participant_id: int, start: int, at: float | None = None) -> None:
        """Remember that the flag of ``participant_id`` starting at second ``start`` was seen
        (again is a no-op)."""
        with self.engine.begin() as conn:
            conn.execute(self._acknowledge.values(participant_id=participant_id, start=start, session_id=session_id,
                                                  at=time.time() if at is None else at))

    def acknowledged(self, session_id: int) -> dict[int, dict[int, float]]:
        """participant id -> {first second of an acknowledged flag: when it was acknowledged}."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(acknowledgements).where(acknowledgements.c.session_id == session_id))
            out: dict[int, dict[int, float]] = {}
            for r in rows:
                out.setdefault(r.participant_id, {})[r.start] = r.at
            return out

    # participants
    def add_participant(self, session_id: int, name: str, source: str, token: str | None = None,
                        joined_at: float | None = None) -> Participant:
        joined_at, name = time.time() if joined_at is None else joined_at, safe_text(name, 120)
        with self.engine.begin() as conn:
            pid = conn.execute(participants.insert().values(
                session_id=session_id, name=name, source=source, joined_at=joined_at,
                token_hash=hash_token(token) if token else None)).inserted_primary_key[0]
        return Participant(pid, session_id, name, source, joined_at)

    def participants(self, session_id: int) -> list[Participant]:
        query = participants.select().where(participants.c.session_id == session_id).order_by(participants.c.id)
        with self.engine.connect() as conn:
            return [_participant(row) for row in conn.execute(query)]

    def participant_by_token(self, token: str) -> Participant | None:
        with self.engine.connect() as conn:
            row = conn.execute(participants.select().where(participants.c.token_hash == hash_token(token))).first()
        return _participant(row) if row else None

    def rename_participant(self, participant_id: int, name: str) -> bool:
        """Rename a participant; False if there is none with this id."""
        with self.engine.begin() as conn:
            return conn.execute(participants.update().where(participants.c.id == participant_id)
                                .values(name=safe_text(name, 120))).rowcount > 0

    # per-second records
    def add_seconds(self, session_id: int, records: Iterable[SecondRecord]) -> int:
        """Store records whose ``track_id`` is a participant id of the session. A second stored
        twice for a participant (a reconnect within the second) keeps the one with more frames."""
        rows = [{"session_id": session_id, "participant_id": r.track_id, "second": int(r.second),
                 "emotion": r.emotion, "frames": int(r.frames),
                 "scores": json.dumps({k: round(float(v), 4) for k, v in r.scores.items()})}
                for r in records if r.track_id is not None]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._upsert, rows)
        return len(rows)

    def seconds(self, session_id: int, participant_id: int | None = None) -> list[SecondRecord]:
        """Records by second, then participant (``track_id`` is the participant id)."""
        query = seconds.select().where(seconds.c.session_id == session_id)
        if participant_id is not None:
            query = query.where(seconds.c.participant_id == participant_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(seconds.c.second, seconds.c.participant_id)).all()
        return [SecondRecord(r.second, r.participant_id, r.emotion, json.loads(r.scores), r.frames) for r in rows]

    # export
    def export_json(self, session_id: int) -> dict | None:
        session = self.get_session(session_id)
        if session is None:
            return None
        return {"session": session.to_dict(), "participants": [p.to_dict() for p in self.participants(session_id)],
                "seconds": [{"second": r.second, "time": session.wall_clock(r.second),
                             "participant_id": r.track_id, "emotion": r.emotion,
                             "frames": r.frames, "scores": r.scores} for r in self.seconds(session_id)]}

    def export_csv(self, session_id: int) -> str | None:
        """One row per participant-second: second, its wall-clock time, participant, emotion,
        frames, a column per class."""
        session = self.get_session(session_id)
        if session is None:
            return None
        names = {p.id: p.name for p in self.participants(session_id)}
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["second", "time", "participant_id", "participant", "emotion", "frames", *session.classes])
        for r in self.seconds(session_id):
            writer.writerow([r.second, session.wall_clock(r.second), r.track_id, _no_formula(names.get(r.track_id, "")),
                             r.emotion or "", r.frames, *(r.scores.get(c, "") for c in session.classes)])
        return out.getvalue()

    @staticmethod
    def _conflict_statements(dialect: str) -> tuple[sa.Executable, sa.Executable]:
        """The inserts that settle a clash on the primary key in the database itself: a second
        written again keeps the version seen in more frames; a flag acknowledged again (two
        clicks at once, say) keeps its first acknowledgement."""
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise StoreError(f"unsupported database {dialect!r}; use SQLite or PostgreSQL")

        stmt = insert(seconds)
        upsert = stmt.on_conflict_do_update(
            index_elements=[seconds.c.participant_id, seconds.c.second],
            set_={k: stmt.excluded[k] for k in ("emotion", "frames", "scores")},
            where=seconds.c.frames < stmt.excluded.frames)
        acknowledge = insert(acknowledgements).on_conflict_do_nothing(
            index_elements=[acknowledgements.c.participant_id, acknowledgements.c.start])
        return upsert, acknowledge


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def safe_text(value: str, limit: int) -> str:
    """A one-line name or title any database stores: control characters (NUL among them, which
    PostgreSQL refuses) become spaces, lone UTF-16 surrogates (which UTF-8 cannot encode) become
    U+FFFD, runs of spaces one space; at most ``limit`` characters."""
    value = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", str(value)))
    return re.sub(r"\s+", " ", value).strip()[:limit]


def _no_formula(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection rule)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def shown_url(url: str) -> str:
    """A database URL for messages, without its password (a SQLite URL as its file's path)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://")[0] + "://..." if "://" in url else repr(url)


def _one_line(exc: BaseException) -> str:
    """The first line of an error (of the driver's own error for SQLAlchemy's wrapped ones)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _session(row) -> Session:
    return Session(row.id, row.code, row.title, row.kind, tuple(json.loads(row.classes)), row.started_at, row.ended_at,
                   row.privacy)


def _participant(row) -> Participant:
    return Participant(row.id, row.session_id, row.name, row.source, row.joined_at)
