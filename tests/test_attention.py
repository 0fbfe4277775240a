"""Personal baselines and stable flags (moodlens.attention), on per-second records made from
score vectors with noise, as the model's smoothed per-second means look."""

from __future__ import annotations

import numpy as np
import pytest

from moodlens.aggregate import SecondRecord
from moodlens.attention import NO_FACE, ClassWatch, Rules
from moodlens.classes import FER2013_CLASSES as CLASSES

CALM = {"neutral": 0.7, "sad": 0.15, "happy": 0.05}
RESTING_SAD = {"sad": 0.6, "neutral": 0.3}  # a calm face the model reads as sad
SAD = {"sad": 0.75, "neutral": 0.1, "fear": 0.05}
FEAR = {"fear": 0.6, "sad": 0.15, "surprise": 0.15}


def record(second: int, pid: int, mix: dict | None, rng, noise: float = 0.04) -> SecondRecord:
    if mix is None:
        return SecondRecord(second, pid, None, {}, 2)
    p = np.array([mix.get(c, 0.0) for c in CLASSES]) + 0.01
    p = np.clip(p + rng.normal(0, noise, len(p)), 0.001, None)
    p /= p.sum()
    scores = dict(zip(CLASSES, p.tolist()))
    return SecondRecord(second, pid, max(scores, key=scores.get), scores, 2)


def lesson(plan: dict[int, list], seed: int = 0) -> list[SecondRecord]:
    """plan: participant -> one entry per second: a mix, None (no readable face) or "-" (no record)."""
    rng = np.random.default_rng(seed)
    return [record(s, pid, mix, rng) for pid, mixes in plan.items() for s, mix in enumerate(mixes) if mix != "-"]


def flags(records, pid=1, **rules):
    return [(f.reason, f.start, f.end) for f in ClassWatch(CLASSES, Rules(**rules)).run(records).flags(pid)]


def test_a_face_that_reads_sad_all_lesson_is_never_flagged():
    assert flags(lesson({1: [RESTING_SAD] * 300})) == []


def test_a_change_is_flagged_once_within_seconds_and_named():
    watch = ClassWatch(CLASSES).run(lesson({1: [CALM] * 60 + [SAD] * 50 + [CALM] * 40}))
    [flag] = watch.flags(1)
    assert flag.reason == "sad" and 60 <= flag.start <= 62 and 108 <= flag.end <= 110
    assert flag.text() == f"sadder than usual for {flag.end - flag.start + 1} s"


@pytest.mark.parametrize("mix, word", [(FEAR, "more fearful than usual")])
def test_the_flag_names_the_class_that_rose(mix, word):
    [flag] = ClassWatch(CLASSES).run(lesson({1: [CALM] * 40 + [mix] * 30})).flags(1)
    assert flag.reason == "fear" and flag.text(69).startswith(word) and flag.end is None


def test_a_resting_sad_face_that_turns_angry_is_flagged_though_the_negative_total_holds():
    # sad + angry + fear stays at ~0.6 throughout: only judged class by class is this a change
    angry = {"angry": 0.45, "sad": 0.15, "neutral": 0.3}
    records = lesson({1: [RESTING_SAD] * 60 + [angry] * 40})
    total = [sum(r.scores[c] for c in ("angry", "fear", "sad")) for r in records]
    assert abs(np.mean(total[:60]) - np.mean(total[60:])) < 0.03
    assert flags(records) == [("angry", 60, None)]


def test_missing_seconds_are_unknown_and_never_split_a_flag():
    # gallery-style holes: every third second of the change has no record yet
    mixes = [CALM] * 60 + [("-" if s % 3 == 2 else SAD) for s in range(60)]
    assert [(r, s) for r, s, _ in flags(lesson({1: mixes}))] == [("sad", 60)]


def test_an_unusual_start_is_outvoted_by_the_rest_of_the_lesson():
    out = flags(lesson({1: [SAD] * 30 + [CALM] * 150 + [SAD] * 40}))
    assert len(out) == 1 and out[0][1] >= 180  # only the change at 180, not the first half-minute


def test_a_whole_class_moving_together_is_the_class_mood_not_ten_flags():
    plan = {pid: [CALM] * 60 + [SAD] * 40 for pid in range(10)}
    watch = ClassWatch(CLASSES).run(lesson(plan))
    assert all(watch.flags(pid) == [] for pid in plan)
    assert np.mean([watch.shifts[s] for s in range(70, 100)]) > 0.3
    plan[0] = [CALM] * 100  # the same change in 5 of 10 flags those 5: the median does not move
    for pid in range(1, 5):
        plan[pid] = [CALM] * 100
    watch = ClassWatch(CLASSES).run(lesson(plan))
    assert sum(bool(watch.flags(pid)) for pid in plan) <= 5


def test_no_readable_face_raises_after_10_s_and_clears_when_seen_again():
    out = flags(lesson({1: [CALM] * 30 + [None] * 12 + [CALM] * 10}))
    assert out == [(NO_FACE, 30, 41)]
    assert flags(lesson({1: [CALM] * 30 + [None] * 9 + [CALM] * 10})) == []


