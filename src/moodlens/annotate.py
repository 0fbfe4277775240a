"""Drawing faces on frames: a box and label per face in its emotion's colour, score bars, and
an arrow from the nose showing where the head points.

Labels and score panels are laid out so that none overlaps another or runs off the image: each
goes to the first free place among a few beside its face, and a label that finds none is
shortened, then left out (the box's colour still tells the emotion).
"""

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
POSE_COLOR = (255, 255, 0)  # cyan: apart from every emotion's colour
PANEL_W = 80  # score panel width, pixels

Box = tuple[int, int, int, int]


def color_of(emotion: str | None) -> tuple[int, int, int]:
    return COLORS.get(emotion or "", UNKNOWN)


def hex_colors() -> dict[str, str]:
    """The palette as CSS colours, for the web pages."""
    return {k: "#{:02x}{:02x}{:02x}".format(*v[::-1]) for k, v in COLORS.items()}


def describe(face: Face, short: bool = False) -> str:
    """A face's label: ``"happy 87%"``; an uncertain face shows its real best guess,
    ``"uncertain (sad? 28%)"``; ``short`` gives three-letter names (``"hap 87%"``, ``"sad? 28%"``)."""
    if face.scores and (face.emotion or face.status == "uncertain"):
        best = face.emotion or max(face.scores, key=face.scores.get)
        name = best[:3] if short else best
        p = f"{face.scores[best]:.0%}"
        if face.emotion:
            return f"{name} {p}"
        return f"{name}? {p}" if short else f"uncertain ({name}? {p})"
    return face.status.replace("_", " ")


def annotate(image: np.ndarray, faces: Sequence[Face], bars: bool = True) -> np.ndarray:
    """A copy of the BGR ``image`` with each face's box, label and (for faces large enough)
    a bar per class."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = out.shape[:2]
    thick = max(1, round(min(height, width) / 400))
    font = _font(out.shape)
    for face in faces:
        x, y, w, h = (int(v) for v in face.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), color_of(face.emotion), thick + 1)
        if face.pose is not None:
            start, end = direction_cue(face)
            cv2.arrowedLine(out, start, end, POSE_COLOR, thick + 1, cv2.LINE_AA, tipLength=0.25)
    row = _row(font)
    for kind, i, (x, y, w, h), text in layout(faces, out.shape, bars):
        face = faces[i]
        if kind == "label":
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color_of(face.emotion), -1)
            cv2.putText(out, text, (x + 2, y + h - 3 - cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[1]),
                        cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
        else:
            for k, (name, p) in enumerate(face.scores.items()):
                top = y + k * row
                cv2.rectangle(out, (x, top), (x + w - 1, top + row - 2), (40, 40, 40), -1)
                cv2.rectangle(out, (x, top), (x + int((w - 1) * p), top + row - 2), color_of(name), -1)
                cv2.putText(out, name[:3], (x + 2, top + row - 4), cv2.FONT_HERSHEY_SIMPLEX, font * 0.8,
                            (255, 255, 255), 1, cv2.LINE_AA)
    return out


def direction_cue(face: Face) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where the head-pose arrow of a face with a ``pose`` starts (its nose, else its box's centre)
    and ends: half a box width long for a head turned fully sideways, a dot for a frontal one,
    pointing where the head points as a viewer of the image sees it."""
    x, y, w, h = face.box
    start = face.landmarks[2] if face.landmarks is not None else np.array([x + w / 2, y + h / 2])
    yaw, pitch = np.radians(face.pose.yaw), np.radians(face.pose.pitch)
    # A face turning to its own left turns towards the image's right; looking up points up.
    end = start + 0.5 * w * np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    return (int(round(start[0])), int(round(start[1]))), (int(round(end[0])), int(round(end[1])))


def _font(shape: tuple[int, ...]) -> float:
    return 0.35 + min(shape[:2]) / 1600


def _row(font: float) -> int:
    return max(10, int(22 * font))


def layout(faces: Sequence[Face], shape: tuple[int, ...], bars: bool = True) -> list[tuple[str, int, Box, str]]:
    """Where :func:`annotate` draws each face's label and score panel on a frame of ``shape``:
    ``(kind, face_index, (x, y, w, h), text)`` with kind ``"label"`` or ``"bars"``. No two
    overlap and all lie inside the frame."""
    height, width = shape[:2]
    font = _font(shape)
    boxes = [tuple(int(v) for v in f.box) for f in faces]
    placed: list[tuple[str, int, Box, str]] = []
    taken: list[Box] = []
    # Labels first (every face gets one if there is room), then panels in what is left.
    for i, (box, face) in enumerate(zip(boxes, faces)):
        others = boxes[:i] + boxes[i + 1:]
        for short in (False, True):
            text = describe(face, short)
            if face.track_id is not None:
                text = f"#{face.track_id} {text}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            size = (tw + 4, th + base + 3)
            spot = _free_spot(_label_spots(box, size), size, (width, height), taken, others)
            if spot is not None:
                placed.append(("label", i, (*spot, *size), text))
                taken.append((*spot, *size))
                break
    if bars:
        row = _row(font)
        for i, (box, face) in enumerate(zip(boxes, faces)):
            x, y, w, h = box
            if not face.scores or w < 60:
                continue
            size = (PANEL_W, row * len(face.scores))
            spots = [(x + w + 4, y), (x - PANEL_W - 4, y), (x + w + 4, y + h - size[1]),
                     (x - PANEL_W - 4, y + h - size[1])]
            spot = _free_spot(spots, size, (width, height), taken, boxes)  # its own face too, if it can
            if spot is not None:
                placed.append(("bars", i, (*spot, *size), ""))
                taken.append((*spot, *size))
    return placed


def _label_spots(box: Box, size: tuple[int, int]) -> list[tuple[int, int]]:
    """Where a label may go, best first: above the box, below it, inside its top edge; each
    also slid left so it ends at the box's right edge."""
    x, y, w, h = box
    lw, lh = size
    spots = []
    for ly in (y - lh, y + h + 1, y + 1):
        spots += [(x, ly), (x + w - lw, ly)]
    return spots


def _free_spot(spots: list[tuple[int, int]], size: tuple[int, int], frame: tuple[int, int],
               placed: Sequence[Box], faces: Sequence[Box]) -> tuple[int, int] | None:
    """The first spot, pulled inside the frame, that overlaps nothing placed; one that also
    covers no other face is preferred. None when every spot overlaps a placed item."""
    (w, h), (width, height) = size, frame
    if w > width or h > height:
        return None
    inside = [(min(max(0, x), width - w), min(max(0, y), height - h)) for x, y in spots]
    free = [s for s in inside if not any(_overlaps((*s, w, h), b) for b in placed)]
    clear = [s for s in free if not any(_overlaps((*s, w, h), b) for b in faces)]
    return (clear or free or [None])[0]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
