"""From frames to per-second records: what each tracked face felt and where it looked in each
second of a video or live session, and how the whole group felt and attended."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moodlens.faces import NO_FACE, Frame
from moodlens.focus import FACING, ON_CAMERA, Focus, FocusRules


@dataclass
class SecondRecord:
    """One face over one second: mean scores of the frames it was judged in, and the dominant
    emotion (None when it was never judged in that second, e.g. too small); ``attention`` is the
    participant's attention state that second (:mod:`moodlens.focus`; None where not known);
    ``yaw``, ``pitch``, ``roll`` the mean head pose in degrees of the frames that had one
    (:mod:`moodlens.pose`; None when none had)."""

    second: int
    track_id: int | None
    emotion: str | None
    scores: dict[str, float]
    frames: int
    attention: str | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None

    def flat(self) -> dict:
        return {"second": self.second, "track_id": self.track_id, "emotion": self.emotion or "",
                "frames": self.frames, **{k: round(v, 4) for k, v in self.scores.items()},
                "attention": self.attention or "", **{k: "" if v is None else v for k, v in self.pose().items()}}

    def pose(self) -> dict[str, float | None]:
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}


# The columns of a timeline CSV after the classes' scores.
POSE_COLUMNS = ("attention", "yaw", "pitch", "roll")


class Timeline:
    """Collects frames and emits a :class:`SecondRecord` per face per whole second, with each
    track's attention state stepped once a second by a :class:`~moodlens.focus.Focus` (a second
    in which a track has no record does not step it: a video's tracks are only known while seen;
    a live participant's timeline gets a ``no_face`` face for each frame without one).

    >>> timeline = Timeline(classes)                 # doctest: +SKIP
    >>> for frame in recognizer.stream("lesson.mp4"):  # doctest: +SKIP
    ...     timeline.add(frame)
    >>> timeline.write("timeline.csv")               # doctest: +SKIP
    """

    def __init__(self, classes: tuple[str, ...], focus: FocusRules | None = None):
        self.classes = classes
        self.focus_rules = focus or FocusRules()
        self.records: list[SecondRecord] = []
        self._second: int | None = None
        self._sums: dict[int | None, np.ndarray] = {}
        self._frames: Counter = Counter()
        self._present: Counter = Counter()  # frames with a face in view, per track
        self._poses: dict[int | None, list[tuple[float, float, float]]] = defaultdict(list)
        self._focus: dict[int | None, Focus] = {}

    def add(self, frame: Frame) -> list[SecondRecord]:
        """Add a frame; returns the records of any second that this frame closed."""
        second = int(frame.time)
        done = self._close() if self._second is not None and second != self._second else []
        self._second = second
        for face in frame.faces:
            self._frames[face.track_id] += 1
            if face.status != NO_FACE:
                self._present[face.track_id] += 1
            if face.pose is not None:
                self._poses[face.track_id].append((face.pose.yaw, face.pose.pitch, face.pose.roll))
            if face.scores:
                p = np.array([face.scores[c] for c in self.classes])
                self._sums[face.track_id] = self._sums.get(face.track_id, 0) + p
        return done

    def flush(self) -> list[SecondRecord]:
        """Close the last, partial second."""
        return self._close() if self._second is not None else []

    def _close(self) -> list[SecondRecord]:
        records = []
        for track_id, frames in sorted(self._frames.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            poses = self._poses.get(track_id)
            yaw, pitch, roll = (round(float(v), 1) for v in np.mean(poses, axis=0)) if poses else (None, None, None)
            focus = self._focus.get(track_id) or self._focus.setdefault(track_id, Focus(self.focus_rules))
            attention = focus.step(self._present[track_id] > 0, yaw, pitch)
            total = self._sums.get(track_id)
            scores = dict(zip(self.classes, (total / total.sum()).tolist())) if total is not None else {}
            emotion = max(scores, key=scores.get) if scores else None
            records.append(SecondRecord(self._second, track_id, emotion, scores, frames, attention, yaw, pitch, roll))
        self.records.extend(records)
        self._sums, self._frames, self._present, self._second = {}, Counter(), Counter(), None
        self._poses = defaultdict(list)
        return records

    def write(self, path: str | Path) -> Path:
        """Write all records (see :func:`write_records`)."""
        self.flush()
        return write_records(path, self.records, self.classes)


def write_records(path: str | Path, records: Iterable[SecondRecord], classes: tuple[str, ...]) -> Path:
    """Write records as CSV (one row per face-second, a column per class) or JSON, chosen by the
    file's suffix."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"classes": list(classes), "seconds": [asdict(r) for r in records]}, indent=1))
        return path
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["second", "track_id", "emotion", "frames", *classes, *POSE_COLUMNS])
        writer.writeheader()
        for r in records:
            writer.writerow(r.flat())
    return path


