"""Face datasets: the FER2013 CSV, the FER+ relabelling, and image folders, in one form.

Every loader returns a :class:`FaceSet` of uint8 grey crops with integer labels over a named
class set, so training and evaluation never care where the faces came from.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from moodlens.classes import FER2013_CLASSES, FERPLUS_CLASSES, ClassNameError, resolve_classes
from moodlens.errors import MoodLensError, existing_file
from moodlens.preprocess import resize_square

FER_SIZE = 48
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# FER+ names its vote columns differently from FER2013's class names.
FERPLUS_COLUMNS = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}
# The columns of a vote array: the eight emotions in FERPLUS_CLASSES order, then the two
# columns that are not an emotion.
FERPLUS_VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
CROWD_SETS = ("agreement", "majority")


class DataError(MoodLensError):
    """Bad input data; the message names the file (and row) at fault."""


@dataclass
class FaceSet:
    """Grey face crops with labels.

    Attributes:
        images: uint8 (N, H, W) grey crops.
        labels: int64 (N,) indices into ``classes``.
        classes: class names, in canonical order.
        soft: optional float32 (N, C) label distributions (FER+ votes), rows summing to 1.
        rows: for a FER2013 CSV, each face's data row in the file (0-based, all splits counted),
            the key that ties saved teacher probabilities to faces; None for image folders.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    soft: np.ndarray | None = None
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> FaceSet:
        soft = None if self.soft is None else self.soft[index]
        rows = None if self.rows is None else self.rows[index]
        return FaceSet(self.images[index], self.labels[index], self.classes, soft, rows)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def _open_text(path: Path) -> io.TextIOBase:
    existing_file(path, DataError)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _rows(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) from a CSV, checking the header first and each row's field count."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, [])
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"{path}: not the expected CSV, missing column(s) {', '.join(missing)}")
            for fields in reader:
                if not fields:  # a blank line, as csv.DictReader skips
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{path}, line {reader.line_num}: {len(fields)} field(s), expected "
                                    f"{len(header)} ({','.join(header)})")
                yield reader.line_num, dict(zip(header, fields))
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV ({e})") from None


def _select_classes(images, labels, soft, universe, classes, rows=None) -> FaceSet:
    """Keep rows whose label is in ``classes`` and renumber labels into that subset."""
    wanted = resolve_classes(classes, universe)
    keep_ids = np.array([universe.index(c) for c in wanted])
    keep = np.isin(labels, keep_ids)
    remap = np.full(len(universe), -1, np.int64)
    remap[keep_ids] = np.arange(len(wanted))
    if soft is not None:
        soft = soft[keep][:, keep_ids]
        soft = soft / np.clip(soft.sum(1, keepdims=True), 1e-8, None)
    return FaceSet(images[keep], remap[labels[keep]], wanted, soft, None if rows is None else rows[keep])


