"""Head pose from five landmarks: the geometry against synthetic projections of the generic face,
the sign conventions (mirroring, in-plane rotation), degenerate landmarks, the pipeline's and
the tracker's handling of ``Face.pose``, and the attention state it feeds."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from conftest import MEDIA
from moodlens import Recognizer
from moodlens.aggregate import Timeline
from moodlens.annotate import direction_cue
from moodlens.faces import NO_FACE, Face, Frame, Pose
from moodlens.pose import angles, estimate_pose, rotation
from moodlens.pose import project as project_face
from moodlens.track import Tracker


def project(yaw, pitch, roll, centre=(320.0, 240.0), width=640, distance=600.0):
    return project_face(yaw, pitch, roll, centre, width, distance)


@pytest.mark.parametrize("pose", [(0, 0, 0), (25, 0, 0), (-40, 10, 5), (10, -25, -15), (55, 20, 25), (-60, -30, 0)])
def test_rotation_and_angles_are_inverse(pose):
    assert np.allclose(angles(rotation(*pose)), pose, atol=1e-9)
    r = rotation(*pose)
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)


@pytest.mark.parametrize("pose", [(0, 0, 0), (20, 0, 0), (-35, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 20),
                                  (30, -20, 10), (-50, 15, -20), (60, 0, 0)])
def test_synthetic_projections_are_recovered(pose):
    est = estimate_pose(project(*pose), 640)
    # within 2.5 degrees: the camera is centred on the landmarks' mean, the projection on the
    # face's own origin, a small parallax the generic geometry cannot tell apart
    assert est is not None
    assert np.allclose([est.yaw, est.pitch, est.roll], pose, atol=2.5), est
    assert est.confidence > 0.95


def test_sign_conventions_in_the_image():
    # turned to its own left: the nose tip moves to the image's right of the eyes' midpoint
    turned = project(30, 0, 0)
    assert turned[2, 0] > turned[:2, 0].mean()
    # tilted up: the nose tip comes closer to the eyes' line than in a frontal view
    drop = lambda marks: marks[2, 1] - marks[:2, 1].mean()  # noqa: E731
    assert drop(project(0, 20, 0)) < drop(project(0, 0, 0))
    # leaning towards its own left shoulder: clockwise in the image, the image-right eye drops
    leaning = project(0, 0, 20)
    assert leaning[1, 1] > leaning[0, 1]
    est = estimate_pose(leaning, 640)
    assert est.roll > 15 and abs(est.yaw) < 3


def mirror(marks: np.ndarray, width: int) -> np.ndarray:
    """The landmarks of the mirrored image, in the detectors' order (left and right swap)."""
    flipped = marks.copy()
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[[1, 0, 2, 4, 3]]


@pytest.mark.parametrize("pose", [(25, 5, 10), (-40, -15, -5), (10, 20, 0)])
def test_mirroring_negates_yaw_and_roll_and_keeps_pitch(pose):
    rng = np.random.default_rng(0)
    marks = project(*pose, centre=(200.0, 300.0)) + rng.normal(0, 1.0, (5, 2))
    a, b = estimate_pose(marks, 640), estimate_pose(mirror(marks, 640), 640)
    assert abs(a.yaw) > 5
    assert b.yaw == pytest.approx(-a.yaw, abs=1e-3) and b.roll == pytest.approx(-a.roll, abs=1e-3)
    assert b.pitch == pytest.approx(a.pitch, abs=1e-3) and b.confidence == pytest.approx(a.confidence, abs=1e-6)


def off_axis(pose) -> float:
    """Degrees between where the head points and the line to the camera."""
    return float(np.degrees(np.arccos(np.cos(np.radians(pose.yaw)) * np.cos(np.radians(pose.pitch)))))


@pytest.mark.parametrize("start", [(0, 0, 0), (15, -10, 0)])
def test_in_plane_rotation_adds_that_roll(start):
    marks = project(*start)
    centre = marks.mean(0)
    base = estimate_pose(marks, 640)
    for degrees in (-30, -10, 10, 30):
        t = np.radians(degrees)  # clockwise in the image (y down): towards the face's own left shoulder
        turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        est = estimate_pose((marks - centre) @ turn.T + centre, 640)
        assert est.roll - base.roll == pytest.approx(degrees, abs=3.0)
        # turning the image about the line to the camera moves a turned head's direction around
        # that line (yaw becomes partly pitch) but not away from it
        assert off_axis(est) == pytest.approx(off_axis(base), abs=1.0)
        if start == (0, 0, 0):
            assert abs(est.yaw) < 1.0 and abs(est.pitch - base.pitch) < 1.0


def test_translation_does_not_change_the_pose():
    # the camera is centred on each face: a gallery tile at the frame's edge is not read as turned
    a, b = estimate_pose(project(20, 5, 0, centre=(320, 240)), 1280), estimate_pose(project(20, 5, 0, centre=(40, 60)), 1280)
    assert np.allclose([a.yaw, a.pitch, a.roll], [b.yaw, b.pitch, b.roll], atol=1e-3)


