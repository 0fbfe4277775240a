"""Cut detected faces out of a frame the way FER2013 frames them: square, with a calibrated
margin around the detector's box, grey, model-sized; optionally rotated upright by the eyes."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from moodlens.faces import Face
from moodlens.preprocess import resize_square, to_grey

# Side of the square crop relative to the larger side of the detector's box, and the shift of
# its centre down the face (fraction of the side). scripts/calibrate_crop.py re-detects the
# PublicTest faces: the median FER frame is 1.049 box sides with its centre 0.01 higher, and that
# framing also classified them best (docs/crop.md).
DEFAULT_SCALE = 1.05
DEFAULT_SHIFT = -0.01


def crop_faces(image: np.ndarray, faces: Sequence[Face], size: int = 48, scale: float = DEFAULT_SCALE,
               shift: float = DEFAULT_SHIFT, align: bool = False) -> np.ndarray:
    """Return uint8 grey crops (N, size, size) for ``faces`` of a BGR or grey ``image``.

    Crops that run past the frame's edge are filled by replicating the border, as a face at
    the edge of a webcam frame would otherwise be squashed.
    """
    grey = to_grey(image)
    crops = np.empty((len(faces), size, size), np.uint8)
    for i, face in enumerate(faces):
        x, y, w, h = face.box
        side = max(w, h) * scale
        cx, cy = x + w / 2, y + h / 2 + shift * side
        angle = 0.0
        if align and face.landmarks is not None:
            (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
            angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        # Warp at (at most) twice the model size, then shrink with area interpolation: warping
        # straight to 48 px from a large face would alias.
        out = int(min(max(side, size), 2 * size))
        m = cv2.getRotationMatrix2D((cx, cy), angle, out / side)
        m[:, 2] += out / 2 - np.array([cx, cy])
        patch = cv2.warpAffine(grey, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        crops[i] = resize_square(patch, size)
    return crops
