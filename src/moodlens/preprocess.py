"""The one preprocessing function shared by training, evaluation and inference.

Its parameters (:class:`PreprocessSpec`) are saved inside every exported model, so a face is
normalised the same way wherever it is classified and nothing is guessed from file names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from moodlens.classes import FER2013_CLASSES


@dataclass(frozen=True)
class PreprocessSpec:
    """Facts a model needs about its input; stored in the ONNX metadata as JSON."""

    classes: tuple[str, ...] = FER2013_CLASSES
    input_size: int = 48
    mean: float = 0.5
    std: float = 0.25

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        data = json.loads(text)
        data["classes"] = tuple(data["classes"])
        return cls(**data)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grey image from grey, BGR or BGRA input."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a grey (H, W) or BGR (H, W, 3) image, got shape {image.shape}")


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize a grey crop to size x size; area interpolation when shrinking avoids aliasing."""
    if grey.shape == (size, size):
        return grey
    shrink = grey.shape[0] > size or grey.shape[1] > size
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def preprocess(faces: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Turn face crops into the model's input tensor.

    Args:
        faces: a uint8 array (N, H, W) of grey crops or (N, H, W, 3) BGR crops, or a list of
            crops of different sizes.
        spec: the model's preprocessing parameters.

    Returns:
        float32 array (N, 1, S, S) with S = ``spec.input_size``.
    """
    size = spec.input_size
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[1:] == (size, size):
        batch = faces  # already grey and model-sized: the common training/evaluation case
    else:
        if isinstance(faces, np.ndarray) and faces.ndim not in (3, 4):
            raise ValueError(f"expected a batch of crops (N, H, W) or (N, H, W, 3), got shape {faces.shape}")
        batch = np.stack([resize_square(to_grey(np.asarray(f)), size) for f in faces]) if len(faces) else (
            np.zeros((0, size, size), np.uint8)
        )
    x = batch.astype(np.float32)
    x *= 1.0 / (255.0 * spec.std)
    x -= spec.mean / spec.std
    return x[:, None, :, :]
