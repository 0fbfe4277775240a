"""Face detection backends behind one small interface.

A detector takes a BGR (or grey) uint8 frame and returns :class:`~moodlens.faces.Face` records
with ``box``, ``detection_score`` and, when the backend gives them, ``landmarks``. It sees the frame
at a ``scale`` it chooses from the frame's size, or at one the caller passes; video streams pass
one from :class:`ScalePlanner`, which looks at where faces were last seen.

Backends: ``"yunet"`` (default; a 74k-parameter CNN run with onnxruntime, with 5 landmarks),
``"centerface"`` (the previous default, a larger CNN) and ``"haar"`` (OpenCV's cascade; no model
file, frontal faces only). See docs/detector.md for how the default was chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from moodlens.errors import MoodLensError
from moodlens.faces import Face
from moodlens.weights import WEIGHTS_DIR


class DetectorError(MoodLensError):
    """A detector that cannot be created (unknown name, missing model file)."""


class Detector(Protocol):
    """What every backend provides.

    Attributes:
        name: the backend's registered name.
        smallest_face: height in pixels, at the network's own resolution, of the smallest face
            found reliably (a planner shrinks frames no further than this allows).
        crop_scale: side of the FER2013-like square crop as a multiple of this detector's box
            (each detector draws its boxes with its own margin; scripts/calibrate_crop.py).
    """

    name: str
    smallest_face: float
    crop_scale: float

    def frame_scale(self, shape: tuple[int, ...]) -> float:
        """The scale (<= 1) at which a frame of this shape is seen when the caller gives none."""
        ...

    def detect(self, image: np.ndarray, scale: float | None = None) -> list[Face]: ...


_BACKENDS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str):
    def wrap(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        _BACKENDS[name] = factory
        return factory

    return wrap


def list_detectors() -> list[str]:
    return sorted(_BACKENDS)


DEFAULT_DETECTOR = "yunet"


def create_detector(name: str | None = None, **kwargs) -> Detector:
    """Create a detector by name (default: the CNN detector)."""
    name = name or DEFAULT_DETECTOR
    if name not in _BACKENDS:
        raise DetectorError(f"unknown detector {name!r}; choose one of: {', '.join(list_detectors())}")
    return _BACKENDS[name](**kwargs)


def _check_image(image: np.ndarray) -> np.ndarray:
    """Accept HxW grey, HxWx1, HxWx3 BGR or HxWx4 BGRA uint8 frames (other dtypes are clipped)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` shrunk by ``scale`` (<= 1; at least 1 px a side)."""
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 0.75 else cv2.INTER_LINEAR)


def _padded_blob(image: np.ndarray, to_rgb: bool) -> np.ndarray:
    """A (1, 3, H, W) float32 blob of ``image``, zero-padded right and bottom to multiples of 32
    (both networks downsample by 32)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if to_rgb else cv2.COLOR_GRAY2BGR)
    elif to_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    blob[0, :, :h, :w] = image.transpose(2, 0, 1)
    return blob


def _session(path: Path, threads: int | None, what: str):
    import onnxruntime as ort

    if not path.is_file():
        raise DetectorError(f"{what} model file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Idle worker threads spinning for work steal the CPU the rest of the pipeline (and any
    # other job) needs: on a busy 2-core machine spinning doubled detection time (36 vs 17 ms).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DetectorError(f"cannot load {what} model {path}: {exc}") from exc


def _faces(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, score_threshold: float,
           nms_threshold: float, shape: tuple[int, ...]) -> list[Face]:
    """Non-maximum suppression over (N, 4) x, y, w, h ``boxes`` in frame pixels, then Face records
    with boxes rounded and clipped to the frame."""
    if len(scores) == 0:
        return []
    height, width = shape[:2]
    keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), score_threshold, nms_threshold)
    faces = []
    for i in np.asarray(keep, dtype=int).reshape(-1):
        x0, y0 = max(0, int(round(boxes[i, 0]))), max(0, int(round(boxes[i, 1])))
        x1 = min(width, int(round(boxes[i, 0] + boxes[i, 2])))
        y1 = min(height, int(round(boxes[i, 1] + boxes[i, 3])))
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        faces.append(Face(box=(x0, y0, x1 - x0, y1 - y0), landmarks=landmarks[i].astype(np.float32),
                          detection_score=float(scores[i])))
    return faces


@register_detector("yunet")
class YuNetDetector:
    """YuNet-n (Wu, Peng and Yu 2023): an anchor-free face detector of 74k parameters with 5
    landmarks, from libfacedetection.train (Apache-2.0; weights in ``weights/yunet_n.onnx``).

    For every cell of three feature maps (strides 8, 16 and 32 of the input) the network gives a
    class and an objectness probability, a box (centre offset in cells, log width and height in
    strides) and 5 landmarks (offsets in strides); the face score is the geometric mean of the two
    probabilities. Boxes above ``score_threshold`` are merged by non-maximum suppression.

    The frame is seen at the largest scale (<= 1) that still shows a ``min_face`` pixel face at
    ``smallest_face`` pixels or more, shrunk further when its short side would exceed
    ``largest_face`` (a face filling such a frame would be too big for the network). So a 640x480
    webcam frame runs at 512x384, and both a 20 px gallery face and a face filling the frame are
    found. On the shared photos the network finds faces from ~10 px to ~970 px at its own
    resolution; below 16 px it starts to see faces in gallery clutter (docs/detector.md).

    Args:
        score_threshold: minimum face score (0-1).
        nms_threshold: IoU above which overlapping boxes are merged into the best-scoring one.
        min_face: smallest face height, in frame pixels, to find when no scale is given.
        model_path: a YuNet ONNX file with the same outputs (default: the bundled weights).
        threads: onnxruntime intra-op threads (default: one per core); the pool does not spin.
    """

    name = "yunet"
    smallest_face = 16.0
    largest_face = 900.0
    crop_scale = 1.0  # PublicTest's FER frame is 1.005 YuNet box sides (docs/crop.md)
    STRIDES = (8, 16, 32)

    def __init__(self, score_threshold: float = 0.55, nms_threshold: float = 0.3, min_face: float = 20,
                 model_path: str | Path | None = None, threads: int | None = None):
        if min_face <= 0:
            raise ValueError("min_face must be > 0")
        path = Path(model_path) if model_path is not None else WEIGHTS_DIR / "yunet_n.onnx"
        self.session = _session(path, threads, "YuNet")
        self.path = path  # the student page runs this same file in the browser (web/browser.py)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        wanted = [f"{kind}_{s}" for s in self.STRIDES for kind in ("cls", "obj", "bbox", "kps")]
        if sorted(outputs) != sorted(wanted):
            raise DetectorError(f"{path}: not a YuNet model (outputs {', '.join(outputs)})")
        self.output_names = wanted
        self.score_threshold, self.nms_threshold, self.min_face = score_threshold, nms_threshold, min_face

    def frame_scale(self, shape: tuple[int, ...]) -> float:
        return min(1.0, self.smallest_face / self.min_face, self.largest_face / max(1, min(shape[:2])))

    def detect(self, image: np.ndarray, scale: float | None = None) -> list[Face]:
        image = _check_image(image)
        if min(image.shape[:2]) < 2:
            return []
        scale = min(1.0, self.frame_scale(image.shape) if scale is None else scale)
        small = _resize(image, scale)
        # the scale actually applied, after rounding the size to whole pixels
        sy, sx = small.shape[0] / image.shape[0], small.shape[1] / image.shape[1]
        blob = _padded_blob(small, to_rgb=False)  # YuNet takes raw BGR values, 0-255
        out = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob})))
        boxes, scores, marks = [], [], []
        for stride in self.STRIDES:
            cols = blob.shape[3] // stride
            score = np.sqrt(np.clip(out[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{stride}"][0, :, 0], 0, 1))
            idx = np.nonzero(score > self.score_threshold)[0]
            if len(idx) == 0:
                continue
            cell = np.stack([idx % cols, idx // cols], 1).astype(np.float32)  # x, y
            box = out[f"bbox_{stride}"][0, idx]
            centre = (cell + box[:, :2]) * stride
            size = np.exp(box[:, 2:]) * stride
            boxes.append(np.concatenate([centre - size / 2, size], 1))
            marks.append((out[f"kps_{stride}"][0, idx].reshape(-1, 5, 2) + cell[:, None, :]) * stride)
            scores.append(score[idx])
        if not scores:
            return []
        to_frame = np.array([sx, sy], np.float32)
        boxes = np.concatenate(boxes) / np.tile(to_frame, 2)
        return _faces(boxes, np.concatenate(scores), np.concatenate(marks) / to_frame, self.score_threshold,
                      self.nms_threshold, image.shape)


@register_detector("centerface")
class CenterFaceDetector:
    """CenterFace (Xu et al. 2019): an anchor-free MobileNetV2 face detector, 7 MB, with 5 landmarks.

    The network sees the frame resized so its longer side is ``input_size`` (never enlarged) and
    padded to a multiple of 32; it predicts a face-centre heatmap at 1/4 of that resolution with box
    sizes and landmark offsets. Works for any frame size and aspect. Faces down to about 14 px tall
    at the network's resolution are found (group.jpg scaled down: all 8 at 14 px, 2 of 8 at 11 px),
    so on a 1280x720 frame at ``input_size=640``, faces from about 30 px up.

    Args:
        score_threshold: minimum heatmap peak (0-1) kept as a face.
        input_size: longer side, in pixels, of the image the network sees when no scale is given.
            Smaller is faster and misses small faces; ``None`` runs at the frame's own size.
        nms_threshold: IoU above which overlapping boxes are merged into the best-scoring one.
        model_path: an ONNX file with CenterFace's inputs/outputs (default: the bundled weights).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per core); the
            pool does not spin, so it yields the CPU to other work between frames.
    """

    name = "centerface"
    smallest_face = 14.0
    crop_scale = 1.05  # PublicTest's FER frame is 1.049 CenterFace box sides (docs/crop.md)

    def __init__(self, score_threshold: float = 0.5, input_size: int | None = 640, nms_threshold: float = 0.3,
                 model_path: str | Path | None = None, threads: int | None = None):
        if input_size is not None and input_size < 32:
            raise ValueError("input_size must be >= 32 (or None)")
        path = Path(model_path) if model_path is not None else WEIGHTS_DIR / "centerface.onnx"
        self.session = _session(path, threads, "CenterFace")
        self.path = path  # the student page runs this same file in the browser (web/browser.py)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.input_size = input_size
        self.nms_threshold = nms_threshold

    def frame_scale(self, shape: tuple[int, ...]) -> float:
        return 1.0 if self.input_size is None else min(1.0, self.input_size / max(shape[:2]))

    def detect(self, image: np.ndarray, scale: float | None = None) -> list[Face]:
        image = _check_image(image)
        if min(image.shape[:2]) < 2:
            return []
        small = _resize(image, min(1.0, self.frame_scale(image.shape) if scale is None else scale))
        sy, sx = small.shape[0] / image.shape[0], small.shape[1] / image.shape[1]
        heat, size, offset, marks = self.session.run(None, {self.input_name: _padded_blob(small, to_rgb=True)})
        ys, xs = np.nonzero(heat[0, 0] > self.score_threshold)
        scores = heat[0, 0, ys, xs]
        bh = np.exp(size[0, 0, ys, xs]) * 4
        bw = np.exp(size[0, 1, ys, xs]) * 4
        x0 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - bw / 2
        y0 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - bh / 2
        # landmarks: channels (y0, x0, y1, x1, ...) relative to the box corner, in box units
        lm = marks[0][:, ys, xs].T.reshape(-1, 5, 2)[:, :, ::-1]
        lm = lm * np.stack([bw, bh], 1)[:, None, :] + np.stack([x0, y0], 1)[:, None, :]
        to_frame = np.array([sx, sy], np.float32)
        boxes = np.stack([x0, y0, bw, bh], 1) / np.tile(to_frame, 2)
        return _faces(boxes, scores, lm / to_frame, self.score_threshold, self.nms_threshold, image.shape)


@register_detector("haar")
class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade: the classic, CPU-cheap baseline. Misses
    turned and small faces; gives no landmarks."""

    name = "haar"
    crop_scale = 1.05  # not calibrated for Haar: CenterFace's framing

    def __init__(self, min_size: int = 24, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else None
        if path is None or not path.is_file():
            raise DetectorError("OpenCV's Haar cascade file is missing (OpenCV 5 wheels dropped it; install opencv<5)")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        self.smallest_face = float(min_size)

    def frame_scale(self, shape: tuple[int, ...]) -> float:
        return 1.0

    def detect(self, image: np.ndarray, scale: float | None = None) -> list[Face]:
        image = _check_image(image)
        if min(image.shape[:2]) * min(1.0, scale or 1.0) < self.min_size:
            return []
        small = _resize(image, 1.0 if scale is None else scale)
        grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(grey, self.scale_factor, self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        to_frame = image.shape[1] / small.shape[1]
        return [Face(box=tuple(int(round(v * to_frame)) for v in b)) for b in np.reshape(boxes, (-1, 4))]


class ScalePlanner:
    """Chooses the scale each frame of a video is detected at, from the frame and from where
    faces were last seen.

    A full scan (the detector's own scale for the frame, which finds every face from its
    ``min_face`` up to one filling the frame) runs when no face is tracked and at least every
    ``rescan_s`` seconds, so newcomers are found. In between, the frame is shrunk as far as the
    faces being tracked allow: a face ``shrink`` times the smallest one seen must still reach the
    detector's ``smallest_face``; the network's input keeps a long side of at least ``min_side``.
    A webcam close-up is then detected on a ~256 px image instead of 448 px.
    """

    def __init__(self, detector: Detector, rescan_s: float = 1.0, shrink: float = 0.5, min_side: int = 256):
        self.detector, self.rescan_s, self.shrink, self.min_side = detector, rescan_s, shrink, min_side
        self.last_scan: float | None = None

    def scale(self, shape: tuple[int, ...], faces: list[Face], t: float) -> float:
        """The scale for a frame of ``shape`` at time ``t`` given the ``faces`` last seen."""
        full = self.detector.frame_scale(shape)
        if not faces or self.last_scan is None or t - self.last_scan >= self.rescan_s or t < self.last_scan:
            self.last_scan = t
            return full
        smallest = min(min(f.box[2], f.box[3]) for f in faces)
        wanted = self.detector.smallest_face / (self.shrink * max(smallest, 1))
        return min(full, max(wanted, self.min_side / max(shape[:2])))
