"""Face detection backends behind one small interface.

A detector takes a BGR uint8 frame and returns :class:`~moodlens.faces.Face` records with
``box``, ``detection_score`` and, when the backend gives them, ``landmarks``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from moodlens.faces import Face


class DetectorError(ValueError):
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


DEFAULT_DETECTOR = "haar"


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
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(grey, self.scale_factor, self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        return [Face(box=tuple(int(v) for v in b)) for b in np.reshape(boxes, (-1, 4))]