def test_noise_lowers_the_confidence():
    rng = np.random.default_rng(1)
    clean = estimate_pose(project(10, 0, 0), 640)
    noisy = estimate_pose(project(10, 0, 0) + rng.normal(0, 4.0, (5, 2)), 640)
    assert noisy.confidence < clean.confidence - 0.2


@pytest.mark.parametrize("marks", [None, np.zeros((5, 2)), np.full((5, 2), np.nan), np.zeros((4, 2)),
                                   # a profile: both eyes squeezed together above the mouth
                                   np.array([[100, 100], [103, 100], [110, 130], [98, 160], [101, 160]], float)])
def test_degenerate_landmarks_give_no_pose(marks):
    assert estimate_pose(marks, 640) is None


def test_recognizer_gives_each_detected_face_a_pose():
    recognizer, portrait = Recognizer(), cv2.imread(str(MEDIA / "portrait.jpg"))
    faces = recognizer.analyze(portrait)
    assert faces and faces[0].pose is not None
    pose = faces[0].pose
    # the shared portrait looks into the camera
    assert abs(pose.yaw) < 15 and abs(pose.pitch) < 20 and abs(pose.roll) < 10
    assert faces[0].to_dict()["pose"] == pose.to_dict()
    flipped = recognizer.analyze(np.ascontiguousarray(portrait[:, ::-1]))[0].pose
    assert abs(flipped.yaw + pose.yaw) < 5 and abs(flipped.roll + pose.roll) < 3


def test_tracker_smooths_the_pose_like_the_scores():
    tracker = Tracker(("happy", "sad"), smoothing_s=0.5)
    first = Face((10, 10, 50, 50), scores={"happy": 1.0, "sad": 0.0}, pose=Pose(0.0, 0.0, 0.0, 1.0))
    tracker.update([first], 0.0)
    second = Face((12, 10, 50, 50), scores={"happy": 0.0, "sad": 1.0}, pose=Pose(40.0, -20.0, 10.0, 0.5))
    tracker.update([second], 0.5)
    keep = np.exp(-1.0)
    assert second.pose.yaw == pytest.approx((1 - keep) * 40.0)
    assert second.pose.pitch == pytest.approx((1 - keep) * -20.0)
    assert second.pose.confidence == pytest.approx(keep + (1 - keep) * 0.5)
    assert second.scores["sad"] == pytest.approx(1 - keep)
    # a frame whose face has no pose leaves it None rather than inventing one
    third = Face((12, 10, 50, 50), scores={"happy": 1.0, "sad": 0.0})
    tracker.update([third], 1.0)
    assert third.pose is None


def test_direction_cue_points_where_the_head_turns():
    marks = project(0, 0, 0)
    face = Face((270, 190, 100, 100), landmarks=marks, pose=Pose(40.0, 0.0, 0.0, 1.0))
    (x0, y0), (x1, y1) = direction_cue(face)
    assert (x0, y0) == tuple(int(round(v)) for v in marks[2]) and x1 > x0 + 20 and abs(y1 - y0) <= 1
    face.pose = Pose(0.0, -30.0, 0.0, 1.0)  # looking down: the arrow points down the image
    (x0, y0), (x1, y1) = direction_cue(face)
    assert y1 > y0 + 15 and x1 == x0


def test_timeline_steps_the_attention_state_from_the_pose():
    timeline = Timeline(("happy", "sad"))
    states = []
    # 3 s facing, 8 s turned 50 degrees away, 3 s facing, then 7 s with nobody in view
    script = [0.0] * 3 + [50.0] * 8 + [0.0] * 3 + [None] * 7
    for second, yaw in enumerate(script):
        for k in range(2):
            face = Face((0, 0, 0, 0), status=NO_FACE) if yaw is None else \
                Face((10, 10, 60, 60), scores={"happy": 0.9, "sad": 0.1}, pose=Pose(yaw, 0.0, 0.0, 0.9))
            face.track_id = 1
            states += [r.attention for r in timeline.add(Frame([face], time=second + k / 2))]
    states += [r.attention for r in timeline.flush()]
    assert states == ["facing"] * 3 + ["facing"] * 4 + ["away"] * 4 + ["away", "facing", "facing"] + \
        ["facing"] * 4 + ["no_face"] * 3
    rec = timeline.records[5]
    assert (rec.yaw, rec.pitch, rec.roll) == (50.0, 0.0, 0.0)
    assert timeline.records[-1].yaw is None and timeline.records[-1].emotion is None


def test_pose_is_cheap():
    marks = project(20, -10, 5)
    estimate_pose(marks, 640)
    runs = []
    for _ in range(5):
        start = time.process_time()  # CPU time: the machine may be busy with other work
        for _ in range(50):
            estimate_pose(marks, 640)
        runs.append((time.process_time() - start) / 50 * 1e3)
    assert min(runs) < 1.5  # ms; a 640x480 one-face frame takes tens of milliseconds end to end
