"""The attention state machine on scripted seconds: glances are not "away", flicker is damped,
a face with no pose keeps the state, and the thresholds are the documented ones."""

from __future__ import annotations

import pytest

from moodlens.focus import AWAY, FACING, NO_FACE, Focus, FocusRules, off_screen

AHEAD, TURNED, DOWN, UP = (0.0, 0.0), (45.0, 0.0), (0.0, -40.0), (0.0, 35.0)
GONE, UNKNOWN = "gone", "unknown"


def run(seconds, rules=None) -> list[str]:
    focus = Focus(rules)
    out = []
    for s in seconds:
        if s == GONE:
            out.append(focus.step(False))
        elif s == UNKNOWN:
            out.append(focus.step(True, None, None))
        else:
            out.append(focus.step(True, *s))
    return out


@pytest.mark.parametrize("pose, off", [((0, 0), False), ((29, 0), False), ((31, 0), True), ((-31, 0), True),
                                       ((0, -24), False), ((0, -26), True), ((0, 60), False)])
def test_off_screen_is_a_turned_or_lowered_head(pose, off):
    assert off_screen(*pose) is off


def test_a_glance_at_notes_is_not_away_but_five_seconds_are():
    assert AWAY not in run([AHEAD] * 3 + [DOWN] * 4 + [AHEAD] * 5)
    states = run([AHEAD] * 3 + [DOWN] * 5 + [AHEAD] * 5)
    assert states.index(AWAY) == 7  # the fifth lowered second
    assert states[8] == AWAY and states[9] == FACING  # two seconds facing bring it back


def test_away_is_turned_or_lowered_in_any_mix_but_not_looking_up():
    assert run([TURNED, DOWN, TURNED, DOWN, TURNED])[-1] == AWAY
    assert AWAY not in run([UP] * 20)


def test_one_facing_second_in_a_long_look_away_does_not_flicker():
    states = run([TURNED] * 10 + [AHEAD] + [TURNED] * 10)
    assert states[4:] == [AWAY] * 17


def test_no_face_after_five_seconds_and_back_with_any_face():
    states = run([AHEAD] * 2 + [GONE] * 8 + [UNKNOWN] * 2)
    assert states[:6] == [FACING] * 6 and states[6:10] == [NO_FACE] * 4
    assert states[10:] == [NO_FACE, FACING]  # a face back, even without a pose


def test_a_face_without_pose_keeps_the_state():
    assert run([TURNED] * 6 + [UNKNOWN] * 20)[-1] == AWAY
    assert run([AHEAD] + [UNKNOWN] * 20) == [FACING] * 21
    # pose-less seconds neither break nor extend a run of lowered ones
    assert run([DOWN] * 3 + [UNKNOWN] * 5 + [DOWN] * 2)[-1] == AWAY


def test_thresholds_come_from_the_rules():
    rules = FocusRules(max_yaw=60, away_after_s=2, back_after_s=1)
    assert AWAY not in run([TURNED] * 10, rules)
    assert run([(70.0, 0.0)] * 2 + [AHEAD], rules) == [FACING, AWAY, FACING]


def test_a_simulated_class_flags_long_look_aways_and_absences_once_and_nothing_brief():
    """Frames of the generic face at scripted poses, with landmark noise and missed detections,
    through the real pose estimate, Timeline's Focus and ClassWatch (as scripts/attention_sim.py)."""
    import numpy as np

    from moodlens.attention import LOOKING_AWAY, NOT_IN_VIEW
    from moodlens.simulate import Episode, attention_lesson

    notes = [Episode(s, 4, 0.0, -40.0) for s in range(20, 280, 30)]  # a glance at the notes every 30 s
    students = [
        [Episode(30, 60, 55.0)],                                      # turned away for a minute
        notes + [Episode(45, 15, -50.0), Episode(200, 18, 0.0, -45.0)],  # glances and short turns
        [Episode(100, 80, None)],                                     # out of view for 80 s
        [Episode(40, 30, None), Episode(150, 30, -55.0)],             # away and gone, but briefly
        [Episode(120, 60, 0.0, -45.0)],                               # a minute on the phone
    ]
    flags = attention_lesson(students, 300, np.random.default_rng(0))
    assert [(f.reason, f.start) for f in flags[0]] == [(LOOKING_AWAY, 35)]  # the state is away from 5 s in
    assert flags[0][0].end == pytest.approx(90, abs=2)
    assert flags[1] == [] and flags[3] == []
    assert [f.reason for f in flags[2]] == [NOT_IN_VIEW] and flags[2][0].start == 105
    assert [f.reason for f in flags[4]] == [LOOKING_AWAY]
