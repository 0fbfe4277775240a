"""The recognition pipeline: detect -> pose -> crop -> classify (one batch per frame) -> track/smooth.

``Recognizer.analyze`` reads stills; ``Recognizer.open_stream`` returns a per-video state
(tracker, flow) for live or recorded video, so several streams never share smoothing buffers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from moodlens.classify import EmotionModel
from moodlens.crop import DEFAULT_SCALE, DEFAULT_SHIFT, crop_faces
from moodlens.detect import Detector, ScalePlanner, create_detector
from moodlens.faces import TOO_SMALL, UNCERTAIN, Face, Frame
from moodlens.pose import estimate_pose
from moodlens.preprocess import to_grey
from moodlens.sources import Camera, VideoFile, open_source, read_image
from moodlens.track import FlowShifter, SceneCut, Tracker


class Recognizer:
    """Faces and their emotions in images and video.

    Args:
        model: an :class:`EmotionModel`, a path to a MoodLens ONNX model, or None for the
            shipped model.
        detector: a detector instance or backend name (None: the default CNN detector).
        min_face: faces whose box is smaller than this many pixels are marked ``too_small``
            instead of guessed.
        uncertain_below: faces whose top probability is below this are marked ``uncertain``.
        max_faces: at most this many faces per frame (largest first) are classified.
        crop_scale, crop_shift: framing of the face crop (see :mod:`moodlens.crop`); the default
            scale is the detector's own ``crop_scale``, calibrated for its boxes.
        align: rotate crops upright from the eye landmarks. Off by default: FER2013's faces are
            not aligned, and aligned crops of them classified 1 point worse (docs/crop.md).

    >>> r = Recognizer()
    >>> faces = r.analyze("group.jpg")   # doctest: +SKIP
    """

    def __init__(self, model: EmotionModel | str | Path | None = None, detector: Detector | str | None = None,
                 min_face: int = 16, uncertain_below: float = 0.3, max_faces: int = 100,
                 crop_scale: float | None = None, crop_shift: float = DEFAULT_SHIFT, align: bool = False,
                 tta: bool = False):
        self.model = model if isinstance(model, EmotionModel) else EmotionModel(model)
        self.detector = detector if detector is not None and not isinstance(detector, str) else create_detector(detector)
        self.min_face, self.uncertain_below, self.max_faces = min_face, uncertain_below, max_faces
        if crop_scale is None:
            crop_scale = getattr(self.detector, "crop_scale", DEFAULT_SCALE)
        self.crop_scale, self.crop_shift, self.align = crop_scale, crop_shift, align
        self.tta = tta  # mirror averaging: for still images, where time matters less than accuracy

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def detect(self, image: np.ndarray, scale: float | None = None) -> list[Face]:
        """Faces in ``image``, largest first, at most ``max_faces``, with their head poses;
        ``scale`` is the detector's input scale (None: the detector chooses it from the frame)."""
        faces = self.detector.detect(image, scale)
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        faces = faces[: self.max_faces]
        for face in faces:
            face.pose = estimate_pose(face.landmarks, image.shape[1])
        return faces

    def classify(self, image: np.ndarray, faces: list[Face], tta: bool | None = None) -> list[Face]:
        """Fill scores and emotion of ``faces`` in place, all faces in one model batch; ``tta``
        overrides the recognizer's mirror averaging for this call."""
        readable = []
        for f in faces:
            if min(f.box[2], f.box[3]) >= self.min_face:
                readable.append(f)
            else:
                f.scores, f.emotion, f.status = {}, None, TOO_SMALL
        if readable:
            crops = crop_faces(image, readable, self.model.spec.input_size, self.crop_scale, self.crop_shift, self.align)
            for face, p in zip(readable, self.model.predict(crops, tta=self.tta if tta is None else tta)):
                face.scores = dict(zip(self.classes, p.tolist()))
        return faces

    def label(self, faces: list[Face]) -> list[Face]:
        """Set ``emotion``/``status`` from (possibly smoothed) scores."""
        for f in faces:
            if not f.scores:
                continue
            best = max(f.scores, key=f.scores.get)
            sure = f.scores[best] >= self.uncertain_below
            f.emotion, f.status = (best, "ok") if sure else (None, UNCERTAIN)
        return faces

    def analyze(self, image: str | Path | np.ndarray) -> list[Face]:
        """Faces with emotions in a still image (a BGR array or a path); ``track_id`` is None."""
        return self.analyze_frame(read_image(image)).faces

    def analyze_frame(self, image: np.ndarray, index: int = 0, t: float = 0.0, tta: bool | None = None) -> Frame:
        """Like :meth:`analyze`, with per-stage timings, as a :class:`Frame`; ``tta`` as in :meth:`classify`."""
        t0 = time.perf_counter()
        faces = self.detect(image)
        t1 = time.perf_counter()
        self.label(self.classify(image, faces, tta))
        t2 = time.perf_counter()
        return Frame(faces, index, t, image.shape[:2], {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3})

    def open_stream(self, detect_every: int = 3, smoothing_s: float = 0.5, emotions: bool = True) -> FaceStream:
        """Per-video state for :meth:`FaceStream.push`; one per video or live connection.
        ``emotions=False`` never runs the emotion model: faces, tracks and head poses only (an
        attention-only session)."""
        return FaceStream(self, detect_every, smoothing_s, emotions)

    def stream(self, source: str | int | Path | VideoFile | Camera, detect_every: int = 3,
               keep_image: bool = False) -> Iterator[Frame]:
        """Frames with tracked, smoothed faces from a video file, a camera index or a source."""
        opened_here = not isinstance(source, (VideoFile, Camera))
        src = open_source(source) if opened_here else source
        faces = self.open_stream(detect_every)
        try:
            for index, t, image in src:
                frame = faces.push(image, t, index)
                if keep_image:
                    frame.image = image
                yield frame
        finally:
            if opened_here and isinstance(src, Camera):
                src.close()


