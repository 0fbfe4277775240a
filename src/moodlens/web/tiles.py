"""A shared meeting gallery's tiles as participants, kept by what each tile shows.

A video call moves people around its grid when someone joins or leaves, when the window is
resized and when it pages; a tile's place says little about who is in it. Each participant is
therefore known by their look: a small picture of the face and of the room around it (their wall,
their lamp, their name label), compared scale-free and mirror-free. The tracker's id keeps a face
between frames only while the look agrees; a face that moved is found again by look; when two
known looks fit about equally well, the face becomes a new tile marked as unsure of whom it may be,
rather than silently adding one person's seconds to another's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from moodlens.faces import Face
from moodlens.recognizer import Recognizer

LOOK = 12  # side of the look's pictures, in pixels


def look(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A face's look: the face (grey) and the room around it (colour, about two face sizes),
    each as a small picture scaled to the face, zero-mean and unit length."""
    height, width = image.shape[:2]
    x, y, w, h = box
    parts = []
    for (x0, y0, x1, y1), grey in (((x, y, x + w, y + h), True),
                                   ((x - 0.6 * w, y - 0.5 * h, x + 1.6 * w, y + 1.5 * h), False)):
        x0, y0 = int(max(0, x0)), int(max(0, y0))
        x1, y1 = int(min(width, max(x0 + 1, x1))), int(min(height, max(y0 + 1, y1)))
        crop = image[y0:y1, x0:x1]
        if grey and crop.ndim == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        v = cv2.resize(crop, (LOOK, LOOK), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        v -= v.mean()
        parts.append(v / (np.linalg.norm(v) + 1e-6))
    return np.concatenate(parts) / math.sqrt(2)


def _mirror(v: np.ndarray) -> np.ndarray:
    face, room = np.split(v, [LOOK * LOOK])
    return np.concatenate([face.reshape(LOOK, LOOK)[:, ::-1].ravel(),
                           room.reshape(LOOK, LOOK, -1)[:, ::-1].ravel()])


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two looks, the better of as seen and mirrored (some call apps mirror
    the self-view, and a tile's mirroring can change when the grid is rebuilt)."""
    return float(max(a @ b, a @ _mirror(b)))


@dataclass
class Tile:
    """A known tile: where its face was last (centre and size in frame fractions) and its look."""

    cx: float
    cy: float
    size: float
    look: np.ndarray


class GalleryTiles:
    """Turns a shared meeting gallery into participants (see the module's docstring).

    Args:
        create: makes the participant for a new tile, ``create(n, maybe)`` for the n-th tile
            (``maybe``: the participant id it may be, when unsure; None otherwise).
        same: looks at least this similar may be the same person.
        keep: a tracked face whose look falls below this is no longer trusted to its track.
        margin: the best match must beat the next by this much; closer calls are unsure.
        reach: a face within this many face sizes of a tile's last place gets a small bonus.
        emotions: False for an attention-only session: the gallery's faces are never classified.
    """

    def __init__(self, recognizer: Recognizer, create: Callable[[int, int | None], object], same: float = 0.7,
                 keep: float = 0.5, margin: float = 0.08, reach: float = 0.75, emotions: bool = True):
        self.stream = recognizer.open_stream(detect_every=2, emotions=emotions)
        self.create, self.same, self.keep, self.margin, self.reach = create, same, keep, margin, reach
        self.tiles: dict[int, Tile] = {}  # participant id -> tile
        self.by_track: dict[int, int] = {}  # tracker id -> participant id
        # Two sockets can share one gallery (two teacher tabs, a reconnect that overlaps the old
        # socket), each with frames on its own worker thread. ``lock`` is held around
        # ``stream.push`` + ``assign`` (one frame at a time); ``tiles_lock``, taken by ``assign``
        # and by whoever reads ``tiles`` or counts the tiles' connections, is held only briefly,
        # so the event loop may take it. ``sockets``: gallery sockets now connected.
        self.lock = threading.Lock()
        self.tiles_lock = threading.Lock()
        self.sockets = 0

    def assign(self, faces: list[Face], image: np.ndarray) -> dict[int, Face | None]:
        """Participant id -> its face in this frame (None for known tiles without a face).
        ``create`` is called with ``tiles_lock`` held."""
        with self.tiles_lock:
            return self._assign(faces, image)

    def _place(self, face: Face, shape: tuple[int, int]) -> tuple[float, float, float]:
        height, width = shape
        x, y, w, h = face.box
        return (x + w / 2) / width, (y + h / 2) / height, max(w / width, h / height)

    def _assign(self, faces: list[Face], image: np.ndarray) -> dict[int, Face | None]:
        shape = image.shape[:2]
        looks = [look(image, f.box) for f in faces]
        sims = {(i, pid): similarity(v, tile.look) for i, v in enumerate(looks) for pid, tile in self.tiles.items()}
        found: dict[int, int] = {}  # participant id -> index of its face
        unmatched = []
        for i, face in enumerate(faces):
            pid = self.by_track.get(face.track_id)
            # A reflow slides the next person under a track's box: the track holds only while its
            # tile's look fits and no other tile's look fits clearly better.
            if pid is not None and pid not in found and sims[i, pid] >= self.keep and \
                    all(sims[i, q] <= sims[i, pid] + self.margin for q in self.tiles if q != pid):
                found[pid] = i
            else:
                unmatched.append(i)
        free = [pid for pid in self.tiles if pid not in found]
        scores = {(i, pid): sims[i, pid] + self._near(faces[i], pid, shape) for i in unmatched for pid in free}
        new: list[tuple[int, int | None]] = []
        # best pairs first; a face takes a tile only when no other tile (or face) is a near call
        for (i, pid), score in sorted(scores.items(), key=lambda kv: -kv[1]):
            if i in found.values() or pid in found or any(j == i for j, _ in new):
                continue
            if score < self.same:
                break
            # the same face against another free tile, or the same tile against another free face
            rivals = [other for (j, q), other in scores.items()
                      if (j == i) != (q == pid) and q not in found and j not in found.values()]
            if rivals and max(rivals) > score - self.margin:
                new.append((i, pid))  # unsure: between two people
            else:
                found[pid] = i
        placed = set(found.values()) | {i for i, _ in new}
        new += [(i, None) for i in unmatched if i not in placed]
        for i, maybe in _grid_order(new, faces):
            tile = self.create(len(self.tiles) + 1, maybe)
            self.tiles[tile.id] = Tile(*self._place(faces[i], shape), looks[i])
            found[tile.id] = i
        for pid, i in found.items():
            tile = self.tiles[pid]
            tile.cx, tile.cy, tile.size = self._place(faces[i], shape)
            if similarity(looks[i], tile.look) >= self.same:  # learn slowly, and only from clear matches
                tile.look = 0.9 * tile.look + 0.1 * looks[i]
                tile.look /= np.linalg.norm(tile.look) + 1e-6
            self.by_track[faces[i].track_id] = pid
        live_tracks = {f.track_id for f in faces}
        self.by_track = {t: p for t, p in self.by_track.items() if t in live_tracks}
        return {pid: (faces[found[pid]] if pid in found else None) for pid in self.tiles}

    def _near(self, face: Face, pid: int, shape: tuple[int, int]) -> float:
        """A small bonus for a face where the tile was last: a tie between looks goes to the place."""
        tile = self.tiles[pid]
        cx, cy, size = self._place(face, shape)
        near = math.hypot((cx - tile.cx) * shape[1] / shape[0], cy - tile.cy) / max(tile.size, size) <= self.reach
        return 0.05 if near else 0.0


def _grid_order(new: list[tuple[int, int | None]], faces: list[Face]) -> list[tuple[int, int | None]]:
    """New tiles in reading order: by row (faces whose centres are within half a face height of
    each other share one), then left to right."""
    items = sorted(new, key=lambda item: faces[item[0]].box[1] + faces[item[0]].box[3] / 2)
    rows: list[list[tuple[int, int | None]]] = []
    for item in items:
        x, y, w, h = faces[item[0]].box
        if rows:
            rx, ry, rw, rh = faces[rows[-1][0][0]].box
            if abs((y + h / 2) - (ry + rh / 2)) <= 0.5 * max(h, rh):
                rows[-1].append(item)
                continue
        rows.append([item])
    return [item for row in rows for item in sorted(row, key=lambda it: faces[it[0]].box[0])]
