"""How far apart :class:`moodlens.track.SceneCut` puts a cut and a moving camera, on the shared
photos: the correlation of each pair of different photos (a cut), and of each photo with itself
moved by 5 % of its size, zoomed in by 25 % and darkened (no cut). SceneCut calls a correlation
under its ``min_correlation`` (0.4) a cut::

    PYTHONPATH=src python scripts/scene_cut_check.py
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2
import numpy as np

from moodlens.preprocess import to_grey
from moodlens.track import SceneCut


def moved(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    shift = np.float32([[1, 0, 0.05 * w], [0, 1, 0.05 * h]])
    return {"moved 5 %": cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REPLICATE),
            "zoomed 25 %": cv2.resize(image[h // 10: h - h // 10, w // 10: w - w // 10], (w, h)),
            "darkened": cv2.convertScaleAbs(image, alpha=0.6, beta=10)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", default="../shared/media", help="folder with the shared photos")
    args = ap.parse_args()
    cut = SceneCut()
    photos = {p.name: to_grey(cv2.imread(str(p))) for p in sorted(Path(args.media).glob("*.jpg"))}
    thumbs = {name: cut.thumbnail(grey) for name, grey in photos.items()}
    pairs = [cut.correlation(thumbs[a], thumbs[b]) for a, b in itertools.combinations(thumbs, 2)]
    print(f"different photos (a cut), {len(pairs)} pairs: highest {max(pairs):.2f}")
    same: dict[str, list[float]] = {}
    for name, grey in photos.items():
        for change, image in moved(grey).items():
            same.setdefault(change, []).append(cut.correlation(thumbs[name], cut.thumbnail(image)))
    for change, values in same.items():
        print(f"same photo {change} (no cut): {min(values):.2f}-{max(values):.2f}")


if __name__ == "__main__":
    main()
