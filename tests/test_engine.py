"""The recognition pipeline on real photos, video and bad input: detect, crop, classify, track."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import FER_CSV, MEDIA
from moodlens import EmotionModel, Face, ModelError, Recognizer
from moodlens.aggregate import POSE_COLUMNS, Timeline
from moodlens.annotate import annotate, describe, layout
from moodlens.classify import default_model_path
from moodlens.crop import crop_faces
from moodlens.faces import TOO_SMALL, Frame
from moodlens.gallery import SHARED_FACES, make_gallery, match_boxes, shared_participants
from moodlens.sources import Camera, SourceError, VideoFile, VideoSink, read_image
from moodlens.track import Tracker
from moodlens.training.data import load_fer2013

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


def write_video(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_group_photo_all_faces_with_emotions(recognizer):
    faces = recognizer.analyze(MEDIA / "group.jpg")
    assert len(faces) == 8
    for f in faces:
        assert f.track_id is None and f.landmarks.shape == (5, 2)
        assert f.status == "ok" and f.emotion in CLASSES or f.status == "uncertain" and f.emotion is None
        assert set(f.scores) == set(CLASSES) and sum(f.scores.values()) == pytest.approx(1, abs=1e-4)
    same = recognizer.analyze(cv2.imread(str(MEDIA / "group.jpg")))
    assert [f.box for f in same] == [f.box for f in faces]


def test_face_to_dict_is_json_ready(recognizer):
    d = recognizer.analyze(MEDIA / "portrait.jpg")[0].to_dict()
    assert set(d) >= {"box", "emotion", "scores", "track_id", "status"} and len(d["box"]) == 4


def test_no_faces_and_tiny_frames(recognizer):
    assert recognizer.analyze(np.full((480, 640, 3), 127, np.uint8)) == []
    assert recognizer.analyze(np.zeros((1, 1, 3), np.uint8)) == []
    assert len(recognizer.analyze(cv2.imread(str(MEDIA / "portrait.jpg"), cv2.IMREAD_GRAYSCALE))) == 1


def test_small_faces_are_marked_not_guessed():
    strict = Recognizer(min_face=200)
    faces = strict.analyze(MEDIA / "group.jpg")
    assert faces and all(f.status == TOO_SMALL and f.emotion is None and not f.scores for f in faces)


def test_gallery_of_100_faces_is_handled(recognizer):
    frame, truth = make_gallery(shared_participants(MEDIA), 10, 10, size=(1920, 1080))
    faces = recognizer.analyze(frame)
    found, false_positives, _ = match_boxes([f.box for f in faces], truth)
    # 10x10 tiles at 1080p leave faces 34-82 px tall (CenterFace at its 640 px input found 65)
    assert found >= 0.98 * len(truth) and false_positives <= 1
    assert sum(f.emotion is not None for f in faces) >= 0.5 * len(faces)  # judged, not just boxed
    capped = Recognizer(model=recognizer.model, detector=recognizer.detector, max_faces=30).analyze(frame)
    assert len(capped) == 30 and min(f.box[2] * f.box[3] for f in capped) >= max(
        f.box[2] * f.box[3] for f in faces[30:])  # the largest faces are kept


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.jpg", "no such file"),
    (lambda p: (p / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken") and p / "corrupt.jpg", "not a readable image"),
    (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not a readable image"),
])
def test_bad_images(tmp_path, recognizer, make, message):
    with pytest.raises(SourceError, match=message):
        recognizer.analyze(make(tmp_path))
    with pytest.raises(SourceError):
        read_image(np.zeros((4, 4), np.float32))


def test_the_classifier_runs_many_faces_in_batches_with_the_same_answers():
    model = EmotionModel()
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    whole = model.predict(faces)
    np.testing.assert_allclose(model.predict(faces, batch_size=7), whole, atol=1e-6)
    crops = [rng.integers(0, 256, (h, h, 3), dtype=np.uint8) for h in (30, 64, 120)]  # a list, any size
    np.testing.assert_allclose(model.predict(crops, batch_size=2), model.predict(crops), atol=1e-6)
    assert model.predict(faces[:0]).shape == (0, 7)


def test_mirror_averaging_reads_a_face_and_its_mirror_image_alike():
    model = EmotionModel()
    faces = load_fer2013(FER_CSV, "PublicTest").images[:32]
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    tta = model.predict(faces, tta=True)
    np.testing.assert_allclose(tta, (model.predict(faces) + model.predict(mirrored)) / 2, atol=1e-6)
    np.testing.assert_allclose(model.predict(mirrored, tta=True), tta, atol=1e-6)
    assert np.abs(tta - model.predict(faces)).max() > 1e-3  # the mirror image is read, not the face twice
    crops = [cv2.cvtColor(cv2.resize(f, (96, 96)), cv2.COLOR_GRAY2BGR) for f in faces[:3]]  # BGR crops of any size
    np.testing.assert_allclose(model.predict(crops, tta=True), model.predict([c[:, ::-1] for c in crops], tta=True),
                               atol=1e-6)


def model_with_shipped_metadata(path, inputs: list, output: list):
    """A valid ONNX file of one Relu, with the given declared input and output shapes, carrying the
    shipped model's MoodLens metadata: it passes every check of the file itself."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.extend(onnx.load(str(default_model_path())).metadata_props)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("inputs, output, message", [
    (["n", 7], ["n", 7], r"takes x tensor\(float\) \['n', 7\], not the float faces \[batch, 1, 48, 48\]"),
    ([1, 1, 48, 48], [1, 1, 48, 48], r"takes x tensor\(float\) \[1, 1, 48, 48\]"),  # a fixed batch of one
    (["n", 1, 48, 48], ["n", 1, 48, 48], r"gives \(2, 1, 48, 48\) for 2 faces, not \(2, 7\) for the 7 classes"),
    (["n", 1, 48, 48], ["n", 7], r"gives \(2, 1, 48, 48\) for 2 faces"),  # declares the right output, gives another
    (["n", "c", "h", "w"], ["n", "c", "h", "w"], r"gives \(2, 1, 48, 48\) for 2 faces"),
])
def test_a_graph_unlike_its_metadata_is_refused_on_load(tmp_path, inputs, output, message):
    path = model_with_shipped_metadata(tmp_path / "relu.onnx", inputs, output)
    with pytest.raises(ModelError, match=message) as refused:
        EmotionModel(path)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)


