"""Choose how to crop detected faces so they look like FER2013's training faces.

FER2013 faces are tightly framed 48x48 crops. This script puts each PublicTest face back into a
larger picture (upscaled 4x, border replicated around it), runs the face detector on it, and
measures
  1. geometry: the square crop that reproduces the FER frame, as a scale of the detector's box
     and a vertical shift of the centre (median over all faces);
  2. accuracy: the emotion model's PublicTest accuracy when the detected faces are cut out with
     each candidate scale/shift (and with/without eye alignment), against the accuracy on the
     original crops.

    python scripts/calibrate_crop.py ../shared/datasets/fer2013/fer2013.csv.gz [--model M] [--limit N]

Prints markdown tables; the chosen values go into moodlens/crop.py (DEFAULT_SCALE, DEFAULT_SHIFT).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from tqdm import tqdm

from moodlens.classify import EmotionModel
from moodlens.crop import crop_faces
from moodlens.detect import create_detector
from moodlens.faces import Face
from moodlens.training.data import load_fer2013

UP, PAD = 4, 96  # 48 px face -> 192 px, inside a 384 px picture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, default=0, help="use the first N PublicTest faces (0: all)")
    args = ap.parse_args()

    faces = load_fer2013(args.csv, "PublicTest")
    if args.limit:
        faces = faces.subset(np.arange(min(args.limit, len(faces))))
    detector, model = create_detector(), EmotionModel(args.model)
    pictures, found, keep = [], [], []
    for i, face in enumerate(tqdm(faces.images, desc="detecting", unit="face")):
        big = cv2.resize(face, None, fx=UP, fy=UP, interpolation=cv2.INTER_CUBIC)
        picture = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        centre = PAD + 24 * UP
        near = [f for f in detector.detect(picture)
                if abs(f.box[0] + f.box[2] / 2 - centre) < 16 * UP and abs(f.box[1] + f.box[3] / 2 - centre) < 16 * UP]
        if near:
            pictures.append(picture)
            found.append(max(near, key=lambda f: f.detection_score))
            keep.append(i)
    keep = np.array(keep)
    labels = faces.labels[keep]
    print(f"detected {len(keep)} of {len(faces)} PublicTest faces ({len(keep) / len(faces):.1%})\n")

    boxes = np.array([f.box for f in found], float)
    side = boxes[:, 2:].max(1) / UP
    scale = 48 / side
    shift = (24 - (boxes[:, 1] + boxes[:, 3] / 2 - PAD) / UP) / 48
    shift_x = (24 - (boxes[:, 0] + boxes[:, 2] / 2 - PAD) / UP) / 48
    q = lambda v: f"{np.median(v):.3f} (IQR {np.percentile(v, 25):.3f}-{np.percentile(v, 75):.3f})"  # noqa: E731
    print("| geometry | median (interquartile range) |\n| --- | --- |")
    print(f"| FER frame side / detector box side | {q(scale)} |")
    print(f"| vertical centre shift, fraction of the FER side | {q(shift)} |")
    print(f"| horizontal centre shift | {q(shift_x)} |\n")

    reference = (model.predict(faces.images[keep]).argmax(1) == labels).mean()
    print(f"accuracy on the original 48x48 crops of these faces: {reference:.4f}\n")
    print("| scale | shift | aligned | accuracy |\n| --- | --- | --- | --- |")
    results = []
    for s in (1.0, 1.1, 1.2, 1.3, round(float(np.median(scale)), 2), 1.4, 1.5):
        for sh in (0.0, round(float(np.median(shift)), 2), 0.05):
            for align in (False, True):
                crops = np.stack([crop_faces(p, [Face(f.box, f.landmarks)], 48, s, sh, align)[0]
                                  for p, f in zip(pictures, found)])
                acc = (model.predict(crops).argmax(1) == labels).mean()
                results.append((acc, s, sh, align))
                print(f"| {s:.2f} | {sh:+.2f} | {'yes' if align else 'no'} | {acc:.4f} |", flush=True)
    best = max(results)
    print(f"\nbest: scale {best[1]:.2f}, shift {best[2]:+.2f}, aligned {best[3]}: accuracy {best[0]:.4f}")


if __name__ == "__main__":
    main()
