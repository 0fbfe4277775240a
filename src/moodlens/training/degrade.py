"""Realistic image degradations of webcam and video-call faces, on uint8 grey crops.

One set of functions serves two jobs: the fixed-severity robustness benchmark
(``moodlens evaluate --corruptions``, :data:`CORRUPTIONS`) and the random-severity degradation
augmentation of training (:func:`random_degrade`), so the model is trained on the same kinds of
damage it is scored on. Severities are given for the 48x48 face crop the model sees; why each
fixed severity matches a real webcam or meeting-gallery face is in docs/robustness.md.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


def blur(face: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur: defocus, motion and the softening of a video codec."""
    return cv2.GaussianBlur(face, (0, 0), sigma)


def noise(face: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise, ``std`` in grey levels."""
    return np.clip(face + rng.normal(0, std, face.shape), 0, 255).astype(np.uint8)


def _encode(face: np.ndarray, ext: str, flag: int, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(ext, face, [flag, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else face


def jpeg(face: np.ndarray, quality: int) -> np.ndarray:
    """JPEG re-encoding at ``quality`` (0-100): blocking and ringing of still-image uploads."""
    return _encode(face, ".jpg", cv2.IMWRITE_JPEG_QUALITY, quality)


def webp(face: np.ndarray, quality: int) -> np.ndarray:
    """WebP (VP8 intra) re-encoding: the smearing of video-call streams."""
    return _encode(face, ".webp", cv2.IMWRITE_WEBP_QUALITY, quality)


def downscale(face: np.ndarray, size: int) -> np.ndarray:
    """Shrink to ``size`` px and back: a face seen small, as in a meeting-gallery tile."""
    h, w = face.shape
    small = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def low_light(face: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """A dim room: brightness scaled by ``gain`` after a ``gamma`` curve that crushes shadows."""
    x = (face.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def rotate(face: np.ndarray, degrees: float) -> np.ndarray:
    """In-plane head tilt about the crop centre."""
    h, w = face.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# name -> (one face, rng) -> degraded face, at the fixed severity of the robustness benchmark.
CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blur": lambda f, rng: blur(f, 1.2),
    "noise": lambda f, rng: noise(f, 12.0, rng),
    "jpeg": lambda f, rng: jpeg(f, 15),
    "webp": lambda f, rng: webp(f, 10),
    "small": lambda f, rng: downscale(f, 20),
    "low_light": lambda f, rng: low_light(f, 0.45, 1.6),
    "rotate": lambda f, rng: rotate(f, 15.0 if rng.random() < 0.5 else -15.0),
}
SEVERITIES = {
    "blur": "Gaussian sigma 1.2 px", "noise": "Gaussian std 12 grey levels", "jpeg": "quality 15",
    "webp": "quality 10", "small": "20 px and back", "low_light": "gamma 1.6, gain 0.45", "rotate": "+-15 degrees",
}


def corrupt(faces: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Apply one benchmark corruption to a batch (N, H, W) of uint8 grey faces, reproducibly."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    rng = np.random.default_rng(seed)
    fn = CORRUPTIONS[name]
    return np.stack([fn(f, rng) for f in faces]) if len(faces) else faces.copy()


def random_degrade(faces: np.ndarray, rng: np.random.Generator, p: float = 0.5, workers: int = 1) -> np.ndarray:
    """Training augmentation: each face, with probability ``p``, gets one or two degradations at
    a random severity that reaches past the benchmark's (so the fixed severities are inside the
    training range, not at its edge). Rotation is left to the geometric augmentation.

    With ``workers`` > 1 the faces are split into that many parts degraded in threads (OpenCV
    releases the GIL), each part with its own generator spawned from ``rng``: on a GPU this
    per-face work, not the network, limits the speed of training."""
    if workers > 1 and len(faces) >= 2 * workers:
        parts = np.array_split(np.arange(len(faces)), workers)
        with ThreadPoolExecutor(workers) as pool:
            done = pool.map(lambda part, r: random_degrade(faces[part], r, p), parts, rng.spawn(workers))
            return np.concatenate(list(done))
    out = faces.copy()
    for i in np.flatnonzero(rng.random(len(faces)) < p):
        f = out[i]
        for kind in rng.choice(6, size=rng.integers(1, 3), replace=False):
            if kind == 0:
                f = blur(f, rng.uniform(0.4, 1.8))
            elif kind == 1:
                f = noise(f, rng.uniform(3, 18), rng)
            elif kind == 2:
                f = jpeg(f, int(rng.integers(8, 60)))
            elif kind == 3:
                f = webp(f, int(rng.integers(5, 50)))
            elif kind == 4:
                f = downscale(f, int(rng.integers(14, 36)))
            else:
                f = low_light(f, rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.2))
        out[i] = f
    return out