class FaceStream:
    """Tracking state of one video: runs the detector every ``detect_every`` frames, at the
    scale a :class:`~moodlens.detect.ScalePlanner` picks from where faces were last seen, and
    moves the last boxes by optical flow in between; every frame is classified (unless
    ``emotions`` is False) and smoothed. After a scene cut it detects at once and starts new tracks."""

    def __init__(self, recognizer: Recognizer, detect_every: int = 3, smoothing_s: float = 0.5, emotions: bool = True):
        self.recognizer = recognizer
        self.emotions = emotions
        self.detect_every = max(1, detect_every)
        self.tracker = Tracker(recognizer.classes, smoothing_s=smoothing_s)
        self.flow = FlowShifter()
        self.cut = SceneCut()
        self.planner = ScalePlanner(recognizer.detector)
        self.faces: list[Face] = []
        self.count = 0

    def push(self, image: np.ndarray, t: float | None = None, index: int | None = None) -> Frame:
        r = self.recognizer
        t = time.monotonic() if t is None else t
        index = self.count if index is None else index
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        grey = to_grey(image)
        cut = self.cut(grey)
        if cut:
            self.tracker.reset()
        if cut or self.count % self.detect_every == 0:
            self.faces = r.detect(image, self.planner.scale(image.shape, self.faces, t))
            self.flow.reset(grey)
            timings["detect"] = (time.perf_counter() - t0) * 1e3
        else:
            self.flow.shift(grey, self.faces)
            timings["flow"] = (time.perf_counter() - t0) * 1e3
        self.count += 1
        t1 = time.perf_counter()
        # Fresh records for this frame: self.faces keeps the raw detections for the next flow step
        # (flow only moves a face, which leaves its pose as it was).
        faces = [Face(f.box, f.landmarks, f.detection_score, pose=f.pose) for f in self.faces]
        if self.emotions:
            r.classify(grey, faces)
        t2 = time.perf_counter()
        r.label(self.tracker.update(faces, t))
        timings.update(classify=(t2 - t1) * 1e3, track=(time.perf_counter() - t2) * 1e3)
        return Frame(faces, index, t, image.shape[:2], timings)