def load_fer2013(
    path: str | Path,
    splits: str | Iterable[str] | None = None,
    classes: str | Iterable[str] | None = None,
    ferplus: str | Path | None = None,
    ferplus_classes: bool = False,
    ferplus_weight: float = 1.0,
    crowd: str | None = None,
) -> FaceSet:
    """Load the original FER2013 CSV (``emotion,pixels,Usage``; ``.csv`` or ``.csv.gz``).

    Args:
        path: the CSV file.
        splits: ``Usage`` values to keep (``Training``, ``PublicTest``, ``PrivateTest``), a
            comma-separated string or list; None keeps all rows.
        classes: a class subset by name (e.g. ``"angry,happy,neutral,sad"``); None for all.
        ferplus: the FER+ vote file (``fer2013new.csv``) for the same rows. When given, rows
            FER+ marks as not-a-face or mostly unknown are dropped, labels become the FER+
            majority vote and ``soft`` holds the vote distributions.
        ferplus_classes: with ``ferplus``, use the 8-class FER+ task (adds contempt).
        ferplus_weight: with ``ferplus``, below 1 the labels stay FER2013's own and ``soft``
            blends the crowd's vote distribution (this weight) with the one-hot FER2013 label.
        crowd: with ``ferplus``, a test set labelled by the crowd instead of soft targets.
            ``"agreement"``: the faces on which more than half of the annotators (of all votes,
            "unknown" and "not a face" included) chose the same one of the seven classes.
            ``"majority"``: the FER+ paper's majority vote (:func:`ferplus_majority`), over the
            eight FER+ classes, contempt included.

    Raises:
        DataError: unreadable file, wrong header, a row with a bad label or pixel count.
    """
    path = Path(path)
    # Option mistakes are said before the whole file is read.
    if ferplus_classes and ferplus is None:
        raise DataError("the 8-class FER+ task (--ferplus-8) needs the FER+ vote file (--ferplus)")
    if ferplus is not None and not 0.0 <= ferplus_weight <= 1.0:
        raise DataError(f"the FER+ weight must be between 0 and 1, got {ferplus_weight}")
    if ferplus_classes and ferplus_weight < 1.0:
        raise DataError("blending FER+ votes with FER2013 labels needs the 7 FER2013 classes (no --ferplus-8)")
    wanted_splits = None
    if splits is not None:
        wanted_splits = {s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits)}
    pixels, labels, usages, lines = [], [], [], []
    n_pixels = FER_SIZE * FER_SIZE
    for line, row in _rows(path, ("emotion", "pixels", "Usage")):
        usages.append(row["Usage"])
        if wanted_splits is not None and row["Usage"] not in wanted_splits:
            continue
        try:
            label = int(row["emotion"])
            if not 0 <= label < len(FER2013_CLASSES):
                raise ValueError
        except ValueError:
            raise DataError(f"{path}, line {line}: unknown emotion label {row['emotion']!r} (expected 0-6)") from None
        values = row["pixels"].split()
        if len(values) != n_pixels:
            raise DataError(f"{path}, line {line}: {len(values)} pixel values, expected {n_pixels} (48x48)")
        try:
            face = np.array(values, dtype=np.int32)
        except ValueError:
            raise DataError(f"{path}, line {line}: pixel values must be integers 0-255") from None
        if face.min() < 0 or face.max() > 255:
            raise DataError(f"{path}, line {line}: pixel values must be integers 0-255")
        pixels.append(face.astype(np.uint8).reshape(FER_SIZE, FER_SIZE))
        labels.append(label)
        lines.append(len(usages) - 1)
    if not labels:
        known = sorted(set(usages))
        raise DataError(f"{path}: no rows for split(s) {sorted(wanted_splits or [])}; the file has {known}")
    images = np.stack(pixels)
    labels = np.array(labels, np.int64)
    rows = np.array(lines, np.int64)
    if ferplus is None:
        return _select_classes(images, labels, None, FER2013_CLASSES, classes, rows)
    votes = _read_ferplus_votes(Path(ferplus), usages)[lines]
    emotions, junk = votes[:, :len(FERPLUS_CLASSES)], votes[:, len(FERPLUS_CLASSES):].sum(1)
    # FER+ leaves the image name empty for non-faces (all votes zero here); also drop faces most
    # annotators could not read.
    ok = junk < emotions.max(1)
    if crowd == "agreement":
        seven = emotions[:, :len(FER2013_CLASSES)]
        agreed = np.flatnonzero(ok & (seven.max(1) > votes.sum(1) / 2))
        return _select_classes(images[agreed], seven[agreed].argmax(1), None, FER2013_CLASSES, classes, rows[agreed])
    if crowd == "majority":
        majority = ferplus_majority(votes)
        kept = np.flatnonzero(majority >= 0)
        return _select_classes(images[kept], majority[kept], None, FERPLUS_CLASSES, classes, rows[kept])
    if crowd is not None:
        raise DataError(f"unknown crowd test set {crowd!r} (expected one of {', '.join(CROWD_SETS)})")
    universe = FERPLUS_CLASSES if ferplus_classes else FER2013_CLASSES
    emotions = emotions[:, :len(universe)]
    ok &= emotions.sum(1) > 0
    soft = emotions[ok] / emotions[ok].sum(1, keepdims=True)
    if ferplus_weight < 1.0:
        onehot = np.eye(len(universe), dtype=np.float32)[labels[ok]]
        soft = ferplus_weight * soft + (1.0 - ferplus_weight) * onehot
        return _select_classes(images[ok], labels[ok], soft.astype(np.float32), universe, classes, rows[ok])
    return _select_classes(images[ok], soft.argmax(1), soft.astype(np.float32), universe, classes, rows[ok])


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """The FER+ paper's majority-vote label of each face (Barsoum et al. 2016): the most-voted of
    the eight emotions when no other emotion has as many votes and neither ``unknown`` nor ``NF``
    has more; -1 where there is none. ``votes`` is (faces, 10) in :data:`FERPLUS_VOTE_COLUMNS`
    order; labels index :data:`moodlens.classes.FERPLUS_CLASSES`."""
    emotions = votes[:, :len(FERPLUS_CLASSES)]
    top = emotions.max(1)
    unique = (emotions == top[:, None]).sum(1) == 1
    readable = (votes[:, len(FERPLUS_CLASSES):] <= top[:, None]).all(1) & (top > 0)
    return np.where(unique & readable, emotions.argmax(1), -1)


