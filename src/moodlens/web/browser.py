"""Browser mode: the student's own browser detects faces, estimates their head poses and
classifies them (static/recognize.js on onnxruntime-web) and sends only those numbers; the server
smooths, labels, aggregates and stores them exactly as it does the faces it finds itself in a
student's frames.

- :func:`browser_config` tells the page which ONNX files to run and every parameter of the
  pipeline, read from the server's own :class:`~moodlens.recognizer.Recognizer` (detector
  settings, crop framing, readability limits), from :mod:`moodlens.pose` (the generic face and
  the pose's limits) and from the emotion model's ONNX metadata.
- :func:`session_emotions` says whether a session reads emotions: an attention-only session's
  page never loads the emotion model and sends faces and poses only.
- :data:`router` serves that configuration and the two model files.
- :class:`ScoreStream` turns one student's score messages into the same per-frame
  :class:`~moodlens.faces.Face` records a :class:`~moodlens.recognizer.FaceStream` gives.
- :class:`CrossOriginIsolation` marks the student page cross-origin isolated, which lets
  onnxruntime-web use threads (SharedArrayBuffer).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from moodlens.faces import TOO_SMALL, Face, Pose
from moodlens.pose import POSE_CONSTANTS
from moodlens.recognizer import Recognizer
from moodlens.track import Tracker
from moodlens.web.deps import State, teacher_or_student

# Detectors static/recognize.js can decode, with the channel order each network reads.
BROWSER_DETECTORS = {"centerface": "rgb", "yunet": "bgr"}
SCALE_ATTRIBUTES = ("input_size", "smallest_face", "min_face", "largest_face")
MAX_MESSAGE = 2048  # bytes of one score message: a box, a pose and seven probabilities need ~330
MAX_SIDE = 10_000  # pixels: no camera frame is larger
POSE_RANGES = {"yaw": 180.0, "pitch": 90.0, "roll": 180.0}  # degrees either way (moodlens.pose.angles)


class ScoreError(ValueError):
    """A score message that is not what the student page sends."""


def browser_config(recognizer: Recognizer) -> dict | None:
    """Everything the browser needs to run ``recognizer``'s pipeline, or None when it cannot
    (a detector without a browser decoder, or aligned crops, which the page does not do)."""
    det = recognizer.detector
    path = getattr(det, "path", None)
    if det.name not in BROWSER_DETECTORS or path is None or recognizer.align:
        return None
    return {
        "detector": {"name": det.name, "url": "/models/detector.onnx", "channels": BROWSER_DETECTORS[det.name],
                     "score_threshold": det.score_threshold, "nms_threshold": det.nms_threshold,
                     # what its frame_scale() reads, whichever the backend has
                     **{k: getattr(det, k) for k in SCALE_ATTRIBUTES if hasattr(det, k)}},
        "model": {"url": "/models/emotion.onnx", "spec": asdict(recognizer.model.spec)},
        "pose": POSE_CONSTANTS,
        "crop": {"scale": recognizer.crop_scale, "shift": recognizer.crop_shift},
        "min_face": recognizer.min_face, "uncertain_below": recognizer.uncertain_below,
        "max_faces": recognizer.max_faces,
    }


def model_files(recognizer: Recognizer) -> dict:
    """The ONNX files the page may fetch under ``/models/``: the emotion model, and the detector
    when the browser can run it."""
    files = {"emotion.onnx": recognizer.model.path}
    if browser_config(recognizer) is not None:
        files["detector.onnx"] = recognizer.detector.path
    return files


# ``/api/browser`` and the model files, for the teacher and students who have joined
router = APIRouter(dependencies=[Depends(teacher_or_student)])


@router.get("/api/browser")
async def browser(ml: State) -> dict:
    config = browser_config(ml.recognizer)
    if config is None:
        return {"available": False, "reason": f"the server's {ml.recognizer.detector.name} pipeline has no browser version"}
    return {"available": True, **config}


@router.get("/models/{name}", include_in_schema=False)
async def model_file(ml: State, name: str) -> FileResponse:
    files = model_files(ml.recognizer)
    if name not in files:
        raise HTTPException(404, f"no model {name}")
    return FileResponse(files[name], media_type="application/octet-stream",
                        headers={"Cache-Control": "private, max-age=3600"})


def session_emotions(session) -> bool:
    """Whether ``session`` reads emotions (False: attention only; sessions made before the
    setting existed do)."""
    return getattr(session, "emotions", True) is not False


def parse_scores(text: str, classes: tuple[str, ...], emotions: bool = True) -> Face | None:
    """The face of one score message (None: no face seen).

    A message is ``{"face": null}`` or ``{"face": {"box": [x, y, w, h], "pose": pose, "scores":
    {class: p}}}``: ``pose`` is ``{"yaw", "pitch", "roll", "confidence"}`` in degrees and 0-1
    (:mod:`moodlens.pose`), or null or absent where the landmarks support none; ``scores`` has a
    probability for every class of the session's model (none for a face too small to read), and
    is absent in an attention-only session (``emotions`` False), whose faces are not read.
    Anything else raises :class:`ScoreError`.
    """
    if len(text) > MAX_MESSAGE:
        raise ScoreError(f"a score message is at most {MAX_MESSAGE} bytes")
    try:
        message = json.loads(text)
    except ValueError:
        raise ScoreError("a score message is JSON") from None
    if not isinstance(message, dict) or "face" not in message:
        raise ScoreError('a score message is {"face": ...}')
    face = message["face"]
    if face is None:
        return None
    if not isinstance(face, dict):
        raise ScoreError("face must be an object or null")
    box, scores = face.get("box"), face.get("scores") or {}
    if not (isinstance(box, list) and len(box) == 4 and all(_number(v) and 0 <= v <= MAX_SIDE for v in box)):
        raise ScoreError("box must be [x, y, w, h] in pixels")
    if not emotions and "scores" in face:
        raise ScoreError("this session is attention only: send no scores")
    if not isinstance(scores, dict) or (scores and set(scores) != set(classes)):
        raise ScoreError(f"scores must give a probability for each of: {', '.join(classes)}")
    if not all(_number(p) and 0 <= p <= 1 for p in scores.values()):
        raise ScoreError("scores must be probabilities (0 to 1)")
    result = Face(tuple(int(round(v)) for v in box), scores={c: float(scores[c]) for c in classes} if scores else {},
                  pose=_pose(face.get("pose")))
    if emotions and not scores:
        result.status = TOO_SMALL
    return result


def _pose(pose) -> Pose | None:
    if pose is None:
        return None
    if not (isinstance(pose, dict) and set(pose) == {*POSE_RANGES, "confidence"} and all(map(_number, pose.values()))
            and all(abs(pose[k]) <= limit for k, limit in POSE_RANGES.items()) and 0 <= pose["confidence"] <= 1):
        raise ScoreError("pose must be null or {yaw, pitch, roll, confidence}: yaw and roll within 180 degrees, "
                         "pitch within 90, confidence 0 to 1")
    return Pose(float(pose["yaw"]), float(pose["pitch"]), float(pose["roll"]), float(pose["confidence"]))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class ScoreStream:
    """One student's browser-mode connection: the faces their browser found, tracked and
    smoothed with the same :class:`~moodlens.track.Tracker` settings and labelled by the same
    :meth:`~moodlens.recognizer.Recognizer.label` as a server-side
    :class:`~moodlens.recognizer.FaceStream`, so stored seconds mean the same in both modes."""

    def __init__(self, recognizer: Recognizer, smoothing_s: float = 0.5):
        self.recognizer = recognizer
        self.tracker = Tracker(recognizer.classes, smoothing_s=smoothing_s)

    def push(self, face: Face | None, t: float) -> Face | None:
        if face is None:
            self.tracker.update([], t)
            return None
        return self.recognizer.label(self.tracker.update([face], t))[0]


class CrossOriginIsolation:
    """ASGI middleware: the student page and the runtime files it loads are sent with the
    headers that make the page cross-origin isolated (COOP same-origin, COEP require-corp), the
    condition for SharedArrayBuffer and so for onnxruntime-web's threads. The page loads
    nothing from other origins, so isolation costs it nothing."""

    PATHS = ("/student", "/static/")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PATHS):
            return await self.app(scope, receive, send)

        async def send_isolated(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"cross-origin-opener-policy", b"same-origin"),
                                      (b"cross-origin-embedder-policy", b"require-corp"),
                                      (b"cross-origin-resource-policy", b"same-origin")]
            await send(message)

        await self.app(scope, receive, send_isolated)
