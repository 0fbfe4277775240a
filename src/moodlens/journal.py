"""Per-second records the database could not take yet, kept in a local file until it can.

Live sessions write their closed seconds through a :class:`Journal`. While the database answers,
a batch goes straight in. When a write fails because the database is down, locked or
unreachable, the batch is appended to the journal file (flushed to disk before going on), and
every later batch queues behind it there, so seconds reach the database in the order they were
closed. :meth:`Journal.replay` writes the file's batches in order and empties it once all are
in. A batch written twice (a crash between writing and emptying the file) stores nothing twice:
a second is keyed by participant and second in the database.

A journal left by a server that stopped while the database was away is replayed when the next
one starts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from moodlens.aggregate import SecondRecord
from moodlens.store import Store

log = logging.getLogger("moodlens.store")

# The database is away (stopped, restarting, unreachable, locked past the busy timeout): what
# fails now will work later, so it is kept. Anything else (a session deleted meanwhile) never will.
UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


def database_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE)


# A record on a line: a list of its fields in this order. Lines written before attention was
# kept hold the first five, and still decode: a journal may outlive an upgrade.
_FIELDS = ("second", "track_id", "emotion", "scores", "frames", "attention", "yaw", "pitch", "roll")
_LENGTHS = (5, len(_FIELDS))


def _encode(session_id: int, records: list[SecondRecord]) -> str:
    return json.dumps({"session": session_id, "records": [[getattr(r, f) for f in _FIELDS] for r in records]})


def _decode(line: str) -> tuple[int, list[SecondRecord]]:
    item = json.loads(line)
    return item["session"], [_record(fields) for fields in item["records"]]


def _record(fields: list) -> SecondRecord:
    if len(fields) not in _LENGTHS:
        raise ValueError(f"a record of {len(fields)} fields")
    return SecondRecord(**dict(zip(_FIELDS, fields)))


class Journal:
    """Writes per-second records to ``store``, keeping those it cannot write yet in ``path``.

    Thread-safe. ``behind`` is the number of records waiting in the file, ``behind_since`` when
    the oldest of them was kept (None when nothing waits).
    """

    def __init__(self, store: Store, path: str | Path):
        self.store, self.path = store, Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.behind, self.behind_since, self.dropped = 0, None, 0
        if self.path.exists():
            batches = self._read()
            self.behind = sum(len(records) for _, records in batches)
            if self.behind:
                self.behind_since = self.path.stat().st_mtime
                log.warning("%d seconds from an earlier run wait in %s; writing them when the database answers",
                            self.behind, self.path)

    def write(self, session_id: int, records: list[SecondRecord]) -> None:
        """Store ``records`` now, or keep them in the file behind those already waiting."""
        with self._lock:
            if not self.behind and self._store(session_id, records):
                return
            self._append(session_id, records)

    def replay(self) -> bool:
        """Write the waiting batches in order; True when none is left."""
        with self._lock:
            if not self.behind:
                return True
            batches = self._read()
            done = 0
            for session_id, records in batches:
                if not self._store(session_id, records):
                    break
                done += 1
            if done == len(batches):
                self.path.unlink(missing_ok=True)
                self.behind, self.behind_since = 0, None
                log.warning("the database is back: every waiting second is stored")
                return True
            if done:
                rest = batches[done:]
                tmp = self.path.with_suffix(".tmp")
                with tmp.open("w") as f:
                    f.writelines(_encode(s, r) + "\n" for s, r in rest)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                self.behind = sum(len(r) for _, r in rest)
            return False

    def _store(self, session_id: int, records: list[SecondRecord]) -> bool:
        """Write to the database: False when it is unavailable (so keep the batch)."""
        try:
            self.store.add_seconds(session_id, records)
            return True
        except UNAVAILABLE as exc:
            if not self.behind:
                log.error("the database is unavailable (%s); keeping seconds in %s until it is back",
                          str(exc).splitlines()[0], self.path)
            return False
        except Exception as exc:  # e.g. the session was deleted meanwhile: it can never be written
            self.dropped += len(records)
            log.error("could not store %d seconds of session %d: %s", len(records), session_id, exc)
            return True

    def _append(self, session_id: int, records: list[SecondRecord]) -> None:
        with self.path.open("a") as f:
            f.write(_encode(session_id, records) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if not self.behind:
            self.behind_since = time.time()
        self.behind += len(records)

    def _read(self) -> list[tuple[int, list[SecondRecord]]]:
        batches = []
        with self.path.open() as f:
            for line in f:
                try:
                    batches.append(_decode(line))
                except (ValueError, KeyError, TypeError):  # a line cut short by a crash while appending
                    log.error("skipping a damaged line of %s", self.path)
        return batches
