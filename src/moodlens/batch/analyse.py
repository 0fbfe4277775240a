"""One chunk of one video through the pipeline, in a worker process: decode at the analysis
rate, detect, classify, track within the chunk, and close per-second records.

A worker process loads the models with its first chunk and keeps them for the chunks after.
The result is plain JSON-ready data, sent back to the driver (which alone writes files, so
workers on other machines need no shared output folder).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import cv2

from moodlens.aggregate import Timeline
from moodlens.batch.plan import Chunk, Settings
from moodlens.classify import EmotionModel
from moodlens.detect import Detector, create_detector
from moodlens.recognizer import Recognizer
from moodlens.sources import VideoFile

_loaded: tuple[tuple, Recognizer] | None = None


def worker_recognizer(settings: Settings) -> tuple[Recognizer, float]:
    """This process's recognizer for ``settings``, and the seconds spent loading it now (0 when
    it was already loaded)."""
    global _loaded
    key = (settings.model, settings.detector)
    if _loaded is not None and _loaded[0] == key:
        return _loaded[1], 0.0
    t0 = time.perf_counter()
    # One thread per worker: the workers are the parallelism; N workers each running a thread
    # per core would fight over the cores, and results would depend on the thread count.
    cv2.setNumThreads(1)
    recognizer = Recognizer(model=EmotionModel(settings.model, threads=1), detector=_one_thread_detector(settings.detector))
    _loaded = (key, recognizer)
    return recognizer, time.perf_counter() - t0


def _one_thread_detector(name: str | None) -> Detector:
    try:
        return create_detector(name, threads=1)
    except TypeError:  # a backend without a thread setting (haar)
        return create_detector(name)


def analyse_chunk(chunk: Chunk, settings: Settings) -> dict:
    """The chunk's per-second records (track ids local to the chunk), where each track starts and
    ends (time and box, to join tracks across chunk borders), timings (wall and CPU seconds:
    on a busy machine the CPU time still tells what a dedicated core would do), and the frame at
    which the file ran out of frames before the chunk's end (``ended_at``; None when it did not).

    A chunk that cannot be read returns ``{"error": ...}`` instead: a broken file fails its
    chunks, never the worker.
    """
    tracks: dict[int, list] = {}  # local track id -> [first time, first box, last time, last box]
    frames, load_s = 0, 0.0
    try:
        recognizer, load_s = worker_recognizer(settings)
        t0, cpu0 = time.perf_counter(), time.process_time()
        video = VideoFile(chunk.path, chunk.stride)
        stream = recognizer.open_stream(settings.detect_every)
        timeline = Timeline(recognizer.classes)
        for index, t, image in video.frames(chunk.start, chunk.end):
            frame = stream.push(image, t, index)
            timeline.add(frame)
            frames += 1
            for face in frame.faces:
                ends = tracks.setdefault(face.track_id, [t, list(face.box), t, list(face.box)])
                ends[2], ends[3] = t, list(face.box)
        timeline.flush()
    except Exception as exc:  # a decoder (or, on another machine, model) failure is this chunk's error
        return {"error": str(exc) or type(exc).__name__, "pid": os.getpid(), "load_s": load_s}
    return {"records": [asdict(r) for r in timeline.records],
            "tracks": [[track_id, *ends] for track_id, ends in tracks.items()],
            "frames": frames, "analysis_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
            "load_s": load_s, "pid": os.getpid(), "ended_at": video.ended_at}
