"""Exports: a session with its participants and seconds as JSON or as CSV for a spreadsheet.

An attention-only session (``Session.emotions`` False) is exported without any emotion: no
emotion, no scores, no class columns."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from moodlens.aggregate import POSE_COLUMNS

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
                "seconds": [_json_second(session, r) for r in self.seconds(session_id)]}

    def export_csv(self, session_id: int) -> str | None:
        """One row per participant-second: second, its wall-clock time, participant, emotion,
        frames, a column per class, attention, yaw, pitch, roll."""
        session = self.get_session(session_id)
        if session is None:
            return None
        names = {p.id: p.name for p in self.participants(session_id)}
        emotion, classes = (["emotion"], session.classes) if session.emotions else ([], ())
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["second", "time", "participant_id", "participant", *emotion, "frames", *classes, *POSE_COLUMNS])
        for r in self.seconds(session_id):
            writer.writerow(_csv_row(session, r, names.get(r.track_id, ""), classes))
        return out.getvalue()


def _csv_row(session: Session, r: SecondRecord, name: str, classes: tuple[str, ...]) -> list:
    emotion = [r.emotion or ""] if session.emotions else []
    return [r.second, session.wall_clock(r.second), r.track_id, spreadsheet_text(name), *emotion, r.frames,
            *(r.scores.get(c, "") for c in classes), r.attention or "", *("" if v is None else v for v in r.pose().values())]


def _json_second(session: Session, r: SecondRecord) -> dict:
    emotion = {"emotion": r.emotion} if session.emotions else {}
    scores = {"scores": r.scores} if session.emotions else {}
    return {"second": r.second, "time": session.wall_clock(r.second), "participant_id": r.track_id, **emotion,
            "frames": r.frames, **scores, "attention": r.attention, **r.pose()}


def spreadsheet_text(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection rule)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
