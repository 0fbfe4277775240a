"""What averaging models could reach: every combination of the given models on PublicTest.

Distilling an ensemble into one small student rarely beats the ensemble, so the best combination
of the models at hand is a ceiling for a student distilled from them. For each combination this
prints FER2013 accuracy (original labels) and agreement with people (faces with a strict FER+
crowd majority), with the models' probabilities averaged; single pass, no test-time
augmentation, as in ``moodlens evaluate``. The first row is the people themselves: how often the
crowd's most-voted class is FER2013's label, on the faces FER+ keeps as faces. The two measures
pull against each other: a model that agreed with people on every face would score about that
on FER2013's labels::

    PYTHONPATH=src python scripts/ensemble_ceiling.py runs/moodnet_s_v1.onnx \\
        runs/moodnet_s_v2.onnx runs/lean_a.onnx runs/lean_b.onnx
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from moodlens.classify import EmotionModel
from moodlens.training.data import load_crowd_majority, load_faces, load_fer2013

DATA = "../shared/datasets/fer2013/"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="MoodLens ONNX models with the same classes")
    ap.add_argument("--data", default=DATA + "fer2013.csv.gz")
    ap.add_argument("--ferplus", default=DATA + "fer2013new.csv")
    args = ap.parse_args()
    faces = load_faces(args.data, "PublicTest")
    crowd = load_crowd_majority(args.data, args.ferplus, "PublicTest")
    probs = {}
    for path in args.models:
        model = EmotionModel(path)
        probs[Path(path).stem] = model.predict(faces.images), model.predict(crowd.images)
    width = len(" + ".join(probs))
    print(f"{'models':<{width}} {'FER2013':>8} {'crowd':>8}")
    voted = load_fer2013(args.data, "PublicTest", ferplus=args.ferplus)  # labels: the crowd's most-voted class
    own = load_fer2013(args.data, "PublicTest", ferplus=args.ferplus, ferplus_weight=0.0)  # same faces, FER2013's labels
    print(f"{'the crowd itself':<{width}} {(voted.labels == own.labels).mean():8.4f} {1:8.4f}")
    for size in range(1, len(probs) + 1):
        for names in itertools.combinations(probs, size):
            fer, agree = (np.mean([probs[n][i] for n in names], 0).argmax(1) for i in (0, 1))
            print(f"{' + '.join(names):<{width}} {(fer == faces.labels).mean():8.4f} {(agree == crowd.labels).mean():8.4f}")


if __name__ == "__main__":
    main()