def load_crowd_majority(path: str | Path, ferplus: str | Path, split: str = "PublicTest") -> FaceSet:
    """The faces of ``split`` on which the FER+ crowd agrees (a strict majority of the 10
    annotators chose one of the 7 FER2013 classes), labelled with the crowd's choice. Accuracy
    on this set measures agreement with people rather than with FER2013's noisier labels."""
    return load_fer2013(path, split, None, ferplus, crowd="agreement")


def load_ferplus_majority(path: str | Path, ferplus: str | Path, split: str = "PublicTest") -> FaceSet:
    """The faces of ``split`` with a FER+ majority-vote label (:func:`ferplus_majority`), over the
    eight FER+ classes: the benchmark as the FER+ paper reports it."""
    return load_fer2013(path, split, None, ferplus, crowd="majority")


def _read_ferplus_votes(path: Path, usages: list[str]) -> np.ndarray:
    """Read FER+ votes as (rows, 10) in :data:`FERPLUS_VOTE_COLUMNS` order; a row FER+ marks as
    not a face (no image name) has no votes."""
    columns = {v: k for k, v in FERPLUS_COLUMNS.items()}
    names = [columns.get(c, c) for c in FERPLUS_VOTE_COLUMNS]
    votes = []
    for line, row in _rows(path, ("Usage", "Image name", *names)):
        if len(votes) >= len(usages) or row["Usage"] != usages[len(votes)]:
            raise DataError(f"{path}, line {line}: does not line up with the FER2013 CSV row by row")
        try:
            counts = [float(row[c]) for c in names]
        except ValueError:
            raise DataError(f"{path}, line {line}: vote counts must be numbers") from None
        votes.append(counts if row["Image name"].strip() else [0.0] * len(names))
    if len(votes) != len(usages):
        raise DataError(f"{path}: {len(votes)} rows, but the FER2013 CSV has {len(usages)}")
    return np.array(votes, np.float32)


def load_image_folder(
    root: str | Path, classes: str | Iterable[str] | None = None, size: int = FER_SIZE
) -> FaceSet:
    """Load ``root/<class>/*.jpg|png|...`` (any size, colour or grey) as size x size grey crops.

    Folder names are class names (case-insensitive); the class set defaults to the folders found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    unknown = sorted(set(folders) - set(FERPLUS_CLASSES))
    if unknown:
        raise DataError(f"{root}: folder {unknown[0]!r} is not a class name; expected some of {', '.join(FERPLUS_CLASSES)}")
    universe = tuple(c for c in FERPLUS_CLASSES if c in folders)
    if len(universe) < 2:
        raise DataError(f"{root}: expected one sub-folder per class (at least two), found {len(universe)}")
    try:
        wanted = resolve_classes(classes, universe)
    except ClassNameError as e:
        raise DataError(f"{root}: {e}") from None
    images, labels = [], []
    for label, name in enumerate(wanted):
        files = sorted(p for p in folders[name].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folders[name]}: empty folder, no images")
        for file in files:
            grey = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise DataError(f"{file}: unreadable image")
            images.append(resize_square(grey, size))
            labels.append(label)
    return FaceSet(np.stack(images), np.array(labels, np.int64), wanted)


def load_faces(
    path: str | Path,
    split: str | None = None,
    classes: str | Iterable[str] | None = None,
    ferplus: str | Path | None = None,
    ferplus_classes: bool = False,
    ferplus_weight: float = 1.0,
) -> FaceSet:
    """Load any supported dataset: a FER2013 CSV (``split`` = Usage) or an image folder
    (``split`` = a sub-folder such as ``train`` or ``test``, as in the Kaggle folder copy)."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path / split if split else path, classes)
    if path.name.endswith((".csv", ".csv.gz")):
        return load_fer2013(path, split, classes, ferplus, ferplus_classes, ferplus_weight)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: expected a FER2013 .csv/.csv.gz file or a folder of class sub-folders")
