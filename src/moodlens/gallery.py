"""Synthetic video-call gallery frames (a meeting app's grid view) with known face boxes.

Used by tests and benchmarks of the detector and of the whole pipeline: a screen capture of a
5x5 or 7x7 meeting grid has many small faces at once, dark borders between tiles and name labels.

    from moodlens.gallery import make_gallery, shared_participants
    people = shared_participants()               # faces cropped from ../shared/media/*.jpg
    frame, true_boxes = make_gallery(people, 5, 5, size=(1280, 720))

``make_gallery`` takes any images; it knows where a face is only when it is given one with the
image, as an ``(image, (x, y, w, h))`` pair. Each tile shows the face like a webcam does: centred,
a third to a half of the tile's height, in a 16:9 (or the tile's) crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from moodlens.track import iou

Box = tuple[int, int, int, int]

BACKGROUND = (36, 33, 32)  # BGR of a dark meeting-app canvas
TILE_FILL = (60, 56, 54)  # where a crop runs past its source image
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vik", "Wen", "Xavi",
         "Yara", "Zoe")

# Hand-verified face boxes (x, y, w, h) in the shared photos: forehead to chin, ear to ear.
SHARED_FACES: dict[str, list[Box]] = {
    "group.jpg": [(128, 191, 24, 30), (182, 203, 20, 29), (186, 112, 20, 27), (258, 194, 22, 30),
                  (321, 146, 19, 25), (334, 197, 24, 32), (382, 106, 21, 28), (508, 135, 21, 26)],
    "portrait.jpg": [(245, 62, 203, 261)],
    "angry.jpg": [(75, 104, 294, 410)],
    "crying.jpg": [(50, 5, 168, 233)],
}


def shared_media_dir() -> Path:
    """``shared/media`` beside the project root (read-only photos; never copy them into the repo)."""
    return Path(__file__).resolve().parents[3] / "shared" / "media"


def shared_participants(media_dir: str | Path | None = None, context: float = 3.0) -> list[tuple[np.ndarray, Box]]:
    """One ``(image, face_box)`` per face in the shared photos (11: 8 from group.jpg, 3 singles).

    Faces from group.jpg are cut out with up to ``context`` face heights of room around them (16:9),
    stopping short of any other face, so each looks like one participant's webcam and no tile shows
    a second, unlisted face; the single-face photos are used whole.
    """
    media_dir = Path(media_dir) if media_dir is not None else shared_media_dir()
    people = []
    for name, boxes in SHARED_FACES.items():
        image = cv2.imread(str(media_dir / name))
        if image is None:
            raise FileNotFoundError(media_dir / name)
        if len(boxes) == 1:
            people.append((image, boxes[0]))
            continue
        height, width = image.shape[:2]
        for i, (x, y, w, h) in enumerate(boxes):
            cx, cy = x + w / 2, y + h / 2
            half_h = h * context / 2
            x0, x1 = cx - half_h * 16 / 9, cx + half_h * 16 / 9
            y0, y1 = cy - half_h, cy + half_h
            for j, (ox, oy, ow, oh) in enumerate(boxes):
                if j == i or ox >= x1 or ox + ow <= x0 or oy >= y1 or oy + oh <= y0:
                    continue
                # shrink the side facing the other face, the cheaper way (horizontal or vertical)
                gaps = {"left": x - (ox + ow), "right": ox - (x + w), "top": y - (oy + oh), "bottom": oy - (y + h)}
                side = max(gaps, key=gaps.get)
                if side == "left":
                    x0 = ox + ow + 1
                elif side == "right":
                    x1 = ox - 1
                elif side == "top":
                    y0 = oy + oh + 1
                else:
                    y1 = oy - 1
            x0, y0 = int(max(0, x0)), int(max(0, y0))
            x1, y1 = int(min(width, x1)), int(min(height, y1))
            people.append((image[y0:y1, x0:x1].copy(), (x - x0, y - y0, w, h)))
    return people


def fer_participants(images: np.ndarray) -> list[tuple[np.ndarray, Box]]:
    """FER2013-style crops (N, 48, 48) as ``(image, face_box)`` participants: the face fills the
    crop, whose side is 1.05 face-box sides (the calibration in docs/crop.md). In a gallery tile
    such a face fills the tile's height, like a participant close to the camera."""
    out = []
    for image in images:
        side = min(image.shape[:2]) / 1.05
        margin = int(round((min(image.shape[:2]) - side) / 2))
        out.append((image, (margin, margin, int(round(side)), int(round(side)))))
    return out


