"""Tracking for video: stable ids per face, per-track smoothing of the emotion scores and head
poses, and a cheap optical-flow box shift for the frames between detections."""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import cv2
import numpy as np

from moodlens.faces import Face, Pose


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), boxes as x, y, w, h."""
    a, b = a[:, None, :].astype(float), b[None, :, :].astype(float)
    ix = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    return float(iou_matrix(np.array([a]), np.array([b]))[0, 0])


def match_iou(a: list, b: list, threshold: float) -> dict[int, int]:
    """Greedy one-to-one matching of boxes ``a`` to boxes ``b`` (x, y, w, h): the best-overlapping
    pairs first, each box used once, no pair below ``threshold`` IoU. Returns ``{i: j}``."""
    pairs: dict[int, int] = {}
    if not a or not b:
        return pairs
    overlap = iou_matrix(np.array(a), np.array(b))
    used: set[int] = set()
    for flat in np.argsort(-overlap, axis=None):
        i, j = divmod(int(flat), len(b))
        if overlap[i, j] < threshold:
            break
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


@dataclass
class _Track:
    id: int
    box: tuple[int, int, int, int]
    last_seen: float
    scores: np.ndarray | None = None
    last_scored: float = 0.0
    pose: np.ndarray | None = None  # yaw, pitch, roll, confidence
    last_posed: float = 0.0


class Tracker:
    """Greedy matching of each frame's faces to tracks, by overlap and then by distance.

    A face takes the track whose last box overlaps it most (IoU >= ``iou_threshold``). A face
    left over takes the nearest track not seen in this frame whose last box's centre lies within
    ``reach`` box sides of its own and whose size is within a factor of 2: so a face hidden,
    turned away or missed by the detector for up to ``max_age_s`` seconds keeps its id when it
    comes back near where it was, even if it moved meanwhile. Tracks unseen for ``max_age_s``
    are forgotten.

    Scores and head poses are smoothed per track with an exponential moving average whose weight
    depends on the time since the last update (time constant ``smoothing_s``), so the result
    does not depend on the frame rate.
    """

    def __init__(self, classes: tuple[str, ...], iou_threshold: float = 0.3, max_age_s: float = 2.0,
                 smoothing_s: float = 0.5, reach: float = 1.0):
        self.classes = classes
        self.iou_threshold, self.max_age_s, self.smoothing_s = iou_threshold, max_age_s, smoothing_s
        self.reach = reach
        self.tracks: dict[int, _Track] = {}
        self._next_id = 1

    def update(self, faces: list[Face], time: float) -> list[Face]:
        """Assign ``track_id`` to each face and replace its ``scores`` and ``pose`` by the smoothed ones."""
        self.tracks = {k: t for k, t in self.tracks.items() if time - t.last_seen <= self.max_age_s}
        assigned: dict[int, int] = {}
        if faces and self.tracks:
            ids = list(self.tracks)
            boxes = np.array([f.box for f in faces], float)
            old = np.array([self.tracks[k].box for k in ids], float)
            overlap = iou_matrix(boxes, old)
            # distance between centres in units of the larger box side; inf where sizes differ > 2x
            gap = np.linalg.norm((boxes[:, None, :2] + boxes[:, None, 2:] / 2) - (old[None, :, :2] + old[None, :, 2:] / 2),
                                 axis=2) / np.maximum(boxes[:, None, 2:].max(2), old[None, :, 2:].max(2))
            ratio = np.sqrt(boxes[:, None, 2] * boxes[:, None, 3] / np.maximum(old[None, :, 2] * old[None, :, 3], 1))
            gap[(ratio > 2) | (ratio < 0.5)] = np.inf
            used: set[int] = set()
            # Greedy: best-overlapping pairs first, then the nearest; each face and track used once.
            for order, ok in ((np.argsort(-overlap, axis=None), overlap >= self.iou_threshold),
                              (np.argsort(gap, axis=None), gap <= self.reach)):
                for flat in order:
                    i, j = divmod(int(flat), len(ids))
                    if not ok[i, j]:
                        break
                    if i not in assigned and ids[j] not in used:
                        assigned[i] = ids[j]
                        used.add(ids[j])
        for i, face in enumerate(faces):
            track = self.tracks.get(assigned.get(i, -1))
            if track is None:
                track = _Track(self._next_id, face.box, time)
                self.tracks[track.id] = track
                self._next_id += 1
            else:
                track.box, track.last_seen = face.box, time
            face.track_id = track.id
            if face.scores:
                track.scores, track.last_scored = self._smooth(track.scores, track.last_scored,
                                                               np.array([face.scores[c] for c in self.classes]), time)
                face.scores = dict(zip(self.classes, track.scores.tolist()))
            if face.pose is not None:
                track.pose, track.last_posed = self._smooth(track.pose, track.last_posed, np.array(astuple(face.pose)), time)
                face.pose = Pose(*track.pose.tolist())
        return faces

    def reset(self) -> None:
        """Forget every track (a scene cut): the next faces get new ids."""
        self.tracks.clear()

    def _smooth(self, average: np.ndarray | None, last: float, value: np.ndarray, time: float) -> tuple[np.ndarray, float]:
        """A track's running ``average`` (updated at ``last``) moved towards ``value`` seen at ``time``."""
        if average is None:
            return value, time
        keep = math.exp(-max(time - last, 0.0) / self.smoothing_s) if self.smoothing_s > 0 else 0.0
        return keep * average + (1 - keep) * value, time


