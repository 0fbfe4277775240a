"""Face detection: the default CNN backend on real photos and meeting-gallery frames, Haar, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from moodlens import detect
from moodlens.detect import CenterFaceDetector, DetectorError, HaarDetector, create_detector, list_detectors
from moodlens.faces import Face
from moodlens.gallery import make_gallery, match_boxes, shared_participants

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"

# Hand-verified (drawn on the photo and looked at) approximate face boxes (x, y, w, h) in group.jpg,
# left to right: two seated at the left, the standing man, the girl behind the laptop, the woman
# holding a cup, the woman leaning over, the standing man at the back, the woman at the right.
GROUP_FACES = [(128, 191, 24, 30), (182, 203, 20, 29), (186, 112, 20, 27), (258, 194, 22, 30),
               (321, 146, 19, 25), (334, 197, 24, 32), (382, 106, 21, 28), (508, 135, 21, 26)]


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return create_detector()


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


def test_default_is_the_cnn_detector(detector):
    assert detect.DEFAULT_DETECTOR == "centerface"
    assert isinstance(detector, CenterFaceDetector)
    assert {"centerface", "haar"} <= set(list_detectors())


def test_default_finds_all_eight_faces_in_group_photo(detector, group):
    faces = detector.detect(group)
    _check_faces(faces, group.shape)
    found, false_pos, missed = match_boxes([f.box for f in faces], GROUP_FACES)
    assert found == 8 and missed == 0
    assert false_pos <= 1


def test_landmarks_are_on_the_face_in_image_order(detector):
    image = cv2.imread(str(MEDIA / "portrait.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 1
    (x, y, w, h), lm = faces[0].box, faces[0].landmarks
    assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
    left_eye, right_eye, nose, left_mouth, right_mouth = lm
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]  # as seen in the image
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_gallery_5x5_1280x720(detector):
    frame, truth = make_gallery(shared_participants(MEDIA), 5, 5, (1280, 720))
    assert frame.shape == (720, 1280, 3) and len(truth) == 25
    faces = detector.detect(frame)
    _check_faces(faces, frame.shape)
    found, false_pos, _ = match_boxes([f.box for f in faces], truth)
    assert found >= 0.9 * len(truth)
    assert false_pos <= 2


def test_gallery_7x7_1920x1080(detector):
    frame, truth = make_gallery(shared_participants(MEDIA), 7, 7, (1920, 1080), seed=1)
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(frame)], truth)
    assert found >= 0.9 * len(truth) and false_pos <= 3


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


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (2, 3, 3), (16, 16), (31, 500, 3), (900, 20, 3)])
@pytest.mark.parametrize("name", ["centerface", "haar"])
def test_tiny_and_odd_frames_do_not_crash(name, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    faces = create_detector(name).detect(image)
    assert isinstance(faces, list)
    if name == "centerface":
        _check_faces(faces, shape)


def test_any_aspect_and_a_face_crop(detector, group):
    wide = cv2.copyMakeBorder(group, 0, 0, 300, 300, cv2.BORDER_CONSTANT)  # 1200x400
    found, false_pos, _ = match_boxes([f.box for f in detector.detect(wide)],
                                      [(x + 300, y, w, h) for x, y, w, h in GROUP_FACES])
    assert found >= 7 and false_pos <= 1
    crop = group[170:250, 100:180]  # one face, 80x80 frame
    assert len(detector.detect(crop)) == 1


def test_parameters(group):
    strict = create_detector(score_threshold=0.999).detect(group)
    assert len(strict) < 8
    full_res = create_detector(input_size=None).detect(group)
    assert match_boxes([f.box for f in full_res], GROUP_FACES)[0] == 8
    with pytest.raises(ValueError):
        create_detector(input_size=8)


def test_unknown_detector_and_missing_model_raise():
    with pytest.raises(DetectorError, match="unknown detector"):
        create_detector("no-such-detector")
    with pytest.raises(DetectorError):
        create_detector("centerface", model_path="/nonexistent/model.onnx")


def test_haar_is_kept_as_second_backend(group):
    haar = create_detector("haar")
    assert isinstance(haar, HaarDetector)
    faces = haar.detect(group)
    assert 3 <= len(faces) <= 6 and all(f.landmarks is None for f in faces)
