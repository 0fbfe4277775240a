"""Opening a database: the URL a user types, the SQLAlchemy engine, and names for messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from moodlens.errors import MoodLensError

DIALECTS = ("sqlite", "postgresql")  # the inserts that settle a clash on a key exist for these


class StoreError(MoodLensError):
    """A database that cannot be used: unknown URL scheme, a file or server that cannot be
    opened, or a schema newer than this code."""


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


def check_dialect(engine: Engine) -> None:
    """Raises StoreError for a database other than SQLite or PostgreSQL, before anything is written."""
    if engine.dialect.name not in DIALECTS:
        raise StoreError(f"unsupported database {engine.dialect.name!r}; use SQLite or PostgreSQL")


def shown_url(url: str) -> str:
    """A database URL for messages, without its password (a SQLite URL as its file's path)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://")[0] + "://..." if "://" in url else repr(url)


def one_line(exc: BaseException) -> str:
    """The first line of an error (of the driver's own error for SQLAlchemy's wrapped ones)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