def mood(records: Iterable[SecondRecord], classes: tuple[str, ...]) -> dict[str, float]:
    """Share of each emotion among the judged face-seconds (0 for all when none)."""
    counts = Counter(r.emotion for r in records if r.emotion)
    total = sum(counts.values())
    return {c: (counts[c] / total if total else 0.0) for c in classes}


def class_timeline(records: Iterable[SecondRecord],
                   classes: tuple[str, ...]) -> list[tuple[int, dict[str, float], int]]:
    """The class's mood second by second: ``(second, share of each emotion, faces judged)`` for
    every second that has a record, in order (shares as in :func:`mood`)."""
    by_second: dict[int, list[SecondRecord]] = defaultdict(list)
    for r in records:
        by_second[r.second].append(r)
    return [(s, mood(rs, classes), sum(1 for r in rs if r.emotion)) for s, rs in sorted(by_second.items())]


def attending(states: Mapping[str | None, int]) -> dict:
    """How much of the class faced the screen: ``states`` counts face-seconds by attention state
    (a :class:`~collections.Counter` of :attr:`SecondRecord.attention`); the share is of those
    with the camera on (facing, away or out of view), since a camera that is off says nothing
    about attention. ``{"facing", "on_camera", "share"}``, the share None when no camera was on.

    >>> attending(Counter(["facing", "facing", "away", None]))
    {'facing': 2, 'on_camera': 3, 'share': 0.6667}
    """
    on = sum(states.get(s, 0) for s in ON_CAMERA)
    facing = states.get(FACING, 0)
    return {"facing": facing, "on_camera": on, "share": round(facing / on, 4) if on else None}


# Emotions that, held for a while, suggest a student may need the teacher's attention.
NEGATIVE: tuple[str, ...] = ("angry", "fear", "sad")


def mood_drops(records: Iterable[SecondRecord], classes: tuple[str, ...], window_s: int = 30,
               drop: float = 0.25, positive: tuple[str, ...] = ("happy",),
               negative: tuple[str, ...] = NEGATIVE) -> list[int]:
    """The moments the class's mood dropped: seconds where the mean valence (share of ``positive``
    minus share of ``negative`` emotions among the judged faces, -1..1) over the next ``window_s``
    seconds is at least ``drop`` below its mean over the previous ``window_s`` seconds. Each
    stretch of such seconds gives one moment, the second of the steepest fall.

    >>> happy = [SecondRecord(s, 1, "happy", {}, 5) for s in range(40)]
    >>> sad = [SecondRecord(s, 1, "sad", {}, 5) for s in range(40, 80)]
    >>> mood_drops(happy + sad, ("happy", "sad"), window_s=10)
    [40]
    """
    valence = {s: sum(shares[c] for c in positive if c in shares) - sum(shares[c] for c in negative if c in shares)
               for s, shares, judged in class_timeline(records, classes) if judged}
    half = max(1, window_s // 2)  # a window must hold at least half its seconds to count
    falls: dict[int, float] = {}
    for s in sorted(valence):
        before = [valence[t] for t in range(s - window_s, s) if t in valence]
        after = [valence[t] for t in range(s, s + window_s) if t in valence]
        if len(before) >= half and len(after) >= half:
            change = sum(after) / len(after) - sum(before) / len(before)
            if change <= -drop:
                falls[s] = change
    moments: list[int] = []
    stretch: list[int] = []
    for s in sorted(falls):
        if stretch and s - stretch[-1] > window_s:
            moments.append(min(stretch, key=falls.get))
            stretch = []
        stretch.append(s)
    if stretch:
        moments.append(min(stretch, key=falls.get))
    return moments
