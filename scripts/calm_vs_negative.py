"""How a model reads the faces people agree are calm and the faces they agree are negative.

A class dashboard flags a change from a student's usual expression towards angry, fear or sad,
so what matters is how far apart a model reads the two kinds of face. Over the PublicTest faces
where at least ``--votes`` of the 10 FER+ annotators said neutral (calm), or angry, fear and sad
together (negative), this prints the mean probability of the negative classes and the share of
faces read as mostly negative::

    PYTHONPATH=src python scripts/calm_vs_negative.py src/moodlens/weights/moodnet_s_v3.onnx OTHER.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_sim import agreed  # noqa: E402

from moodlens.aggregate import NEGATIVE  # noqa: E402
from moodlens.classify import EmotionModel  # noqa: E402
from moodlens.training.data import load_fer2013  # noqa: E402

DATA = "../shared/datasets/fer2013/"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="MoodLens ONNX models")
    ap.add_argument("--data", default=DATA + "fer2013.csv.gz")
    ap.add_argument("--ferplus", default=DATA + "fer2013new.csv")
    ap.add_argument("--votes", type=float, default=0.7, help="share of annotators that must agree")
    args = ap.parse_args()
    faces = load_fer2013(args.data, "PublicTest", ferplus=args.ferplus)
    negative = [faces.classes.index(c) for c in NEGATIVE]
    groups = dict(zip(("calm", "negative"), agreed(faces, args.votes)))
    for path in args.models:
        read = EmotionModel(path).predict(faces.images)[:, negative].sum(1)
        print(path + ": " + "; ".join(f"{name} faces (n={mask.sum()}) read {read[mask].mean():.2f} negative, "
                                      f"mostly negative {(read[mask] > 0.5).mean():.0%}" for name, mask in groups.items()))


if __name__ == "__main__":
    main()
