"""Emotion class names and class-subset selection.

The seven FER2013 classes, in FER2013's label order, are the canonical names used everywhere
(datasets, models, CLI, web). FER+ adds ``contempt`` as an eighth class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from moodlens.errors import MoodLensError

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_CLASSES: tuple[str, ...] = (*FER2013_CLASSES, "contempt")


class ClassNameError(MoodLensError):
    """A class name that is not one of the known emotion classes."""


def resolve_classes(names: str | Iterable[str] | None, universe: Sequence[str] = FER2013_CLASSES) -> tuple[str, ...]:
    """Validate a class subset and return it in the universe's canonical order.

    ``names`` may be a comma-separated string (as typed on the command line), a list, or None
    for the whole universe.

    >>> resolve_classes("sad,happy,angry,neutral")
    ('angry', 'happy', 'sad', 'neutral')
    """
    if names is None:
        return tuple(universe)
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    wanted = [n.strip().lower() for n in names]
    unknown = [n for n in wanted if n not in universe]
    if unknown:
        raise ClassNameError(f"unknown class name {unknown[0]!r}; expected some of: {', '.join(universe)}")
    if len(set(wanted)) < 2:
        raise ClassNameError("a class set needs at least two different classes")
    return tuple(c for c in universe if c in wanted)
