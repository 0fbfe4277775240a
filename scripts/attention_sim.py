"""A simulated attention-only class: is every long look-away and absence flagged, once, and no
glance at the notes, brief turn or missed detection?

    python scripts/attention_sim.py                          # 30 students, a 20-minute lesson
    python scripts/attention_sim.py --students 50 --seed 3

Each student faces the screen with a few degrees of jitter, glances down at notes (pitch -40
degrees for 2-6 s) every 20-60 s, and now and then turns away briefly (yaw +-50 for 3-20 s) or
leaves the camera briefly (5-30 s). A third of them also look away for long (turned +-55 degrees
or down at a phone, 50-150 s) and a third leave the camera for long (70-180 s). Frames are the
generic face at those poses with landmark noise and 5 % missed detections, read by the real
pose estimate, :class:`~moodlens.focus.Focus` and :class:`~moodlens.attention.ClassWatch`
(:func:`moodlens.simulate.attention_lesson`).

Bars (exit 1 when one fails): every long episode flagged with its reason, exactly once; no flag
outside the long episodes. A long episode is one at least ``looking_away_s`` (``not_in_view_s``)
plus the state's own delay (``away_after_s``, ``gone_after_s``) long; episodes between the brief
and the long ones are not drawn, as either answer is right for them.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from moodlens.attention import LOOKING_AWAY, NOT_IN_VIEW, Rules
from moodlens.focus import FocusRules
from moodlens.simulate import Episode, attention_lesson


def student(rng: np.random.Generator, seconds: int, long_away: bool, long_gone: bool) -> tuple[list[Episode], list]:
    """A student's episodes, and the long ones as (reason, start, end)."""
    episodes, long = [], []
    if long_away:
        length = int(rng.integers(50, 151))
        start = int(rng.integers(60, seconds // 2 - length))
        yaw, pitch = (float(rng.choice([-55, 55])), 0.0) if rng.random() < 0.5 else (0.0, -45.0)
        episodes.append(Episode(start, length, yaw, pitch))
        long.append((LOOKING_AWAY, start, start + length - 1))
    if long_gone:
        length = int(rng.integers(70, 181))
        start = int(rng.integers(seconds // 2 + 30, seconds - length - 30))
        episodes.append(Episode(start, length, None))
        long.append((NOT_IN_VIEW, start, start + length - 1))
    s = int(rng.integers(5, 30))
    while s < seconds - 30:
        kind = rng.random()
        if kind < 0.6:
            brief = Episode(s, int(rng.integers(2, 7)), float(rng.normal(0, 5)), -40.0)  # the notes on the desk
        elif kind < 0.85:
            brief = Episode(s, int(rng.integers(3, 21)), float(rng.choice([-50, 50])), 0.0)
        else:
            brief = Episode(s, int(rng.integers(5, 31)), None)
        if not any(e.start - 10 <= s + brief.seconds and s <= e.start + e.seconds + 10 for e in episodes):
            episodes.append(brief)
        s += brief.seconds + int(rng.integers(20, 61))
    return sorted(episodes, key=lambda e: e.start), long


def judge(flags: list, long: list, rules: Rules, focus: FocusRules) -> dict:
    caught, repeated, missed = 0, 0, 0
    matched = set()
    for reason, start, end in long:
        hits = [f for f in flags if f.reason == reason and f.start <= end and (f.end is None or f.end >= start)]
        matched.update(id(f) for f in hits)
        if hits:
            caught += 1
            repeated += len(hits) > 1
        else:
            missed += 1
    return {"caught": caught, "missed": missed, "repeated": repeated,
            "false": sum(id(f) not in matched for f in flags),
            "delays": [min(f.start for f in flags if id(f) in matched and f.reason == reason and f.start <= end) - start
                       for reason, start, end in long if any(id(f) in matched and f.reason == reason for f in flags)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=1200, help="lesson length (default: 1200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-px", type=float, default=1.5, help="landmark noise, eyes ~60 px apart (default: 1.5)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rules, focus = Rules(), FocusRules()
    drawn = [student(rng, args.seconds, i % 3 == 0, i % 3 == 1) for i in range(args.students)]
    flags = attention_lesson([episodes for episodes, _ in drawn], args.seconds, rng, noise_px=args.noise_px,
                             rules=rules, focus=focus)
    results = [judge(f, long, rules, focus) for f, (_, long) in zip(flags, drawn)]
    total = {k: sum(r[k] for r in results) for k in ("caught", "missed", "repeated", "false")}
    delays = [d for r in results for d in r["delays"]]
    brief = sum(len(episodes) - len(long) for episodes, long in drawn)
    spread = {"min": min(delays), "median": float(np.median(delays)), "max": max(delays)} if delays else None
    report = {**total, "long_episodes": sum(len(long) for _, long in drawn), "brief_episodes": brief,
              "flag_delay_s": spread}
    print(json.dumps(report))
    sys.exit(0 if total["missed"] == total["repeated"] == total["false"] == 0 else 1)


if __name__ == "__main__":
    main()
