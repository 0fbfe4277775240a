"""Is a participant facing the lesson? One attention state per participant per second.

The state comes from where the head points (:mod:`moodlens.pose`) and whether a face is in view
at all, never from the expression, so it can be kept in a session where no emotion is read.

- ``facing``: a face in view, turned towards the screen.
- ``away``: the head has pointed off the screen for ``away_after_s`` seconds in a row: turned
  more than ``max_yaw`` degrees to a side, or pitched down more than ``max_down`` (a phone on the
  lap, a book on the desk). Looking up is not counted: people look up to think.
- ``no_face``: the camera sends frames but no face has been in them for ``gone_after_s`` seconds.
- ``camera_off``: no frames at all that second (paused or stopped); never decided here, a second
  without a record is one.

A glance at notes is not "away": the state changes only after several off-screen seconds in a
row, and goes back to ``facing`` after ``back_after_s`` facing seconds, so it does not flicker.
A second whose face has no pose (a detector without landmarks, a face turned too far for the
five points) keeps the state it had, except that it counts as a face back in view. Everything
is causal, second by second, so a live session and the review of its stored seconds agree.

    >>> focus = Focus()
    >>> [focus.step(True, yaw, 0.0) for yaw in (0, 50, 50, 50, 50, 50, 0, 0)]
    ['facing', 'facing', 'facing', 'facing', 'facing', 'away', 'away', 'facing']
"""

from __future__ import annotations

from dataclasses import dataclass

FACING, AWAY, NO_FACE, CAMERA_OFF = "facing", "away", "no_face", "camera_off"
STATES = (FACING, AWAY, NO_FACE, CAMERA_OFF)
ON_CAMERA = (FACING, AWAY, NO_FACE)  # the states of a participant whose camera sends frames


@dataclass(frozen=True)
class FocusRules:
    """The thresholds, in degrees and seconds (see the module's docstring)."""

    max_yaw: float = 30.0
    max_down: float = 25.0
    away_after_s: int = 5
    gone_after_s: int = 5
    back_after_s: int = 2


def off_screen(yaw: float, pitch: float, rules: FocusRules = FocusRules()) -> bool:
    """Whether a head pose points away from the screen (pitch < 0 is looking down)."""
    return abs(yaw) > rules.max_yaw or pitch < -rules.max_down


class Focus:
    """One participant's attention state, stepped once per second."""

    def __init__(self, rules: FocusRules | None = None):
        self.rules = rules or FocusRules()
        self.state = FACING
        self._evidence: str | None = None  # what the last seconds in a row showed
        self._run = 0  # how many seconds in a row showed it

    def step(self, face: bool, yaw: float | None = None, pitch: float | None = None) -> str:
        """The state for a second in which a face was (``face``) or was not in view, with the
        second's head pose when known."""
        if not face:
            seen = NO_FACE
        elif yaw is None or pitch is None:
            if self.state != NO_FACE:
                return self.state  # in view, direction unknown: no evidence of looking away or back
            seen = FACING  # but a face in view is back, whichever way it points
        else:
            seen = AWAY if off_screen(yaw, pitch, self.rules) else FACING
        self._run = self._run + 1 if seen == self._evidence else 1
        self._evidence = seen
        needed = {AWAY: self.rules.away_after_s, NO_FACE: self.rules.gone_after_s, FACING: self.rules.back_after_s}
        if seen != self.state and self._run >= needed[seen]:
            self.state = seen
        return self.state
