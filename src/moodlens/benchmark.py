"""`moodlens benchmark`: how fast each stage and the whole pipeline run on this machine, and how
many faces the detector finds.

Frames are built from the shared photos (a portrait in a 640x480 webcam frame, close-ups, and
meeting galleries from :mod:`moodlens.gallery`) and, when the FER2013 CSV is at hand, from
PublicTest faces, so detection runs on real faces. CenterFace, the previous default, is timed
in the same run as the baseline.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from moodlens.detect import create_detector
from moodlens.errors import MoodLensError
from moodlens.gallery import (
    SHARED_FACES,
    closeup,
    fer_participants,
    make_gallery,
    match_boxes,
    shared_media_dir,
    shared_participants,
)
from moodlens.pose import estimate_pose
from moodlens.recognizer import Recognizer


def time_ms(*fns: Callable[[], object], repeat: int, warmup: int = 3,
            stat: str = "median") -> float | list[float]:
    """Median (or, with ``stat="min"``, best) milliseconds of each of ``fns``, called in turn
    ``repeat`` times, so that two things compared share the same moments of a busy machine; one
    figure for one function."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = np.zeros((repeat, len(fns)))
    for i in range(repeat):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i, j] = time.perf_counter() - t0
    ms = ((np.min if stat == "min" else np.median)(times, axis=0) * 1e3).tolist()
    return ms[0] if len(fns) == 1 else ms


