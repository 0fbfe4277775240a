"""`moodlens benchmark`: how fast each stage and the whole pipeline run on this machine, and how
many faces the detector finds.

Frames are built from the shared photos (a portrait in a 640x480 webcam frame, close-ups, and
meeting galleries from :mod:`moodlens.gallery`) and, when the FER2013 CSV is at hand, from
PublicTest faces, so detection runs on real faces. CenterFace, the previous default, is timed
in the same run as the baseline.
"""

from __future__ import annotations

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
from moodlens.recognizer import Recognizer


def _median_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


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


def publictest_gallery(csv: Path) -> tuple[np.ndarray, list] | None:
    """A 10x10 1280x720 gallery of the first 100 PublicTest faces (None without the CSV)."""
    from moodlens.data import load_fer2013

    if not csv.is_file():
        return None
    faces = load_fer2013(csv, splits="PublicTest").images[:100]
    return make_gallery(fer_participants(faces), 10, 10, size=(1280, 720))


def run_benchmark(model: str | None = None, detector: str | None = None, repeat: int = 30,
                  media: str | Path | None = None, fer_csv: str | Path | None = None) -> dict:
    media = Path(media) if media else shared_media_dir()
    recognizer = Recognizer(model=model, detector=detector)
    one_face = webcam_frame(media)  # first: it says clearly when the photos are missing
    people = shared_participants(media)
    galleries = {  # name -> (frame, true boxes)
        "3x3 640x480": make_gallery(people, 3, 3, size=(640, 480)),
        "5x5 1280x720 (20 faces)": make_gallery(people, 5, 5, size=(1280, 720), count=20),
        "7x7 1280x720": make_gallery(people, 7, 7, size=(1280, 720)),
        "7x7 1920x1080": make_gallery(people, 7, 7, size=(1920, 1080)),
        "10x10 1280x720": make_gallery(people, 10, 10, size=(1280, 720)),
    }
    fer = publictest_gallery(Path(fer_csv) if fer_csv else default_fer_csv(media))
    if fer is not None:
        galleries["10x10 1280x720 PublicTest"] = fer
    gallery_720, truth_720 = galleries["5x5 1280x720 (20 faces)"]
    gallery_1080, truth_1080 = galleries["7x7 1920x1080"]
    rng = np.random.default_rng(0)
    size = recognizer.model.spec.input_size
    crops = rng.integers(0, 256, (64, size, size), dtype=np.uint8)
    big_crops = rng.integers(0, 256, (64, 120, 120, 3), dtype=np.uint8)

    m = recognizer.model
    batch_ms = _median_ms(lambda: m.predict(crops), repeat)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_average": list(os.getloadavg())},
        "detector": recognizer.detector.name,
        "classifier": {
            "crops_per_s_batch64": 64e3 / batch_ms,
            "crops_per_s_batch64_from_120px_bgr": 64e3 / _median_ms(lambda: m.predict(big_crops), repeat),
            "ms_one_crop": _median_ms(lambda: m.predict(crops[:1]), repeat * 3),
        },
        "detector_ms": {},
        "found": {},
        "end_to_end": {},
    }
    for name, frame in (("640x480", one_face), ("1280x720", gallery_720), ("1920x1080", gallery_1080)):
        result["detector_ms"][name] = _median_ms(lambda f=frame: recognizer.detect(f), repeat)
    if recognizer.detector.name != "centerface":
        baseline = create_detector("centerface")
        result["centerface_ms_640x480"] = _median_ms(lambda: baseline.detect(one_face), repeat)

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
        return 1e3 / _median_ms(lambda: recognizer.analyze_frame(frame), repeat)

    def stream_fps(frame: np.ndarray, detect_every: int = 3) -> float:
        # Frames of a stream alternate between detection and flow, so time whole cycles: a
        # median over single frames would only see the cheap flow frames.
        stream = recognizer.open_stream(detect_every)
        cycle = lambda: [stream.push(frame) for _ in range(detect_every)]  # noqa: E731
        return detect_every * 1e3 / _median_ms(cycle, repeat)

    result["end_to_end"] = {
        "one_face_640x480_fps": fps(one_face),
        "one_face_640x480_stream_fps": stream_fps(one_face),
        "gallery_20_faces_1280x720_fps": fps(gallery_720),
        "gallery_20_faces_1280x720_stream_fps": stream_fps(gallery_720),
        "gallery_49_faces_1920x1080_fps": fps(gallery_1080),
    }
    return result


def format_benchmark(r: dict) -> str:
    c, d, e = r["classifier"], r["detector_ms"], r["end_to_end"]
    m = r["machine"]
    lines = [
        f"machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}, "
        f"load average {m['load_average'][0]:.1f} at the start",
        f"classifier: {c['crops_per_s_batch64']:.0f} crops/s (batches of 64, 48x48 grey), "
        f"{c['crops_per_s_batch64_from_120px_bgr']:.0f} crops/s from 120x120 BGR, {c['ms_one_crop']:.2f} ms for one crop",
        f"detector ({r['detector']}): " + ", ".join(f"{k} {v:.1f} ms" for k, v in d.items()),
    ]
    if "centerface_ms_640x480" in r:
        base = r["centerface_ms_640x480"]
        lines.append(f"  centerface at 640x480 in the same run: {base:.1f} ms ({base / d['640x480']:.1f}x slower)")
    lines += [
        "faces found: " + "; ".join(f"{k} {v['found']}/{v['faces']} (fp {v['false_positives']})"
                                    for k, v in r["found"].items()),
        f"one face, 640x480: {e['one_face_640x480_fps']:.1f} frames/s detecting every frame, "
        f"{e['one_face_640x480_stream_fps']:.1f} frames/s as a stream (detector every 3rd frame)",
        f"gallery 20 faces, 1280x720: {e['gallery_20_faces_1280x720_fps']:.1f} frames/s "
        f"({e['gallery_20_faces_1280x720_stream_fps']:.1f} as a stream)",
        f"gallery 49 faces, 1920x1080: {e['gallery_49_faces_1920x1080_fps']:.1f} frames/s",
    ]
    return "\n".join(lines)
