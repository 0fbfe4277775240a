"""Settings: named strings the server keeps (the teacher's password hash, login sessions)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from moodlens.store.schema import settings


class SettingsPart:
    """The part of :class:`~moodlens.store.Store` that reads and writes ``settings``."""

    engine: Engine

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
