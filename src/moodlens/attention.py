""""May need attention": each participant judged against their own usual expression and the class.

The emotion model reads some resting faces as sad, angry or afraid all lesson long. Flagging the
emotion itself would flag those people forever; what a teacher wants to know is who *changed*.
So each participant gets a personal baseline, the median of their own per-second scores over the
seconds that looked usual, learned during the lesson and kept learning (a first minute that was
unusual is outvoted later). A second's deviation is how much the odds of the negative classes
rose over the baseline's, in log-odds, less what the whole class moved at that second (a sad
film clip moves everyone; that is the class mood, not one student's state). It is measured on
four readings: angry, fear and sad together, and each of them alone, since a resting face the
model reads as a little sad that turns angry may hold the same negative total while its anger
rose sevenfold; the teacher is told "angrier than usual". Log-odds, because probabilities
saturate: a resting face the model already reads as 75 % negative can only gain 20 points when
the person is clearly upset, yet its odds grow sevenfold. A rise must also be worth
``min_points`` of probability, so a face read at 5 % negative does not count as changed at 12 %.

Flags have hysteresis: one is raised when most seconds of a short window are clearly above the
usual, and cleared only when most of them are back near it. A second without a record yet is
unknown and changes nothing; a participant who sent nothing for ``gap_s`` seconds has left, which
ends their flags at the last second seen. Everything is computed causally, second by second, in
one :class:`ClassWatch`, so the live dashboard (fed seconds as they close) and the stored review
(fed the stored seconds) raise the same flags.

Attention has flags of its own, from each second's attention state (:mod:`moodlens.focus`) and
never from the expression: "looking away" after ``looking_away_s`` seconds in the ``away``
state, "not in view" after ``not_in_view_s`` seconds with the camera on and no face. A session
that reads no emotion (``emotions=False``) raises only these.

    >>> watch = ClassWatch(classes)                        # doctest: +SKIP
    >>> for second in range(end):                          # doctest: +SKIP
    ...     watch.step(second, records_by_participant.get(second, {}))
    >>> watch.flags(participant_id)                        # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from moodlens import focus
from moodlens.aggregate import NEGATIVE, SecondRecord
from moodlens.faces import NO_FACE

# Flags from the attention state (moodlens.focus), raised without reading any emotion.
LOOKING_AWAY, NOT_IN_VIEW = "looking_away", "not_in_view"
# how a flag reads for each reason: "sadder than usual for 40 s"
WORDING = {"sad": "sadder than usual", "fear": "more fearful than usual", "angry": "angrier than usual",
           NO_FACE: "no readable face", LOOKING_AWAY: "looking away", NOT_IN_VIEW: "not in view"}


@dataclass(frozen=True)
class Rules:
    """The thresholds. Deviations are in log-odds of the negative classes, together or one alone
    (1.0: odds e times the usual); ``min_points`` and ``away`` are shares of probability. A second
    is above the usual when any of the four readings is, and back when all of them are.

    Attributes:
        learn_s: readable seconds before a participant's baseline is used (no emotion flags before).
        history_s: the baseline is the median of at most this many recent usual seconds
            (recomputed every 5 seconds learnt for the first 120, then every 30).
        window_s: the evidence window, in readable seconds.
        raise_n: seconds of the window above ``rise`` that raise a flag.
        clear_n: seconds of the window below ``fall`` that clear it.
        rise, fall: deviation thresholds (``fall < rise``: the hysteresis band).
        noise: ``rise`` grows to this many robust standard deviations of the participant's own
            usual seconds (reading by reading), so a jittery reading needs a bigger change.
        min_points: a second above ``rise`` must also hold this much more negative probability
            than usual (and counts as back below ``min_points / 2``).
        away: a second is "away from the usual" when its scores differ from the baseline's by
            more than this (total variation).
        absent_s: unreadable seconds in a row (camera on, no face read) that raise "no readable face".
        back_s: readable seconds in a row that clear it.
        gap_s: seconds without any record after which a participant has left.
        class_min: participants with a baseline needed before the class's shift is taken out.
        looking_away_s: seconds in the ``away`` attention state that raise "looking away".
        not_in_view_s: seconds in the ``no_face`` attention state that raise "not in view".
    """

    learn_s: int = 20
    history_s: int = 600
    window_s: int = 10
    raise_n: int = 6
    clear_n: int = 7
    rise: float = 1.0
    fall: float = 0.5
    noise: float = 3.0
    min_points: float = 0.1
    away: float = 0.2
    absent_s: int = 10
    back_s: int = 3
    gap_s: int = 5
    class_min: int = 5
    looking_away_s: int = 40
    not_in_view_s: int = 60


def negative_odds(p: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """The log-odds of the negative classes together, then of each alone."""
    q = np.clip(np.r_[p[negative].sum(), p[negative]], 0.005, 0.995)  # 0 or 1 is not infinitely sure
    return np.log(q / (1 - q))


@dataclass
class Flag:
    """Seconds ``start``..``end`` (inclusive) in which a participant looked notably more
    ``reason`` than usual (a negative class), or showed no readable face (``no_face``);
    ``end`` is None while the flag is still up."""

    reason: str
    start: int
    end: int | None = None

    def seconds(self, now: int | None = None) -> int:
        last = self.end if self.end is not None else now
        return (last if last is not None else self.start) - self.start + 1

    def text(self, now: int | None = None) -> str:
        return f"{WORDING.get(self.reason, self.reason)} for {self.seconds(now)} s"

    def to_dict(self, now: int | None = None) -> dict:
        return {"reason": self.reason, "start": self.start, "end": self.end, "ongoing": self.end is None,
                "seconds": self.seconds(now), "text": self.text(now)}


@dataclass
class Watch:
    """One participant's baseline, evidence and flags (see :class:`ClassWatch`)."""

    rules: Rules
    usual: deque = field(default_factory=deque)  # score vectors of usual seconds
    usual_odds: deque = field(default_factory=deque)  # their negative log-odds (:func:`negative_odds`)
    learnt: int = 0  # seconds learnt from so far
    baseline: np.ndarray | None = None  # the median usual scores
    base_odds: np.ndarray | float = 0.0  # the median usual negative log-odds
    threshold: np.ndarray | float = 0.0  # the rise that counts, reading by reading
    evidence: deque = field(default_factory=deque)  # (second, +1 above / -1 back below / 0 between)
    pushes: deque = field(default_factory=deque)  # (second, per-negative-class excess) of the +1 seconds
    flag: Flag | None = None  # the emotion flag now up
    blank: Flag | None = None  # a run of unreadable seconds (a flag once ``blank_raised``)
    blank_raised: bool = False
    readable_run: int = 0
    unreadable_run: int = 0
    last_seen: int | None = None
    left_at: int | None = None
    done: list[Flag] = field(default_factory=list)
    away: int = 0  # readable seconds that differed notably from the usual
    last_deviation: float = 0.0  # the largest of the four rises, last readable second
    last_vote: int = -1  # that second: 1 above the usual, -1 back, 0 between
    gaze: Flag | None = None  # the run of seconds away or out of view now (a flag once long enough)

    def __post_init__(self) -> None:
        self.usual = deque(maxlen=self.rules.history_s)
        self.usual_odds = deque(maxlen=self.rules.history_s)
        self.evidence = deque(maxlen=self.rules.window_s)
        self.pushes = deque(maxlen=self.rules.window_s)

    def learn(self, p: np.ndarray, odds: np.ndarray) -> None:
        self.usual.append(p)
        self.usual_odds.append(odds)
        self.learnt += 1
        # Medians over up to 600 seconds are recomputed every 5 learnt seconds for the first two
        # minutes, then every 30 (a class of 50 over an hour is 180,000 steps); counted, not
        # measured by the history's length, which stops growing once full.
        every = 5 if self.learnt <= 120 else 30
        if self.learnt >= self.rules.learn_s and (self.baseline is None or self.learnt % every == 0):
            self.baseline = np.median(np.stack(self.usual), axis=0)
            odds = np.stack(self.usual_odds)
            self.base_odds = np.median(odds, axis=0)
            mad = np.median(np.abs(odds - self.base_odds), axis=0)
            self.threshold = np.maximum(self.rules.rise, self.rules.noise * 1.4826 * mad)

    def step(self, second: int, p: np.ndarray | None, odds: np.ndarray | None, deviation: np.ndarray | None,
             classes_negative: Sequence[str], negative: np.ndarray) -> None:
        """One second: ``p`` the scores (None: a record without a readable face), ``odds`` their
        negative log-odds, ``deviation`` their rise over the baseline with the class's shift taken
        out (None while learning)."""
        r = self.rules
        self.last_seen, self.left_at = second, None
        if p is None:
            self.readable_run = 0
            self.unreadable_run += 1
            if self.blank is None:
                self.blank = Flag(NO_FACE, second)
            if not self.blank_raised and self.unreadable_run >= r.absent_s:
                self.blank_raised = True
            return
        self.unreadable_run = 0
        self.readable_run += 1
        if self.blank is not None and (self.readable_run >= r.back_s or not self.blank_raised):
            if self.blank_raised:
                self.blank.end = second - self.readable_run
                self.done.append(self.blank)
            self.blank, self.blank_raised = None, False
        if deviation is None:  # still learning this face
            self.learn(p, odds)
            return
        excess = p[negative] - self.baseline[negative]
        points = np.r_[excess.sum(), excess]
        self.last_deviation = float(deviation.max())
        self.away += bool(0.5 * np.abs(p - self.baseline).sum() > r.away)
        above = (deviation > self.threshold) & (points > r.min_points)
        back = (deviation < r.fall) | (points < r.min_points / 2)
        vote = self.last_vote = 1 if above.any() else -1 if back.all() else 0
        self.evidence.append((second, vote))
        if vote > 0:
            self.pushes.append((second, excess))
        if self.flag is None:
            highs = [s for s, v in self.evidence if v > 0]
            if len(highs) >= r.raise_n:
                pushes = [e for s, e in self.pushes if s >= highs[0]]
                self.flag = Flag(classes_negative[int(np.argmax(np.sum(pushes, axis=0)))], highs[0])
        elif sum(v < 0 for _, v in self.evidence) >= r.clear_n:
            self.flag.end = max((s for s, v in self.evidence if v > 0), default=self.flag.start)
            self.done.append(self.flag)
            self.flag = None
            self.evidence.clear()
        if self.flag is None:
            # Seconds under a flag do not teach it, so a long change is not learnt as the new
            # normal; all others do, the jittery ones included, or the usual would look steadier
            # than it is and its noise would be flagged.
            self.learn(p, odds)

    def attend(self, second: int, state: str | None) -> None:
        """One second's attention state (None: not known, e.g. a session stored before there was
        one): a run of ``away`` or ``no_face`` seconds becomes a flag once it is long enough, and
        ends at its last second when the state changes."""
        reason = {focus.AWAY: LOOKING_AWAY, focus.NO_FACE: NOT_IN_VIEW}.get(state)
        if state is None or (self.gaze is not None and self.gaze.reason == reason):
            return
        if self.gaze is not None and self._gaze_raised(second - 1):
            self.gaze.end = second - 1
            self.done.append(self.gaze)
        self.gaze = Flag(reason, second) if reason else None

    def _gaze_raised(self, now: int | None) -> bool:
        if self.gaze is None:
            return False
        needed = self.rules.looking_away_s if self.gaze.reason == LOOKING_AWAY else self.rules.not_in_view_s
        return now is not None and self.gaze.seconds(now) >= needed

    def leave(self) -> None:
        """Gone for ``gap_s`` seconds: flags end at the last second seen."""
        if self.flag is not None:
            self.flag.end = self.last_seen
            self.done.append(self.flag)
        if self._gaze_raised(self.last_seen):
            self.gaze.end = self.last_seen
            self.done.append(self.gaze)
        self.gaze = None
        if self.blank is not None and self.blank_raised:
            self.blank.end = self.last_seen
            self.done.append(self.blank)
        self.flag, self.blank, self.blank_raised = None, None, False
        self.evidence.clear()
        self.pushes.clear()
        self.readable_run = self.unreadable_run = 0
        self.left_at = self.last_seen

    def flags(self) -> list[Flag]:
        """Every flag so far, in time order; those still up have ``end`` None."""
        up = [f for f in (self.flag, self.blank if self.blank_raised else None,
                          self.gaze if self._gaze_raised(self.last_seen) else None) if f is not None]
        return sorted(self.done + up, key=lambda f: f.start)

    def usual_emotion(self, classes: Sequence[str]) -> str | None:
        return None if self.baseline is None else classes[int(np.argmax(self.baseline))]


