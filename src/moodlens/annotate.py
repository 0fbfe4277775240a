"""Drawing faces on frames: a box and label per face in its emotion's colour, and score bars."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from moodlens.faces import Face

# BGR, one colour per emotion, the same in the CLI, web and desktop views.
COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220), "disgust": (40, 140, 60), "fear": (160, 60, 150), "happy": (0, 200, 240),
    "sad": (200, 110, 30), "surprise": (0, 140, 255), "neutral": (170, 170, 170), "contempt": (140, 140, 0),
}
UNKNOWN = (110, 110, 110)


def color_of(emotion: str | None) -> tuple[int, int, int]:
    return COLORS.get(emotion or "", UNKNOWN)


def hex_colors() -> dict[str, str]:
    """The palette as CSS colours, for the web pages."""
    return {k: "#{:02x}{:02x}{:02x}".format(*v[::-1]) for k, v in COLORS.items()}


def annotate(image: np.ndarray, faces: Sequence[Face], bars: bool = True) -> np.ndarray:
    """A copy of the BGR ``image`` with each face's box, label and (for faces large enough)
    a bar per class."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = out.shape[:2]
    thick = max(1, round(min(height, width) / 400))
    font = 0.35 + min(height, width) / 1600
    taken = [f.box for f in faces]  # score panels avoid faces and each other
    for face in faces:
        x, y, w, h = face.box
        color = color_of(face.emotion)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick + 1)
        if face.emotion:
            text = f"{face.emotion} {face.confidence:.0%}"
        else:
            text = face.status.replace("_", " ")
        if face.track_id is not None:
            text = f"#{face.track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = y - 4 if y - th - 6 > 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - 3), (x + tw + 4, ty + base - 1), color, -1)
        cv2.putText(out, text, (x + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
        if bars and face.scores and w >= 60:
            row = max(10, int(22 * font))
            # Beside the box, on whichever side has room and covers no other face or panel.
            for bx in (x + w + 4, x - 84):
                panel = (bx, y, 80, row * len(face.scores))
                if 0 <= bx <= width - 80 and not any(_overlaps(panel, b) for b in taken if b != face.box):
                    _bars(out, face, bx, y, font, row)
                    taken.append(panel)
                    break
    return out


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _bars(out: np.ndarray, face: Face, x: int, y: int, font: float, row: int) -> None:
    for i, (name, p) in enumerate(face.scores.items()):
        top = y + i * row
        if top + row > out.shape[0]:
            break
        cv2.rectangle(out, (x, top), (x + 80, top + row - 2), (40, 40, 40), -1)
        cv2.rectangle(out, (x, top), (x + int(80 * p), top + row - 2), color_of(name), -1)
        cv2.putText(out, name[:3], (x + 2, top + row - 4), cv2.FONT_HERSHEY_SIMPLEX, font * 0.8, (255, 255, 255), 1,
                    cv2.LINE_AA)