def closeup(image: np.ndarray, face: Box, size: tuple[int, int] = (640, 480),
            fill: float = 0.9) -> tuple[np.ndarray, Box]:
    """``image`` scaled and shifted so that its ``face`` box is ``fill`` of the frame's height,
    centred (someone leaning into the camera); the border is replicated where the image ends.

    Returns:
        ``(frame, face_box)``: the BGR frame of ``size`` (width, height) and the face's box in it.
    """
    x, y, w, h = face
    s = fill * size[1] / h
    m = np.float32([[s, 0, size[0] / 2 - s * (x + w / 2)], [0, s, size[1] / 2 - s * (y + h / 2)]])
    frame = cv2.warpAffine(_as_bgr(image), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return frame, (round(size[0] / 2 - s * w / 2), round(size[1] / 2 - s * h / 2), round(s * w), round(s * h))


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _webcam_tile(image: np.ndarray, face: Box | None, tile_w: int, tile_h: int,
                 face_frac: float, flip: bool) -> tuple[np.ndarray, Box | None]:
    """Crop ``image`` to the tile's aspect around the face (face_frac of the height) and resize."""
    image = _as_bgr(image)
    ih, iw = image.shape[:2]
    aspect = tile_w / tile_h
    if face is None:
        crop_h = min(ih, iw / aspect)
        cx, cy = iw / 2, ih / 2
    else:
        fx, fy, fw, fh = face
        crop_h = max(fh / face_frac, fw / (face_frac * aspect))
        # never zoom out past the whole picture (a close-up webcam shows a bigger face)
        crop_h = max(min(crop_h, max(ih, iw / aspect)), fh, fw / aspect)
        cx, cy = fx + fw / 2, fy + fh / 2 + 0.08 * crop_h  # a webcam has more room above the head
    crop_w = crop_h * aspect
    x0 = int(round(min(max(cx - crop_w / 2, 0), max(iw - crop_w, 0)))) if crop_w <= iw else int(round(cx - crop_w / 2))
    y0 = int(round(min(max(cy - crop_h / 2, 0), max(ih - crop_h, 0)))) if crop_h <= ih else int(round(cy - crop_h / 2))
    cw, ch = max(1, int(round(crop_w))), max(1, int(round(crop_h)))
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = TILE_FILL
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(iw, x0 + cw), min(ih, y0 + ch)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    tile = cv2.resize(canvas, (tile_w, tile_h), interpolation=cv2.INTER_AREA if cw > tile_w else cv2.INTER_LINEAR)
    if face is None:
        return (cv2.flip(tile, 1) if flip else tile), None
    s = tile_w / cw
    bx, by, bw, bh = (fx - x0) * s, (fy - y0) * s, fw * s, fh * s
    if flip:
        tile = cv2.flip(tile, 1)
        bx = tile_w - bx - bw
    x0b, y0b = max(0.0, bx), max(0.0, by)
    x1b, y1b = min(float(tile_w), bx + bw), min(float(tile_h), by + bh)
    if x1b - x0b < 2 or y1b - y0b < 2:
        return tile, None
    return tile, (int(round(x0b)), int(round(y0b)), int(round(x1b - x0b)), int(round(y1b - y0b)))


def make_gallery(images: Sequence[np.ndarray | tuple[np.ndarray, Box | None]], rows: int, cols: int,
                 size: tuple[int, int] = (1280, 720), *, count: int | None = None, gap: int = 6,
                 names: Sequence[str] | None = None, face_frac: tuple[float, float] = (0.32, 0.5),
                 seed: int = 0) -> tuple[np.ndarray, list[Box]]:
    """A meeting app's gallery view: ``rows`` x ``cols`` webcam tiles on a dark canvas.

    Args:
        images: participants, cycled to fill the tiles: BGR (or grey) images, or
            ``(image, face_box)`` pairs whose box is the face's ``(x, y, w, h)`` in that image.
        rows, cols: grid shape.
        size: frame ``(width, height)``.
        count: how many tiles hold a participant (default all ``rows * cols``); the rest stay empty.
        gap: dark border between tiles, in pixels.
        names: labels drawn on each tile (default a list of first names).
        face_frac: range of face height / tile height, drawn per tile (webcams differ).
        seed: makes the per-tile size and mirroring repeatable.

    Returns:
        ``(frame, true_boxes)``: the BGR uint8 frame and the face boxes ``(x, y, w, h)`` in it, one per
        tile whose participant came with a face box.
    """
    if rows < 1 or cols < 1:
        raise ValueError("rows and cols must be >= 1")
    if not images:
        raise ValueError("no images given")
    width, height = size
    names = list(names) if names is not None else list(NAMES)
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND
    # Meeting apps keep tiles 16:9 and centre the grid.
    cell_w, cell_h = (width - gap) / cols - gap, (height - gap) / rows - gap
    tile_w = int(min(cell_w, cell_h * 16 / 9))
    tile_h = int(tile_w * 9 / 16)
    if tile_w < 8 or tile_h < 8:
        raise ValueError(f"a {rows}x{cols} grid does not fit in {width}x{height}")
    grid_w, grid_h = cols * (tile_w + gap) - gap, rows * (tile_h + gap) - gap
    left, top = (width - grid_w) // 2, (height - grid_h) // 2
    n = rows * cols if count is None else min(count, rows * cols)
    font_scale = max(0.3, min(0.6, tile_h / 240))
    true_boxes: list[Box] = []
    for i in range(n):
        item = images[i % len(images)]
        image, face = item if isinstance(item, tuple) else (item, None)
        r, c = divmod(i, cols)
        x, y = left + c * (tile_w + gap), top + r * (tile_h + gap)
        tile, box = _webcam_tile(image, face, tile_w, tile_h, float(rng.uniform(*face_frac)), bool(rng.random() < 0.5))
        frame[y:y + tile_h, x:x + tile_w] = tile
        if box is not None:
            true_boxes.append((box[0] + x, box[1] + y, box[2], box[3]))
        label = names[i % len(names)]
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        lx, ly = x + 4, y + tile_h - 4
        overlay = frame[ly - th - base - 2:ly + 1, lx - 2:lx + tw + 4]
        overlay[:] = (overlay * 0.35).astype(np.uint8)
        cv2.putText(frame, label, (lx, ly - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return frame, true_boxes


def match_boxes(found: Sequence[Box], truth: Sequence[Box], min_iou: float = 0.3) -> tuple[int, int, int]:
    """Greedy one-to-one matching of detections to true boxes.

    A detection matches a true box when their IoU is at least ``min_iou`` or the detection's centre
    lies inside the true box (detectors draw faces with different margins).

    Returns:
        ``(true_positives, false_positives, missed)``.
    """
    used: set[int] = set()
    tp = 0
    for f in found:
        cx, cy = f[0] + f[2] / 2, f[1] + f[3] / 2
        best, best_j = -1.0, -1
        for j, t in enumerate(truth):
            if j in used:
                continue
            overlap = iou(f, t)
            inside = t[0] <= cx <= t[0] + t[2] and t[1] <= cy <= t[1] + t[3]
            if overlap >= min_iou or inside:
                score = overlap + (1.0 if inside else 0.0)
                if score > best:
                    best, best_j = score, j
        if best_j >= 0:
            used.add(best_j)
            tp += 1
    return tp, len(found) - tp, len(truth) - tp