def test_crop_handles_faces_at_the_edge():
    image = cv2.imread(str(MEDIA / "portrait.jpg"))
    crops = crop_faces(image, [Face((0, 0, 100, 120)), Face((image.shape[1] - 30, 10, 60, 60))], 48)
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8


def test_tracker_keeps_ids_and_smooths_scores():
    tracker = Tracker(CLASSES, max_age_s=0.5, smoothing_s=0.5)
    flip = [dict.fromkeys(CLASSES, 0.0) | {"happy": 1.0}, dict.fromkeys(CLASSES, 0.0) | {"sad": 1.0}]
    happy = []
    for i in range(10):
        faces = tracker.update([Face((100 + i, 50, 60, 60), scores=dict(flip[i % 2])),
                                Face((400, 50 + i, 60, 60), scores=dict(flip[0]))], i / 10)
        assert [f.track_id for f in faces] == [1, 2]
        happy.append(faces[0].scores["happy"])
    # Raw scores jump 0 <-> 1 every frame; smoothed they stay within a narrow band.
    assert max(np.abs(np.diff(happy[3:]))) < 0.3
    later = tracker.update([Face((700, 300, 60, 60))], 5.0)
    assert later[0].track_id == 3 and set(tracker.tracks) == {3}  # stale tracks forgotten


def test_tracker_keeps_an_id_across_a_gap_near_where_the_face_was():
    tracker = Tracker(CLASSES)  # defaults: 2 s, one box side
    assert [f.track_id for f in tracker.update([Face((100, 100, 80, 80)), Face((400, 100, 80, 80))], 0.0)] == [1, 2]
    # 1.9 s later the first face is back, moved 60 px (IoU 0.14): still #1; the second stayed away
    assert tracker.update([Face((160, 100, 80, 80))], 1.9)[0].track_id == 1
    assert tracker.update([Face((400, 100, 80, 80))], 2.05)[0].track_id == 3  # #2 unseen 2.05 s: forgotten
    # far away (3 box sides) or twice the size is someone else
    assert tracker.update([Face((400, 340, 80, 80))], 2.1)[0].track_id == 4
    assert tracker.update([Face((150, 80, 170, 170))], 2.2)[0].track_id == 5


