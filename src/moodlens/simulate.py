"""Simulated lessons: what :class:`~moodlens.attention.ClassWatch` flags when calm students and
students whose faces change are stepped through a lesson second by second, as the live dashboard
steps real ones. ``scripts/class_odds.py`` draws the faces (FER2013 PublicTest, read through the
real detector and model) and counts how often a model meets the class signal's bars;
:func:`attention_lesson` does the same for heads that turn away or leave the camera
(``scripts/attention_sim.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moodlens.aggregate import SecondRecord, Timeline
from moodlens.attention import ClassWatch, Flag, Rules
from moodlens.faces import NO_FACE, Face, Frame
from moodlens.focus import FocusRules
from moodlens.pose import estimate_pose, project


def face_seconds(variants: list[np.ndarray | None], classes: tuple[str, ...]) -> list[dict]:
    """The scores stored for a face's even and odd seconds ({} when no frame had a face): the 4
    variants are sent in turn at 2 frames/s, so second s holds variants (2s) % 4 and (2s+1) % 4."""
    seconds = []
    for pair in (variants[:2], variants[2:]):
        seen = [p for p in pair if p is not None]
        seconds.append(dict(zip(classes, np.mean(seen, axis=0).tolist())) if seen else {})
    return seconds


def lesson(calm: list, changed: dict[int, list], classes: tuple[str, ...], seconds: int, change_at: int,
           within: int, rules: Rules | None = None) -> dict:
    """One simulated lesson: ``calm[i]`` is student i's calm face, ``changed[i]`` the negative face
    a changer shows from ``change_at``, each as :func:`face_seconds`."""
    watch = ClassWatch(classes, rules)
    raised: dict[int, int] = {}
    blinked: set[int] = set()
    calm_flagged: set[int] = set()
    for s in range(seconds):
        records = {}
        for i, face in enumerate(calm):
            scores = (changed[i] if i in changed and s >= change_at else face)[s % 2]
            records[i] = SecondRecord(s, i, max(scores, key=scores.get) if scores else None, scores, 2)
        watch.step(s, records)
        for i in range(len(calm)):
            up = bool([f for f in watch.flags(i) if f.end is None])
            if up and (i not in changed or s < change_at):
                calm_flagged.add(i)
            elif i in changed and s >= change_at:
                if up and i not in raised:
                    raised[i] = s
                elif not up and i in raised:
                    blinked.add(i)
    watch.finish()
    for i in range(len(calm)):  # the stored review: any flag that started while calm
        if any(i not in changed or f.start < change_at for f in watch.flags(i)):
            calm_flagged.add(i)
    caught = [i for i, s in raised.items() if s - change_at <= within]
    return {"caught": len(caught), "calm_flagged": len(calm_flagged), "blinked": len(blinked),
            "delays": [raised[i] - change_at for i in caught]}


@dataclass(frozen=True)
class Episode:
    """A stretch of a simulated student's lesson: from ``start`` for ``seconds``, the head turned
    to ``yaw``/``pitch`` degrees, or (``yaw`` None) nobody in view."""

    start: int
    seconds: int
    yaw: float | None = 0.0
    pitch: float = 0.0


def attention_lesson(students: list[list[Episode]], seconds: int, rng: np.random.Generator, fps: int = 2,
                     noise_px: float = 1.5, miss: float = 0.05, rules: Rules | None = None,
                     focus: FocusRules | None = None) -> list[list[Flag]]:
    """Step an attention-only class through a lesson, frame by frame as the live path does: each
    frame's face is the generic face at the episode's pose with ``noise_px`` of landmark noise
    (eyes about 60 px apart), read by :func:`~moodlens.pose.estimate_pose`; a share ``miss`` of
    frames has no face (a missed detection, a hand in front); between episodes the student faces
    the screen with a few degrees of jitter. Returns each student's flags."""
    watch = ClassWatch((), rules, emotions=False)
    timelines = [Timeline((), focus) for _ in students]
    for s in range(seconds):
        records = {}
        for i, (episodes, timeline) in enumerate(zip(students, timelines)):
            now = next((e for e in episodes if e.start <= s < e.start + e.seconds), None)
            for k in range(fps):
                yaw, pitch = (0.0, 0.0) if now is None else (now.yaw, now.pitch)
                if yaw is None or rng.random() < miss:
                    face = Face((0, 0, 0, 0), status=NO_FACE)
                else:
                    marks = project(yaw + rng.normal(0, 4), pitch + rng.normal(0, 4), rng.normal(0, 3), (320, 240), 640)
                    marks += rng.normal(0, noise_px, marks.shape)
                    face = Face((280, 190, 80, 100), landmarks=marks, pose=estimate_pose(marks, 640))
                face.track_id = i
                for record in timeline.add(Frame([face], time=s + k / fps)):
                    records[i] = record
        watch.step(s, records)
    watch.finish()
    return [watch.flags(i) for i in range(len(students))]
