"""Simulated lessons: what :class:`~moodlens.attention.ClassWatch` flags when calm students and
students whose faces change are stepped through a lesson second by second, as the live dashboard
steps real ones. ``scripts/class_odds.py`` draws the faces (FER2013 PublicTest, read through the
real detector and model) and counts how often a model meets the class signal's bars.
"""

from __future__ import annotations

import numpy as np

from moodlens.aggregate import SecondRecord
from moodlens.attention import ClassWatch, Rules


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
