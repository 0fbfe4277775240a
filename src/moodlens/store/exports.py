"""Exports: a session with its participants and seconds as JSON or as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moodlens.aggregate import SecondRecord
    from moodlens.store.records import Participant, Session


class ExportsPart:
    """The part of :class:`~moodlens.store.Store` that writes a session out; it reads through
    the other parts' methods, so an export sees what they see."""

    if TYPE_CHECKING:  # supplied by SessionsPart, ParticipantsPart and SecondsPart; stubs here would hide them
        def get_session(self, session_id: int) -> Session | None: ...
        def participants(self, session_id: int) -> list[Participant]: ...
        def seconds(self, session_id: int, participant_id: int | None = None) -> list[SecondRecord]: ...

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


def _no_formula(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection rule)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
