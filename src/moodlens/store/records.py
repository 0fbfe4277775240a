"""What the store hands out: sessions and participants as records, and the text rules for what
people type (titles, names, join tokens)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime

# Who the teacher sees in a class session (web/privacy.py): each student, or only the class.
PER_STUDENT, CLASS_ONLY = "per_student", "class_only"
PRIVACY_MODES = (PER_STUDENT, CLASS_ONLY)


@dataclass
class Session:
    """A class session, or a video upload's analysis; ``ended_at`` is None while it is open.

    ``emotions`` False makes it attention-only: no emotion is stored for it (the store drops any
    it is given), and :meth:`to_dict` leaves the emotion classes out. ``classes`` stays, as the
    model's, for the code that builds its timelines.
    """

    id: int
    code: str
    title: str
    kind: str
    classes: tuple[str, ...]
    started_at: float
    ended_at: float | None = None
    privacy: str = PER_STUDENT
    emotions: bool = True

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def wall_clock(self, second: float) -> str:
        """A second of the session as local wall-clock time, ISO 8601 with the UTC offset."""
        return datetime.fromtimestamp(self.started_at + second).astimezone().isoformat(timespec="seconds")

    def to_dict(self) -> dict:
        out = {**asdict(self), "classes": list(self.classes), "open": self.open}
        if not self.emotions:
            del out["classes"]
        return out

    @classmethod
    def from_row(cls, row) -> Session:
        return cls(row.id, row.code, row.title, row.kind, tuple(json.loads(row.classes)), row.started_at, row.ended_at,
                   row.privacy, row.emotions)


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

    @classmethod
    def from_row(cls, row) -> Participant:
        return cls(row.id, row.session_id, row.name, row.source, row.joined_at)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def safe_text(value: str, limit: int) -> str:
    """A one-line name or title any database stores: control characters (NUL among them, which
    PostgreSQL refuses) become spaces, lone UTF-16 surrogates (which UTF-8 cannot encode) become
    U+FFFD, runs of spaces one space; at most ``limit`` characters."""
    value = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", str(value)))
    return re.sub(r"\s+", " ", value).strip()[:limit]
