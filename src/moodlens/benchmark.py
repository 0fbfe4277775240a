"""`moodlens benchmark`: how fast each stage and the whole pipeline run on this machine.

Frames are built from the shared photos (a portrait in a 640x480 webcam frame, and meeting
galleries from :mod:`moodlens.gallery`), so detection runs on real faces.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from moodlens.errors import MoodLensError
from moodlens.gallery import make_gallery, match_boxes, shared_media_dir, shared_participants
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


def run_benchmark(model: str | None = None, detector: str | None = None, repeat: int = 30,
                  media: str | Path | None = None) -> dict:
    media = Path(media) if media else shared_media_dir()
    recognizer = Recognizer(model=model, detector=detector)
    one_face = webcam_frame(media)  # first: it says clearly when the photos are missing
    people = shared_participants(media)
    gallery_720, truth_720 = make_gallery(people, 5, 5, size=(1280, 720), count=20)
    gallery_1080, truth_1080 = make_gallery(people, 7, 7, size=(1920, 1080))
    rng = np.random.default_rng(0)
    size = recognizer.model.spec.input_size
    crops = rng.integers(0, 256, (64, size, size), dtype=np.uint8)
    big_crops = rng.integers(0, 256, (64, 120, 120, 3), dtype=np.uint8)

    m = recognizer.model
    batch_ms = _median_ms(lambda: m.predict(crops), repeat)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "detector": recognizer.detector.name,
        "classifier": {
            "crops_per_s_batch64": 64e3 / batch_ms,
            "crops_per_s_batch64_from_120px_bgr": 64e3 / _median_ms(lambda: m.predict(big_crops), repeat),
            "ms_one_crop": _median_ms(lambda: m.predict(crops[:1]), repeat * 3),
        },
        "detector_ms": {},
        "end_to_end": {},
    }
    for name, frame in (("640x480", one_face), ("1280x720", gallery_720), ("1920x1080", gallery_1080)):
        result["detector_ms"][name] = _median_ms(lambda f=frame: recognizer.detect(f), repeat)

    def fps(frame: np.ndarray) -> float:
        return 1e3 / _median_ms(lambda: recognizer.analyze_frame(frame), repeat)

    def stream_fps(frame: np.ndarray, detect_every: int = 3) -> float:
        # Frames of a stream alternate between detection and flow, so time whole cycles: a
        # median over single frames would only see the cheap flow frames.
        stream = recognizer.open_stream(detect_every)
        cycle = lambda: [stream.push(frame) for _ in range(detect_every)]  # noqa: E731
        return detect_every * 1e3 / _median_ms(cycle, repeat)

    def found(frame: np.ndarray, truth: list) -> float:
        tp, _, _ = match_boxes([f.box for f in recognizer.detect(frame)], truth)
        return tp / len(truth)

    result["end_to_end"] = {
        "one_face_640x480_fps": fps(one_face),
        "one_face_640x480_stream_fps": stream_fps(one_face),
        "gallery_20_faces_1280x720_fps": fps(gallery_720),
        "gallery_20_faces_1280x720_stream_fps": stream_fps(gallery_720),
        "gallery_20_faces_1280x720_found": found(gallery_720, truth_720),
        "gallery_49_faces_1920x1080_fps": fps(gallery_1080),
        "gallery_49_faces_1920x1080_found": found(gallery_1080, truth_1080),
    }
    return result


def format_benchmark(r: dict) -> str:
    c, d, e = r["classifier"], r["detector_ms"], r["end_to_end"]
    return "\n".join([
        f"machine: {r['machine']['cpus']} CPUs, {r['machine']['processor']}, Python {r['machine']['python']}",
        f"classifier: {c['crops_per_s_batch64']:.0f} crops/s (batches of 64, 48x48 grey), "
        f"{c['crops_per_s_batch64_from_120px_bgr']:.0f} crops/s from 120x120 BGR, {c['ms_one_crop']:.2f} ms for one crop",
        f"detector ({r['detector']}): " + ", ".join(f"{k} {v:.1f} ms" for k, v in d.items()),
        f"one face, 640x480: {e['one_face_640x480_fps']:.1f} frames/s detecting every frame, "
        f"{e['one_face_640x480_stream_fps']:.1f} frames/s as a stream (detector every 3rd frame)",
        f"gallery 20 faces, 1280x720: {e['gallery_20_faces_1280x720_fps']:.1f} frames/s "
        f"({e['gallery_20_faces_1280x720_stream_fps']:.1f} as a stream), "
        f"{e['gallery_20_faces_1280x720_found']:.0%} of faces found",
        f"gallery 49 faces, 1920x1080: {e['gallery_49_faces_1920x1080_fps']:.1f} frames/s, "
        f"{e['gallery_49_faces_1920x1080_found']:.0%} of faces found",
    ])