def test_a_participant_who_left_is_not_flagged_and_flags_end_when_they_leave():
    watch = ClassWatch(CLASSES).run(lesson({1: [CALM] * 40 + [SAD] * 20 + ["-"] * 30, 2: [CALM] * 90}), until=89)
    [flag] = watch.flags(1)
    assert flag.end == 59 and watch.watches[1].left_at == 59
    watch = ClassWatch(CLASSES).run(lesson({1: [CALM] * 30 + ["-"] * 60, 2: [CALM] * 90}), until=89)
    assert watch.flags(1) == [] and watch.watches[1].left_at == 29


def test_live_second_by_second_and_review_at_once_agree():
    records = lesson({pid: [CALM] * (30 + 5 * pid) + [SAD] * 30 + [CALM] * 30 for pid in range(8)}, seed=3)
    review = ClassWatch(CLASSES).run(records)
    live = ClassWatch(CLASSES)
    by_second: dict = {}
    for r in records:
        by_second.setdefault(r.second, {})[r.track_id] = r
    seen = {}
    for second in sorted(by_second):
        live.step(second, by_second[second])
        for pid in range(8):  # once up, a flag stays up until it ends: no blinking
            up = [f for f in live.flags(pid) if f.end is None]
            if seen.get(pid) and not up:
                assert live.flags(pid)[-1].end is not None
            seen[pid] = bool(up)
    assert all([(f.reason, f.start, f.end) for f in live.flags(p)] == [(f.reason, f.start, f.end)
               for f in review.flags(p)] for p in range(8))
    assert sum(bool(review.flags(p)) for p in range(8)) >= 6


def test_class_odds_lessons_count_catches_and_calm_flags_as_class_sim_judges_them():
    from moodlens.simulate import face_seconds, lesson

    rng = np.random.default_rng(0)

    def face(mix, unseen=()):  # 4 webcam variants of one face as the model reads them (None: no face found)
        variants = [np.array([record(0, 0, mix, rng, noise=0.02).scores[c] for c in CLASSES]) for _ in range(4)]
        return face_seconds([None if k in unseen else v for k, v in enumerate(variants)], CLASSES)

    calm = [face(RESTING_SAD if i % 4 == 0 else CALM, unseen=(1,) if i == 5 else ()) for i in range(20)]
    changed = {i: face(SAD) for i in (1, 2, 3, 5)}
    changed[4] = calm[4]  # a changer whose negative face the model reads as their calm one
    result = lesson(calm, changed, CLASSES, seconds=90, change_at=40, within=20)
    assert result["caught"] == 4 and result["calm_flagged"] == 0 and result["blinked"] == 0
    assert all(0 <= d <= 10 for d in result["delays"])


# --- attention flags: from the attention state alone -------------------------------------------

def attending(states: list[str | None], pid: int = 1, start: int = 0, mix: dict | None = CALM) -> list[SecondRecord]:
    """Records with an attention state each second ("-": no record that second)."""
    rng = np.random.default_rng(pid)
    out = []
    for s, state in enumerate(states, start):
        if state != "-":
            r = record(s, pid, mix if state != "no_face" else None, rng)
            r.attention = state
            out.append(r)
    return out


def test_looking_away_for_40_s_is_flagged_from_its_first_second_and_ends_with_it():
    records = attending(["facing"] * 30 + ["away"] * 45 + ["facing"] * 20)
    assert flags(records) == [("looking_away", 30, 74)]
    assert flags(attending(["facing"] * 30 + ["away"] * 39 + ["facing"] * 20)) == []  # 39 s is not 40


def test_not_in_view_for_60_s_is_flagged_beside_the_unreadable_face_flag():
    records = attending(["facing"] * 30 + ["no_face"] * 70 + ["facing"] * 20)
    assert ("not_in_view", 30, 99) in flags(records)
    assert [f for f in flags(attending(["facing"] * 30 + ["no_face"] * 59 + ["facing"] * 20))
            if f[0] == "not_in_view"] == []


def test_an_attention_flag_is_up_while_it_lasts_and_reads_as_the_teacher_sees_it():
    watch = ClassWatch(CLASSES).run(attending(["facing"] * 10 + ["away"] * 50))
    [flag] = watch.flags(1)
    assert flag.end is None and flag.text(59) == "looking away for 50 s"
    assert watch.finish().flags(1)[0].end == 59


def test_an_attention_only_session_raises_only_attention_flags():
    # no scores at all, as in a session where no emotion is read: not "unreadable", just unread
    records = attending(["facing"] * 30 + ["away"] * 45 + ["facing"] * 30, mix=None)
    watch = ClassWatch(CLASSES, emotions=False).run(records)
    assert [(f.reason, f.start, f.end) for f in watch.flags(1)] == [("looking_away", 30, 74)]
    assert [f.reason for f in ClassWatch(CLASSES).run(records).flags(1)] == ["no_face", "looking_away"]


def test_records_without_an_attention_state_raise_no_attention_flags():
    assert flags(lesson({1: [CALM] * 200})) == []
    # a camera-off stretch (no records) longer than gap_s ends a look-away at its last second
    records = attending(["away"] * 50 + ["-"] * 20 + ["facing"] * 10)
    assert flags(records) == [("looking_away", 0, 49)]
