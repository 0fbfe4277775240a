"""The one record passed between pipeline stages: the faces found in a frame.

detect fills ``box``/``landmarks``/``detection_score``; pose fills ``pose`` from the landmarks;
classify fills ``scores``/``emotion``; track fills ``track_id`` and smooths ``scores`` and
``pose``. Every consumer (CLI, storage, web, desktop) reads the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Pose:
    """A head's direction in degrees, in the convention of :mod:`moodlens.pose` (yaw > 0 turned
    to its own left, pitch > 0 up, roll > 0 towards its own left shoulder), and how well the
    generic face fits its landmarks (0-1)."""

    yaw: float
    pitch: float
    roll: float
    confidence: float

    def to_dict(self) -> dict:
        return {"yaw": round(self.yaw, 1), "pitch": round(self.pitch, 1), "roll": round(self.roll, 1),
                "confidence": round(self.confidence, 3)}


# Why a face carries no emotion: it is too small to read, or the model is unsure; a live
# participant's frame with nobody in it is recorded as a face of status NO_FACE.
TOO_SMALL = "too_small"
UNCERTAIN = "uncertain"
NO_FACE = "no_face"


@dataclass
class Face:
    """One face in one frame.

    Attributes:
        box: (x, y, w, h) in pixels of the frame.
        landmarks: (5, 2) float array of eyes, nose, mouth corners in pixels, or None.
        detection_score: the detector's confidence, 0-1.
        scores: class name -> probability (smoothed over time for tracked faces); empty until
            classified.
        emotion: the most likely class name, or None when the face cannot be judged (see
            ``status``).
        status: ``"ok"``, ``"too_small"``, ``"uncertain"`` or (a placeholder for a live
            participant's empty frame) ``"no_face"``.
        track_id: a stable id across video frames; None for still images.
        pose: where the head points (:mod:`moodlens.pose`), or None without usable landmarks.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray | None = None
    detection_score: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)
    emotion: str | None = None
    status: str = "ok"
    track_id: int | None = None
    pose: Pose | None = None

    @property
    def confidence(self) -> float:
        """Probability of the reported emotion (0 when there is none)."""
        return self.scores.get(self.emotion, 0.0) if self.emotion else 0.0

    def to_dict(self, emotions: bool = True) -> dict:
        """JSON-ready form, as served by the CLI and the web API; without ``emotions`` (a session
        that reads none) no emotion or scores field at all, not even an empty one."""
        out = {
            "box": [int(v) for v in self.box],
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 1).tolist(),
            "detection_score": round(float(self.detection_score), 4),
            "emotion": self.emotion,
            "status": self.status,
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
            "track_id": self.track_id,
            "pose": None if self.pose is None else self.pose.to_dict(),
        }
        if not emotions:
            del out["emotion"], out["scores"]
        return out


@dataclass
class Frame:
    """The faces of one frame, with where and when the frame came from.

    Attributes:
        faces: the faces found, largest first.
        index: frame number within its source (0 for a still image).
        time: seconds since the start of the source (video time, or wall time for live sources).
        shape: (height, width) of the frame.
        timings: milliseconds per stage (``detect`` or ``flow``, ``classify``, ``track``), for benchmarks.
        image: the BGR frame itself, when the consumer asked to keep it (for drawing).
    """

    faces: list[Face]
    index: int = 0
    time: float = 0.0
    shape: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"index": self.index, "time": round(self.time, 3), "shape": list(self.shape),
                "faces": [f.to_dict() for f in self.faces]}
