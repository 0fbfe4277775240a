"""Face detection backends behind one small interface.

A detector takes a BGR (or grey) uint8 frame and returns :class:`~moodlens.faces.Face` records
with ``box``, ``detection_score`` and, when the backend gives them, ``landmarks``.

Backends: ``"centerface"`` (default; a small CNN run with onnxruntime, with 5 landmarks) and
``"haar"`` (OpenCV's cascade; no model file, frontal faces only). See docs/detector.md for how the
default was chosen.
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
    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


_BACKENDS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str):
    def wrap(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        _BACKENDS[name] = factory
        return factory

    return wrap


def list_detectors() -> list[str]:
    return sorted(_BACKENDS)


DEFAULT_DETECTOR = "centerface"


def create_detector(name: str | None = None, **kwargs) -> Detector:
    """Create a detector by name (default: the CNN detector)."""
    name = name or DEFAULT_DETECTOR
    if name not in _BACKENDS:
        raise DetectorError(f"unknown detector {name!r}; choose one of: {', '.join(list_detectors())}")
    return _BACKENDS[name](**kwargs)


@register_detector("haar")
class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade: the classic, CPU-cheap baseline. Misses
    turned and small faces; gives no landmarks."""

    name = "haar"

    def __init__(self, min_size: int = 24, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else None
        if path is None or not path.is_file():
            raise DetectorError("OpenCV's Haar cascade file is missing (OpenCV 5 wheels dropped it; install opencv<5)")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors

    def detect(self, image: np.ndarray) -> list[Face]:
        image = _check_image(image)
        if min(image.shape[:2]) < self.min_size:
            return []
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(grey, self.scale_factor, self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        return [Face(box=tuple(int(v) for v in b)) for b in np.reshape(boxes, (-1, 4))]


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
        input_size: longer side, in pixels, of the image the network sees. Smaller is faster and
            misses small faces; ``None`` runs at the frame's own size (slow on big frames).
        nms_threshold: IoU above which overlapping boxes are merged into the best-scoring one.
        model_path: an ONNX file with CenterFace's inputs/outputs (default: the bundled weights).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per core); the
            pool does not spin, so it yields the CPU to other work between frames.
    """

    name = "centerface"

    def __init__(self, score_threshold: float = 0.5, input_size: int | None = 640, nms_threshold: float = 0.3,
                 model_path: str | Path | None = None, threads: int | None = None):
        import onnxruntime as ort

        path = Path(model_path) if model_path is not None else WEIGHTS_DIR / "centerface.onnx"
        if not path.is_file():
            raise DetectorError(f"CenterFace model file not found: {path}")
        if input_size is not None and input_size < 32:
            raise ValueError("input_size must be >= 32 (or None)")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads spinning for work steal the CPU the rest of the pipeline (and any
        # other job) needs: on a busy 2-core machine spinning doubled detection time (36 vs 17 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"cannot load CenterFace model {path}: {exc}") from exc
        self.path = path  # the student page runs this same file in the browser (web/browser.py)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.input_size = input_size
        self.nms_threshold = nms_threshold

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = image.shape[:2]
        scale = 1.0 if self.input_size is None else min(1.0, self.input_size / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 0.75 else cv2.INTER_LINEAR)
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        return blob, scale

    def detect(self, image: np.ndarray) -> list[Face]:
        image = _check_image(image)
        height, width = image.shape[:2]
        if height < 2 or width < 2:
            return []
        blob, scale = self._prepare(image)
        heat, size, offset, marks = self.session.run(None, {self.input_name: blob})
        ys, xs = np.nonzero(heat[0, 0] > self.score_threshold)
        if len(ys) == 0:
            return []
        scores = heat[0, 0, ys, xs]
        bh = np.exp(size[0, 0, ys, xs]) * 4
        bw = np.exp(size[0, 1, ys, xs]) * 4
        x0 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - bw / 2
        y0 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - bh / 2
        # landmarks: channels (y0, x0, y1, x1, ...) relative to the box corner, in box units
        lm = marks[0][:, ys, xs].T.reshape(-1, 5, 2)[:, :, ::-1]
        lm = lm * np.stack([bw, bh], 1)[:, None, :] + np.stack([x0, y0], 1)[:, None, :]
        boxes = np.stack([x0, y0, bw, bh], 1) / scale
        lm = lm / scale
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        faces = []
        for i in np.asarray(keep, dtype=int).reshape(-1):
            bx0, by0 = max(0, int(round(boxes[i, 0]))), max(0, int(round(boxes[i, 1])))
            bx1 = min(width, int(round(boxes[i, 0] + boxes[i, 2])))
            by1 = min(height, int(round(boxes[i, 1] + boxes[i, 3])))
            if bx1 - bx0 < 1 or by1 - by0 < 1:
                continue
            faces.append(Face(box=(bx0, by0, bx1 - bx0, by1 - by0), landmarks=lm[i].astype(np.float32),
                              detection_score=float(scores[i])))
        return faces