class ClassWatch:
    """The whole class, second by second: each participant's :class:`Watch`, and the class's
    shift (the median deviation of those with a baseline) that is taken out of each.

    Args:
        classes: the model's classes, in the order of the scores.
        rules: thresholds (:class:`Rules`).
        emotions: False for a session where no emotion is read (attention only): only the
            attention flags are raised, and a face without scores is not "unreadable".
    """

    def __init__(self, classes: Sequence[str], rules: Rules | None = None, emotions: bool = True):
        self.classes = tuple(classes)
        self.rules = rules or Rules()
        self.emotions = emotions
        self.negative_names = tuple(c for c in NEGATIVE if c in self.classes)
        self.negative = np.array([self.classes.index(c) for c in self.negative_names], dtype=int)
        self.watches: dict[int, Watch] = {}
        self.second: int | None = None  # the last second stepped
        self.shifts: dict[int, float] = {}  # second -> the class's median deviation (for the report)

    def watch(self, participant: int) -> Watch:
        w = self.watches.get(participant)
        if w is None:
            w = self.watches[participant] = Watch(self.rules)
        return w

    def step(self, second: int, records: dict[int, SecondRecord]) -> None:
        """Take one second: ``records`` maps participant id -> that second's record (missing
        participants are unknown for now, and leave after ``gap_s`` such seconds)."""
        scores = {pid: (np.array([r.scores.get(c, 0.0) for c in self.classes]) if r.emotion else None)
                  for pid, r in records.items()}
        odds = {pid: negative_odds(p, self.negative) for pid, p in scores.items() if p is not None}
        rises = {pid: o - self.watch(pid).base_odds for pid, o in odds.items() if self.watch(pid).baseline is not None}
        shift = np.median(np.stack(list(rises.values())), axis=0) if rises else 0.0
        if rises:
            self.shifts[second] = float(shift[0])  # the negative classes together, for the report
        # too few faces and the median is one student's own change, not the class's
        shift = np.maximum(0.0, shift) if len(rises) >= self.rules.class_min else 0.0
        for pid, p in scores.items():
            w = self.watch(pid)
            if self.emotions:
                deviation = rises[pid] - shift if pid in rises else None
                w.step(second, p, odds.get(pid), deviation, self.negative_names, self.negative)
            else:
                w.last_seen, w.left_at = second, None
            w.attend(second, records[pid].attention)
        for pid, w in self.watches.items():
            if pid not in records and w.left_at is None and w.last_seen is not None \
                    and second - w.last_seen >= self.rules.gap_s:
                w.leave()
        self.second = second

    def run(self, records: Iterable[SecondRecord], until: int | None = None) -> ClassWatch:
        """Step through stored records (any order) from the first second to ``until``
        (default the last record's second)."""
        by_second: dict[int, dict[int, SecondRecord]] = {}
        for r in records:
            by_second.setdefault(r.second, {})[r.track_id] = r
        if by_second:
            start = min(by_second) if self.second is None else self.second + 1
            end = max(by_second) if until is None else until
            for second in range(start, end + 1):
                self.step(second, by_second.get(second, {}))
        return self

    def finish(self) -> ClassWatch:
        """The end of the lesson: flags still up end at each participant's last second."""
        for w in self.watches.values():
            if w.left_at is None and w.last_seen is not None:
                w.leave()
        return self

    def flags(self, participant: int) -> list[Flag]:
        w = self.watches.get(participant)
        return w.flags() if w else []