class SceneCut:
    """Says when a frame shows another scene than the one before it: a cut in an edited video, a
    switched camera. Faces on the two sides of a cut are different people even where their boxes
    overlap, so their tracks must not carry one person's smoothed scores over to the next.

    Frames are compared as tiny thumbnails normalised for brightness and contrast (a webcam's
    exposure changes are not cuts), by their correlation. On the shared photos
    (``scripts/scene_cut_check.py``), different photos correlate at most 0.22, while the same
    photo moved by 5 % of its size still correlates 0.66-0.83 and zoomed by 25 % 0.56-0.80;
    consecutive video frames move far less than that.
    """

    def __init__(self, min_correlation: float = 0.4, size: tuple[int, int] = (32, 24), min_contrast: float = 2.0):
        self.min_correlation, self.size, self.min_contrast = min_correlation, size, min_contrast
        self.prev: np.ndarray | None = None

    def thumbnail(self, grey: np.ndarray) -> np.ndarray | None:
        """The frame as a normalised thumbnail; None for a nearly flat frame (a covered lens, a
        fade to black), which has no scene to compare."""
        thumb = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        contrast = float(thumb.std())
        return (thumb - thumb.mean()) / contrast if contrast >= self.min_contrast else None

    @staticmethod
    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b) / a.size

    def __call__(self, grey: np.ndarray) -> bool:
        thumb = self.thumbnail(grey)
        prev, self.prev = self.prev, thumb
        return prev is not None and thumb is not None and self.correlation(prev, thumb) < self.min_correlation


class FlowShifter:
    """Moves face boxes between detections by the median Lucas-Kanade flow of points inside
    each box: a few milliseconds instead of a full detection."""

    def __init__(self, points_per_side: int = 4):
        self.n = points_per_side
        self.prev: np.ndarray | None = None

    def reset(self, grey: np.ndarray) -> None:
        self.prev = grey

    def shift(self, grey: np.ndarray, faces: list[Face]) -> list[Face]:
        if self.prev is None or self.prev.shape != grey.shape or not faces:
            self.prev = grey
            return faces
        grid = (np.arange(self.n) + 0.5) / self.n
        pts = np.concatenate([
            np.stack(np.meshgrid(x + grid * w, y + grid * h), -1).reshape(-1, 2) for x, y, w, h in (f.box for f in faces)
        ]).astype(np.float32)
        lk = dict(winSize=(15, 15), maxLevel=2)
        new, status, _ = cv2.calcOpticalFlowPyrLK(self.prev, grey, pts.reshape(-1, 1, 2), None, **lk)
        # Forward-backward check: a point that does not flow back to where it started sat on
        # something flat or hidden (a face that just vanished), and would drag the box away.
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(grey, self.prev, new, None, **lk)
        round_trip = np.linalg.norm(back.reshape(-1, 2) - pts, axis=1)
        ok = (status.reshape(-1) == 1) & (status_back.reshape(-1) == 1) & (round_trip < 1.0)
        moved = (new.reshape(-1, 2) - pts).reshape(len(faces), -1, 2)
        ok = ok.reshape(len(faces), -1)
        height, width = grey.shape
        for face, d, good in zip(faces, moved, ok):
            if good.sum() >= good.size // 2:
                dx, dy = np.median(d[good], axis=0)
                x, y, w, h = face.box
                face.box = (int(np.clip(round(x + dx), 0, width - 1)), int(np.clip(round(y + dy), 0, height - 1)), w, h)
                if face.landmarks is not None:
                    face.landmarks = face.landmarks + np.array([dx, dy], np.float32)
        self.prev = grey
        return faces
