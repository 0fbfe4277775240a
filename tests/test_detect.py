"""Face detection: the default YuNet decoder and CenterFace on real photos, close-ups, small gallery
faces and odd frames; the scale planner; Haar; errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from moodlens import detect
from moodlens.detect import (
    CenterFaceDetector,
    DetectorError,
    HaarDetector,
    ScalePlanner,
    YuNetDetector,
    create_detector,
    list_detectors,
)
from moodlens.faces import Face
from moodlens.gallery import SHARED_FACES, closeup, fer_participants, make_gallery, match_boxes, shared_participants
from moodlens.track import iou
from moodlens.weights import WEIGHTS_DIR

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"

# Hand-verified (drawn on the photo and looked at) approximate face boxes (x, y, w, h) in group.jpg,
# left to right: two seated at the left, the standing man, the girl behind the laptop, the woman
# holding a cup, the woman leaning over, the standing man at the back, the woman at the right.
GROUP_FACES = [(128, 191, 24, 30), (182, 203, 20, 29), (186, 112, 20, 27), (258, 194, 22, 30),
               (321, 146, 19, 25), (334, 197, 24, 32), (382, 106, 21, 28), (508, 135, 21, 26)]
CNN = ["yunet", "centerface"]


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return create_detector()


@pytest.fixture(scope="module")
def people() -> list:
    return shared_participants(MEDIA)


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    image = cv2.imread(str(MEDIA / "group.jpg"))
    assert image is not None, f"missing {MEDIA / 'group.jpg'}"
    return image


def _check_faces(faces: list[Face], shape: tuple[int, ...]) -> None:
    height, width = shape[:2]
    for f in faces:
        x, y, w, h = f.box
        assert all(isinstance(v, int) for v in f.box)
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width and y + h <= height
        assert 0.0 <= f.detection_score <= 1.0
        assert f.landmarks is not None and f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32


def test_default_is_yunet_and_the_others_stay_selectable():
    assert detect.DEFAULT_DETECTOR == "yunet"
    assert {"yunet", "centerface", "haar"} <= set(list_detectors())
    assert isinstance(create_detector("centerface"), CenterFaceDetector)
    # the shipped weights travel with their licence
    assert (WEIGHTS_DIR / "yunet_n.onnx").is_file() and "Apache License" in (WEIGHTS_DIR / "yunet.LICENSE").read_text()


@pytest.mark.parametrize("name", CNN)
def test_finds_all_eight_faces_in_group_photo(name, group):
    faces = create_detector(name).detect(group)
    _check_faces(faces, group.shape)
    found, false_pos, missed = match_boxes([f.box for f in faces], GROUP_FACES)
    assert found == 8 and missed == 0
    assert false_pos <= 1


@pytest.mark.parametrize("photo", ["portrait.jpg", "angry.jpg", "crying.jpg"])
def test_decoder_boxes_fit_the_single_face_photos(detector, photo):
    image = cv2.imread(str(MEDIA / photo))
    faces = detector.detect(image)
    _check_faces(faces, image.shape)
    assert len(faces) == 1
    (truth,) = SHARED_FACES[photo]
    assert iou(faces[0].box, truth) >= 0.6  # the decoded box is the face, not just near it
    assert faces[0].detection_score >= 0.8


def test_closeups_filling_90_percent_of_the_frame(detector, people):
    # Each shared face (8 from group.jpg, 3 single photos) scaled to 432 px in a 640x480 frame.
    for image, box in people:
        frame, truth = closeup(image, box)
        faces = detector.detect(frame)
        _check_faces(faces, frame.shape)
        assert match_boxes([f.box for f in faces], [truth])[:2] == (1, 0)
    # and a bigger frame, where the face is seen shrunk: 972 px of a 1440x1080 frame
    frame, truth = closeup(*people[8], size=(1440, 1080))
    assert match_boxes([f.box for f in detector.detect(frame)], [truth])[:2] == (1, 0)


@pytest.mark.parametrize("name", CNN)
def test_landmarks_are_on_the_face_in_image_order(name):
    image = cv2.imread(str(MEDIA / "portrait.jpg"))
    faces = create_detector(name).detect(image)
    assert len(faces) == 1
    (x, y, w, h), lm = faces[0].box, faces[0].landmarks
    assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
    left_eye, right_eye, nose, left_mouth, right_mouth = lm
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]  # as seen in the image
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


@pytest.mark.parametrize("rows, size", [(3, (640, 480)), (5, (1280, 720)), (7, (1280, 720)), (7, (1920, 1080))])
def test_meeting_galleries_up_to_7x7_all_found(detector, people, rows, size):
    frame, truth = make_gallery(people, rows, rows, size, seed=1)
    assert frame.shape == (size[1], size[0], 3) and len(truth) == rows * rows
    faces = detector.detect(frame)
    _check_faces(faces, frame.shape)
    found, false_pos, _ = match_boxes([f.box for f in faces], truth)
    assert found == len(truth) and false_pos <= 1


def test_small_gallery_faces_10x10_1280x720(detector, people):
    frame, truth = make_gallery(people, 10, 10, (1280, 720))
    assert min(h for *_, h in truth) <= 24  # faces from ~22 px
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(frame)], truth)
    assert found >= 98 and false_pos <= 1  # CenterFace at its 640 px input: 52 of 100


def test_publictest_gallery_10x10_1280x720(detector, fer_rows):
    rows = [r for r in fer_rows if r["Usage"] == "PublicTest"][:100]  # the first 100, as they come
    faces = np.array([np.array(r["pixels"].split(), np.uint8).reshape(48, 48) for r in rows])
    frame, truth = make_gallery(fer_participants(faces), 10, 10, (1280, 720))
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(frame)], truth)
    assert found >= 95 and false_pos <= 1  # CenterFace: about 70


def test_group_photo_shrunk_to_faces_of_about_12_px(detector, group):
    small = cv2.resize(group, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    truth = [tuple(round(v * 0.45) for v in b) for b in GROUP_FACES]
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(small, scale=1.0)], truth)
    assert found >= 7 and false_pos <= 1


def test_blank_images_give_no_faces(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((720, 1280, 3), 255, np.uint8)) == []


def test_grey_and_bgra_input(detector, group):
    grey = cv2.cvtColor(group, cv2.COLOR_BGR2GRAY)
    for image in (grey, grey[:, :, None], cv2.cvtColor(group, cv2.COLOR_BGR2BGRA)):
        faces = detector.detect(image)
        _check_faces(faces, image.shape)
        found, false_pos, _ = match_boxes([f.box for f in faces], GROUP_FACES)
        assert found >= 7 and false_pos <= 1


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (2, 3, 3), (16, 16), (31, 500, 3), (900, 20, 3),
                                   (333, 517, 3), (4000, 33, 3)])
@pytest.mark.parametrize("name", ["yunet", "centerface", "haar"])
def test_tiny_and_odd_frames_do_not_crash(name, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for scale in (None, 0.3, 1.0):
        faces = create_detector(name).detect(image, scale)
        assert isinstance(faces, list)
        if name != "haar":
            _check_faces(faces, shape)


def test_odd_sized_frame_keeps_boxes_in_frame_coordinates(detector, group):
    odd = group[3:390, 5:597]  # 592x387: neither side a multiple of 32
    truth = [(x - 5, y - 3, w, h) for x, y, w, h in GROUP_FACES]
    for scale in (None, 0.63, 1.0):
        faces = detector.detect(odd, scale)
        _check_faces(faces, odd.shape)
        assert match_boxes([f.box for f in faces], truth)[:2] == (8, 0)


def test_any_aspect_and_a_face_crop(detector, group):
    wide = cv2.copyMakeBorder(group, 0, 0, 300, 300, cv2.BORDER_CONSTANT)  # 1200x400
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(wide)],
                                      [(x + 300, y, w, h) for x, y, w, h in GROUP_FACES])
    assert found >= 7 and false_pos <= 1
    crop = group[170:250, 100:180]  # one face, 80x80 frame
    assert len(detector.detect(crop)) == 1


def test_input_scale_follows_the_frame(detector):
    assert detector.frame_scale((480, 640, 3)) == pytest.approx(0.8)  # 20 px faces seen at 16 px
    assert detector.frame_scale((100, 80)) == pytest.approx(0.8)
    # 4K: a face filling the frame must stay within what the network finds (~900 px)
    assert detector.frame_scale((2160, 3840, 3)) == pytest.approx(900 / 2160)
    assert create_detector(min_face=40).frame_scale((480, 640)) == pytest.approx(0.4)


def test_scale_planner_shrinks_for_big_faces_and_rescans(detector):
    planner = ScalePlanner(detector, rescan_s=1.0)
    shape = (480, 640, 3)
    assert planner.scale(shape, [], 0.0) == pytest.approx(0.8)  # nothing seen yet: full scan
    big = [Face((200, 100, 240, 300))]
    assert planner.scale(shape, big, 0.1) == pytest.approx(256 / 640)  # a close-up: the smallest input
    gallery = [Face((10, 10, 30, 30)), Face((300, 10, 200, 200))]
    assert planner.scale(shape, gallery, 0.2) == pytest.approx(0.8)  # small faces: the frame's own scale
    assert planner.scale(shape, [Face((0, 0, 80, 80))], 0.5) == pytest.approx(16 / 40)
    assert planner.scale(shape, big, 1.2) == pytest.approx(0.8)  # a second since the scan: full again
    assert planner.scale(shape, big, 1.3) < 0.8


def test_parameters(group):
    strict = create_detector(score_threshold=0.999).detect(group)
    assert len(strict) < 8
    full_res = create_detector("centerface", input_size=None).detect(group)
    assert match_boxes([f.box for f in full_res], GROUP_FACES)[0] == 8
    with pytest.raises(ValueError):
        create_detector("centerface", input_size=8)
    with pytest.raises(ValueError):
        create_detector(min_face=0)


def test_unknown_detector_and_missing_or_wrong_model_raise():
    with pytest.raises(DetectorError, match="unknown detector"):
        create_detector("no-such-detector")
    for name in CNN:
        with pytest.raises(DetectorError, match="not found"):
            create_detector(name, model_path="/nonexistent/model.onnx")
    with pytest.raises(DetectorError, match="not a YuNet model"):
        create_detector("yunet", model_path=WEIGHTS_DIR / "centerface.onnx")


def test_haar_is_kept_as_second_backend(group):
    haar = create_detector("haar")
    assert isinstance(haar, HaarDetector)
    faces = haar.detect(group)
    assert 3 <= len(faces) <= 6 and all(f.landmarks is None for f in faces)
