"""The schema's history, by Alembic: the revisions in ``migrations/versions/``, applied on open.

:func:`upgrade` runs on a connection whose transaction the caller commits, so an upgrade either
completes or leaves the database as it was (SQLite's DDL included, see
:func:`moodlens.store.engine.create_engine`). No ``alembic.ini`` is needed: the configuration is
built here, pointing at the package's own migrations folder.

A database the hand-written runner made before Alembic (``schema_migrations`` holding versions
1-3, no ``alembic_version``) is bridged in the same transaction: stamped with the revision that
reproduces its last version, then upgraded. ``schema_migrations`` stays, with a row for version
4 added, so a MoodLens from before Alembic refuses the database as newer than it knows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from moodlens.store.engine import StoreError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

# the hand-written runner's versions -> the revisions that leave the same schema
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003"}
LEGACY_MARKER = (4, "schema history moved to Alembic (alembic_version)")
legacy_table = sa.table("schema_migrations", sa.column("version"), sa.column("name"), sa.column("applied_at"))

_lock = threading.Lock()  # alembic.context and alembic.op are proxies shared by the whole process


def config(connection: Connection | None = None, extra_versions: Iterable[str | Path] = ()) -> Config:
    """Alembic's configuration in code: the package's migrations, and further folders of
    revisions (tests add their own); ``connection`` is the one env.py migrates."""
    cfg = Config()
    cfg.set_main_option("script_location", _ini_value(MIGRATIONS))
    extra = [Path(p) for p in extra_versions]
    if extra:
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(_ini_value(p) for p in [MIGRATIONS / "versions", *extra]))
    cfg.attributes["connection"] = connection
    return cfg


def _ini_value(path: Path) -> str:
    return str(path).replace("%", "%%")  # Config's values go through ConfigParser's interpolation


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic's filter when it compares the database with :mod:`moodlens.store.schema`."""
    # the hand-written runner's history, kept in the databases it made, is no table of the schema
    return not (type_ == "table" and name == "schema_migrations")


def revision(conn: Connection) -> str | None:
    """The revision the database is at (None: none yet)."""
    heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


def upgrade(conn: Connection, extra_versions: Iterable[str | Path] = ()) -> str:
    """Bring the database to the newest revision, inside the caller's transaction; returns it.

    Raises:
        StoreError: the database is at a revision this code does not know (written by a newer
            MoodLens); nothing is changed.
    """
    cfg = config(conn, extra_versions)
    script = ScriptDirectory.from_config(cfg)
    with _lock:
        current = revision(conn)
        if current is None:
            _bridge(conn, cfg)
        elif current not in {s.revision for s in script.walk_revisions()}:
            raise StoreError(f"the database schema is revision {current}, newer than this MoodLens knows "
                             f"({script.get_current_head()}); upgrade MoodLens to open it")
        command.upgrade(cfg, "head")
        return revision(conn)


def _bridge(conn: Connection, cfg: Config) -> None:
    """Stamp a database the hand-written runner kept with the revision matching its last version."""
    if not sa.inspect(conn).has_table("schema_migrations"):
        return
    version = conn.execute(sa.select(sa.func.max(legacy_table.c.version))).scalar() or 0
    if version == 0:
        return
    if version not in LEGACY_REVISIONS:
        raise StoreError(f"the database schema is version {version}, newer than this MoodLens knows "
                         f"({max(LEGACY_REVISIONS)}); upgrade MoodLens to open it")
    command.stamp(cfg, LEGACY_REVISIONS[version])
    number, name = LEGACY_MARKER
    conn.execute(legacy_table.insert().values(version=number, name=name, applied_at=time.time()))