def webcam_frame(media: Path) -> np.ndarray:
    """The shared portrait letterboxed into a 640x480 frame: one face, as a webcam sees it."""
    image = cv2.imread(str(media / "portrait.jpg"))
    if image is None:
        raise MoodLensError(f"{media / 'portrait.jpg'}: missing; pass --media with the shared photos")
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.zeros((480, 640, 3), np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def default_fer_csv(media: Path) -> Path:
    """``shared/datasets/fer2013/fer2013.csv.gz`` beside ``shared/media``."""
    return media.parent / "datasets" / "fer2013" / "fer2013.csv.gz"


def publictest_faces(csv: Path, required: bool = False) -> np.ndarray | None:
    """The FER2013 PublicTest faces, in file order; None without the CSV unless it is ``required``."""
    from moodlens.training.data import load_fer2013

    return load_fer2013(csv, splits="PublicTest").images if required or csv.is_file() else None


def publictest_gallery(faces: np.ndarray, start: int = 0, seed: int = 0) -> tuple[np.ndarray, list]:
    """A 10x10 1280x720 gallery of the PublicTest faces ``start`` to ``start + 100``."""
    return make_gallery(fer_participants(faces[start:start + 100]), 10, 10, size=(1280, 720), seed=seed)


def run_benchmark(model: str | None = None, detector: str | None = None, repeat: int = 30,
                  media: str | Path | None = None, fer_csv: str | Path | None = None, stat: str = "median") -> dict:
    """Speed and faces found; ``stat`` is the statistic over the ``repeat`` timed runs of each
    figure: ``"median"``, or ``"min"`` (the best run: steadier when other jobs share the CPU)."""
    if stat not in ("median", "min"):
        raise MoodLensError(f"unknown statistic {stat!r}; choose median or min")
    timed = functools.partial(time_ms, repeat=repeat, stat=stat)
    recognizer = Recognizer(model=model, detector=detector)
    if media is None and not (shared_media_dir() / "portrait.jpg").is_file():
        # An installed package has no photos (they are never shipped): time what needs none.
        return _speed_without_photos(recognizer, timed, stat, repeat)
    media = Path(media) if media else shared_media_dir()
    one_face = webcam_frame(media)  # first: it says clearly when the photos are missing
    people = shared_participants(media)
    galleries = {  # name -> (frame, true boxes)
        "3x3 640x480": make_gallery(people, 3, 3, size=(640, 480)),
        "5x5 1280x720 (20 faces)": make_gallery(people, 5, 5, size=(1280, 720), count=20),
        "7x7 1280x720": make_gallery(people, 7, 7, size=(1280, 720)),
        "7x7 1920x1080": make_gallery(people, 7, 7, size=(1920, 1080)),
        "10x10 1280x720": make_gallery(people, 10, 10, size=(1280, 720)),
    }
    # Only the default CSV may be missing: one asked for by name must be read.
    fer = publictest_faces(Path(fer_csv) if fer_csv else default_fer_csv(media), required=bool(fer_csv))
    if fer is not None:
        galleries["10x10 1280x720 PublicTest"] = publictest_gallery(fer)
    gallery_720, truth_720 = galleries["5x5 1280x720 (20 faces)"]
    gallery_1080, truth_1080 = galleries["7x7 1920x1080"]

    result = _classifier_speed(recognizer, timed, stat, repeat)
    sizes = {"640x480": one_face, "1280x720": gallery_720, "1920x1080": gallery_1080}
    # CenterFace (the previous default) is the baseline, timed in alternation with the detector
    baseline = create_detector("centerface") if recognizer.detector.name != "centerface" else None
    for name, frame in sizes.items():
        if baseline is None:
            result["detector_ms"][name] = timed(lambda f=frame: recognizer.detect(f))
        else:
            result["detector_ms"][name], result["centerface_ms"][name] = timed(
                lambda f=frame: recognizer.detect(f), lambda f=frame: baseline.detect(f))

    def found(frame: np.ndarray, truth: list) -> dict:
        tp, fp, _ = match_boxes([f.box for f in recognizer.detect(frame)], truth)
        return {"found": tp, "faces": len(truth), "false_positives": fp}

    group = cv2.imread(str(media / "group.jpg"))
    if group is not None:
        result["found"]["group.jpg"] = found(group, SHARED_FACES["group.jpg"])
    close = [found(frame, [box]) for frame, box in (closeup(image, face) for image, face in people)]
    result["found"]["close-ups 90% of 640x480"] = {key: sum(c[key] for c in close) for key in close[0]}
    for name, (frame, truth) in galleries.items():
        result["found"][name] = found(frame, truth)

    def fps(frame: np.ndarray) -> float:
        return 1e3 / timed(lambda: recognizer.analyze_frame(frame))

    def stream_fps(frame: np.ndarray, detect_every: int = 3) -> float:
        # Frames of a stream alternate between detection and flow, so time whole cycles: a
        # median over single frames would only see the cheap flow frames.
        stream = recognizer.open_stream(detect_every)
        cycle = lambda: [stream.push(frame) for _ in range(detect_every)]  # noqa: E731
        return detect_every * 1e3 / timed(cycle)

    # The head pose is part of every frame's time above; timed alone, it is its share of them.
    face = recognizer.detect(one_face)[0]
    pose_ms = timed(lambda: estimate_pose(face.landmarks, one_face.shape[1]))
    result["end_to_end"] = {
        "one_face_640x480_fps": fps(one_face),
        "one_face_640x480_stream_fps": stream_fps(one_face),
        "gallery_20_faces_1280x720_fps": fps(gallery_720),
        "gallery_20_faces_1280x720_stream_fps": stream_fps(gallery_720),
        "gallery_49_faces_1920x1080_fps": fps(gallery_1080),
    }
    frame_ms = 1e3 / result["end_to_end"]["one_face_640x480_fps"]
    result["pose"] = {"ms_one_face": pose_ms, "share_of_one_face_640x480": pose_ms / frame_ms}
    return result


def _classifier_speed(recognizer: Recognizer, timed, stat: str, repeat: int) -> dict:
    """The result's frame: machine facts and the classifier's speed on random crops."""
    rng = np.random.default_rng(0)
    size = recognizer.model.spec.input_size
    crops = rng.integers(0, 256, (64, size, size), dtype=np.uint8)
    big_crops = rng.integers(0, 256, (64, 120, 120, 3), dtype=np.uint8)
    m = recognizer.model
    return {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_average": list(os.getloadavg())},
        "statistic": stat,
        "detector": recognizer.detector.name,
        "classifier": {
            "crops_per_s_batch64": 64e3 / timed(lambda: m.predict(crops)),
            "crops_per_s_batch64_from_120px_bgr": 64e3 / timed(lambda: m.predict(big_crops)),
            "ms_one_crop": time_ms(lambda: m.predict(crops[:1]), repeat=repeat * 3, stat=stat),
        },
        "detector_ms": {},
        "centerface_ms": {},
        "found": {},
        "end_to_end": {},
    }


def _speed_without_photos(recognizer: Recognizer, timed, stat: str, repeat: int) -> dict:
    """Classifier and detector speed on random frames: a detector's time depends on the frame's
    size, not on what it shows. Faces found and end-to-end figures need the photos."""
    result = _classifier_speed(recognizer, timed, stat, repeat)
    rng = np.random.default_rng(1)
    for w, h in ((640, 480), (1280, 720), (1920, 1080)):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        result["detector_ms"][f"{w}x{h}"] = timed(lambda f=frame: recognizer.detect(f))
    result["photos"] = None
    return result


def format_benchmark(r: dict) -> str:
    c, d, e = r["classifier"], r["detector_ms"], r["end_to_end"]
    m = r["machine"]
    lines = [
        f"machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}, "
        f"load average {m['load_average'][0]:.1f} at the start; {r['statistic']} of the timed runs",
        f"classifier: {c['crops_per_s_batch64']:.0f} crops/s (batches of 64, 48x48 grey), "
        f"{c['crops_per_s_batch64_from_120px_bgr']:.0f} crops/s from 120x120 BGR, {c['ms_one_crop']:.2f} ms for one crop",
        f"detector ({r['detector']}): " + ", ".join(f"{k} {v:.1f} ms" for k, v in d.items()),
    ]
    if r["centerface_ms"]:
        lines.append("  centerface in alternation: " + ", ".join(
            f"{k} {v:.1f} ms ({v / d[k]:.1f}x the time)" for k, v in r["centerface_ms"].items()))
    if "photos" in r:
        lines.append("detector timed on random frames; faces found and end-to-end speed need the shared photos "
                     "(moodlens benchmark --media DIR, or MOODLENS_MEDIA)")
        return "\n".join(lines)
    lines += [
        "faces found: " + "; ".join(f"{k} {v['found']}/{v['faces']} (fp {v['false_positives']})"
                                    for k, v in r["found"].items()),
        f"one face, 640x480: {e['one_face_640x480_fps']:.1f} frames/s detecting every frame, "
        f"{e['one_face_640x480_stream_fps']:.1f} frames/s as a stream (detector every 3rd frame)",
        f"gallery 20 faces, 1280x720: {e['gallery_20_faces_1280x720_fps']:.1f} frames/s "
        f"({e['gallery_20_faces_1280x720_stream_fps']:.1f} as a stream)",
        f"gallery 49 faces, 1920x1080: {e['gallery_49_faces_1920x1080_fps']:.1f} frames/s",
        f"head pose: {r['pose']['ms_one_face']:.2f} ms a face, {r['pose']['share_of_one_face_640x480']:.1%} "
        "of a one-face 640x480 frame detected every frame",
    ]
    return "\n".join(lines)