def test_stream_over_video_keeps_one_track(tmp_path, recognizer):
    portrait = cv2.resize(cv2.imread(str(MEDIA / "portrait.jpg")), (480, 320))
    frames = [np.roll(portrait, 3 * i, axis=1) for i in range(25)]
    video = write_video(tmp_path / "v.avi", frames)
    seen = list(recognizer.stream(video, detect_every=3))
    assert len(seen) == 25 and all(isinstance(f, Frame) for f in seen)
    ids = {f.track_id for frame in seen for f in frame.faces}
    assert ids == {1}
    assert sum("detect" in f.timings for f in seen) == 9  # every third frame; flow in between
    timeline = Timeline(recognizer.classes)
    closed = [r for frame in seen for r in timeline.add(frame)]
    assert [r.second for r in closed] == [0, 1]  # a second is reported as soon as it ends
    assert [r.second for r in timeline.flush()] == [2]
    assert [r.frames for r in timeline.records] == [10, 10, 5] and all(r.track_id == 1 for r in timeline.records)
    path = timeline.write(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(["second", "track_id", "emotion", "frames", *CLASSES, *POSE_COLUMNS]) and len(lines) == 4


def test_separate_streams_do_not_share_state(recognizer):
    a, b = recognizer.open_stream(), recognizer.open_stream()
    portrait = cv2.imread(str(MEDIA / "portrait.jpg"))
    angry = cv2.resize(cv2.imread(str(MEDIA / "angry.jpg")), portrait.shape[1::-1])
    a.push(angry, 0.0)
    a.push(np.zeros_like(portrait), 3.0)  # a's first face is gone and, after 2 s, forgotten
    face_a = a.push(portrait, 3.1).faces[0]
    face_b = b.push(portrait, 3.1).faces[0]
    assert (face_a.track_id, face_b.track_id) == (2, 1)  # a shared tracker would give b id 3
    # b's smoothing starts fresh: its scores are this frame's alone, not mixed with a's history.
    assert face_b.scores != face_a.scores or face_a.track_id != face_b.track_id


def _chromium_plays(path) -> str:
    """What headless Chromium makes of a video file: its width once it plays, or the error."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("MOODLENS_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        pytest.skip(f"no Chromium at {chromium}")
    page_file = path.with_suffix(".html")
    page_file.write_text(f'<video src="{path.name}" muted preload="auto"></video>')
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        result = page.evaluate("""() => new Promise(done => {
            const v = document.querySelector('video');
            v.onerror = () => done('error ' + v.error.code);
            v.play().then(() => setTimeout(() => done(v.currentTime > 0 ? 'plays ' + v.videoWidth : 'stuck'), 600),
                          e => done(v.error ? 'error ' + v.error.code : 'refused ' + e));
            setTimeout(() => done('timeout'), 15000);
        })""")
        browser.close()
    return result


def test_annotated_video_is_a_file_browsers_play(tmp_path):
    frame = cv2.resize(cv2.imread(str(MEDIA / "portrait.jpg")), (320, 240))
    with VideoSink(tmp_path / "out.webm", 10, (320, 240)) as sink:
        for i in range(20):
            sink.write(annotate(np.roll(frame, 3 * i, axis=1), [Face((100 + 3 * i, 40, 100, 130))]))
    assert _chromium_plays(tmp_path / "out.webm") == "plays 320"
    # what `moodlens video --out x.mp4` wrote before (MPEG-4 Part 2): Chromium refuses it
    old = cv2.VideoWriter(str(tmp_path / "old.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(20):
        old.write(frame)
    old.release()
    assert _chromium_plays(tmp_path / "old.mp4").startswith("error")
    with pytest.raises(SourceError, match="write a .webm"):
        VideoSink(tmp_path / "out.avi", 10, (320, 240))


def test_bad_videos_and_cameras(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        VideoFile(tmp_path / "none.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage" * 10)
    with pytest.raises(SourceError, match="not a readable video"):
        VideoFile(tmp_path / "bad.mp4")
    with pytest.raises(SourceError, match="no camera"):
        Camera(97)


def test_a_cut_short_video_is_analysed_with_one_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)  # noise: frames of about equal size, so a third of the bytes is ~a third of them
    whole = write_video(tmp_path / "whole.avi", [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(80)])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 3])
    video = VideoFile(cut)
    assert video.frame_count == 80  # the header still announces the whole recording
    with caplog.at_level(logging.WARNING, logger="moodlens.sources"):
        read = len(list(video))
        assert 20 <= read <= 30 and video.ended_at == read
        assert [r.getMessage() for r in caplog.records] == [
            f"{cut}: the file ends after {read} of 80 frames (cut short?); analysed what was there"]
        caplog.clear()
        assert len(list(VideoFile(whole))) == 80 and len(list(video.frames(0, 10))) == 10
        assert not caplog.records


@pytest.mark.parametrize("name", ["notes.mp4", "header.avi"])
def test_an_unreadable_video_gives_one_line_on_stderr(tmp_path, name):
    bad = tmp_path / name
    if name == "notes.mp4":
        bad.write_text("a text file, not a video\n")  # FFmpeg logged "moov atom not found"
    else:  # OpenCV's own AVI reader, tried after FFmpeg, printed "Unexpected element. Expected: LIST"
        whole = write_video(tmp_path / "whole.avi", [np.zeros((64, 64, 3), np.uint8)] * 5)
        bad.write_bytes(whole.read_bytes()[:3000])
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    done = subprocess.run([sys.executable, "-m", "moodlens.cli", "video", str(bad)], env=env, capture_output=True,
                          text=True, errors="replace", timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"moodlens: error: {bad}: not a readable video"]


def test_writing_a_webm_prints_nothing(tmp_path, capfd):
    with VideoSink(tmp_path / "out.webm", 10, (64, 48)) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert capfd.readouterr().err == "" and (tmp_path / "out.webm").stat().st_size > 0


def test_annotate_draws_boxes_in_emotion_colours(recognizer):
    image = cv2.imread(str(MEDIA / "portrait.jpg"))
    faces = recognizer.analyze(image)
    out = annotate(image, faces)
    assert out.shape == image.shape and not np.array_equal(out, image)
    x, y, w, h = faces[0].box
    assert np.abs(out[y:y + h, x].astype(int) - image[y:y + h, x]).sum() > 0  # the box's left edge


def three_faces_video(path, hidden: dict[int, tuple[float, float]], fps=10, seconds=6.0, speed=4):
    """Three faces drifting right at ``speed`` px/frame; face k is blanked out during ``hidden[k]``
    (start, end seconds), and keeps moving while out of sight."""
    heads = []
    for name in ("portrait.jpg", "angry.jpg", "crying.jpg"):
        image = cv2.imread(str(MEDIA / name))
        (x, y, w, h), = SHARED_FACES[name]
        m = h // 4
        crop = image[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        heads.append(cv2.resize(crop, (round(150 * crop.shape[1] / crop.shape[0]), 150)))
    frames = []
    for i in range(int(seconds * fps)):
        t, frame = i / fps, np.full((480, 800, 3), 90, np.uint8)
        for k, head in enumerate(heads):
            lo, hi = hidden.get(k, (-1, -1))
            if not lo <= t < hi:
                x0, y0 = 20 + 260 * k + speed * i // 2, 60 + 200 * (k % 2)
                frame[y0:y0 + head.shape[0], x0:x0 + head.shape[1]] = head
        frames.append(frame)
    return write_video(path, frames, fps)


def test_faces_hidden_for_up_to_2_s_keep_their_track_ids(tmp_path, recognizer):
    # Each face vanishes once, for 0.6-1.8 s, and reappears 20-70 px from where it was last seen.
    video = three_faces_video(tmp_path / "three.avi", {0: (1.0, 2.5), 1: (3.0, 4.8), 2: (2.0, 2.6)})
    frames = list(recognizer.stream(video, detect_every=3))
    assert len(frames) == 60
    counts = [len(f.faces) for f in frames]
    assert min(counts) < 3 == max(counts)  # the gaps were real: faces were missing
    assert {f.track_id for frame in frames for f in frame.faces} == {1, 2, 3}
    # a face gone for longer than 2 s gets a new id
    video = three_faces_video(tmp_path / "gone.avi", {1: (1.0, 3.5)})
    ids = {f.track_id for frame in recognizer.stream(video, detect_every=3) for f in frame.faces}
    assert ids == {1, 2, 3, 4}


def _face_closeup(recognizer, name: str) -> np.ndarray:
    """The photo's face, centred and filling a 320x320 frame: two of them share one spot."""
    image = cv2.imread(str(MEDIA / name))
    x, y, w, h = max(recognizer.detect(image), key=lambda f: f.box[2] * f.box[3]).box
    side = int(max(w, h) * 1.8)
    cx, cy = x + w // 2, y + h // 2
    padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
    return cv2.resize(padded[cy + side - side // 2: cy + side + side // 2, cx + side - side // 2: cx + side + side // 2],
                      (320, 320))


def test_a_cut_to_another_face_in_the_same_spot_starts_a_new_track(tmp_path, recognizer):
    """An edited video cuts from one person to another framed alike: the boxes overlap, but the
    second face gets its own id and its first frame's scores are its own, not smoothed with the
    first person's. A webcam's exposure drifting is not a cut."""
    calm, crying = _face_closeup(recognizer, "portrait.jpg"), _face_closeup(recognizer, "crying.jpg")
    frames = list(recognizer.stream(write_video(tmp_path / "cut.avi", [calm] * 10 + [crying] * 10)))
    ids = [{f.track_id for f in frame.faces} for frame in frames]
    assert ids[:10] == [{1}] * 10 and ids[10:] == [{2}] * 10
    [own] = recognizer.analyze_frame(frames_of(tmp_path / "cut.avi")[10]).faces
    [after_cut] = frames[10].faces
    assert max(abs(after_cut.scores[c] - own.scores[c]) for c in CLASSES) < 0.05
    drifting = [cv2.convertScaleAbs(calm, alpha=1 - 0.03 * i, beta=0) for i in range(20)]
    ids = {f.track_id for frame in recognizer.stream(write_video(tmp_path / "dim.avi", drifting)) for f in frame.faces}
    assert ids == {1}


def frames_of(path) -> list[np.ndarray]:
    return [image for _, _, image in VideoFile(path)]


def _scores(top: str, p: float) -> dict[str, float]:
    rest = (1 - p) / (len(CLASSES) - 1)
    return {c: (p if c == top else rest) for c in CLASSES}


@pytest.mark.parametrize("scene", ["group", "gallery", "edges", "tiny"])
def test_labels_and_score_panels_never_overlap_or_leave_the_frame(recognizer, scene):
    if scene == "group":
        image = cv2.imread(str(MEDIA / "group.jpg"))
        faces = recognizer.analyze(image)
    elif scene == "gallery":
        image, _ = make_gallery(shared_participants(MEDIA), 7, 7, (1280, 720))
        faces = recognizer.analyze(image)
    else:  # faces against every edge and corner, some large enough for panels, with track ids
        image = np.zeros((480, 640, 3) if scene == "edges" else (60, 90, 3), np.uint8)
        h, w = image.shape[:2]
        boxes = [(0, 0, 100, 120), (w - 100, 0, 100, 120), (0, h - 120, 100, 120), (w - 100, h - 120, 100, 120),
                 (w // 2 - 60, h // 2 - 60, 120, 120), (w // 2 + 70, h // 2 - 20, 20, 20)]
        faces = [Face(b, scores=_scores("sad", 0.9), emotion="sad", track_id=i) for i, b in enumerate(boxes)]
    assert faces
    placed = layout(faces, image.shape)
    height, width = image.shape[:2]
    for k, (_, _, (x, y, w, h), _) in enumerate(placed):
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        for _, _, other, _ in placed[k + 1:]:
            assert not (x < other[0] + other[2] and other[0] < x + w and y < other[1] + other[3] and other[1] < y + h)
    if scene != "tiny":
        assert {i for kind, i, _, _ in placed if kind == "label"} == set(range(len(faces)))  # room for every label
    assert annotate(image, faces).shape == image.shape


def test_uncertain_faces_show_their_real_best_guess(capsys):
    unsure = Face((0, 0, 50, 50), scores=_scores("sad", 0.28), status="uncertain")
    assert describe(unsure) == "uncertain (sad? 28%)" and describe(unsure, short=True) == "sad? 28%"
    assert describe(Face((0, 0, 50, 50), scores=_scores("happy", 0.87), emotion="happy")) == "happy 87%"
    assert describe(Face((0, 0, 5, 5), status=TOO_SMALL)) == "too small"


def test_crops_are_framed_for_the_detector_that_drew_the_box(recognizer):
    # YuNet's boxes are ~5 % larger than CenterFace's; each carries its calibrated crop scale
    assert recognizer.crop_scale == 1.0
    assert Recognizer(recognizer.model, "centerface").crop_scale == 1.05
    assert Recognizer(recognizer.model, recognizer.detector, crop_scale=1.2).crop_scale == 1.2
