"""How often a model lets the class signal meet the bars of ``scripts/class_sim.py``, over many
random classes instead of one.

One run of class_sim.py draws 5 changers, so whether it passes depends a lot on which 5 faces it
drew. This script draws the same kinds of face from the same PublicTest pools (at least
``--votes`` of the FER+ annotators said neutral, or sad, fear and angry together), renders each
as class_sim's webcam frames (4 variants, sent in turn at 2 frames/s), reads every frame once with
the real detector and each model, and steps :class:`~moodlens.attention.ClassWatch` through
``--classes`` simulated lessons second by second, as the live dashboard does. No server: the
per-second scores are the mean of the second's two frames, which is what the server stores for a
still face (its 0.5 s smoothing only blurs the moment of the change).

Per model it prints the share of changers flagged within ``--within`` s of their change (live:
the second the flag goes up), the share of calm students ever flagged, and the share of lessons
that meet class_sim's bars (at most 1 calm student flagged, at least 4 of 5 changers caught, no
blinking). ::

    PYTHONPATH=src python scripts/class_odds.py                                # the shipped model
    PYTHONPATH=src python scripts/class_odds.py runs/a.onnx runs/b.onnx --classes 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_sim import SHARED, agreed, webcam  # noqa: E402

from moodlens.attention import Rules  # noqa: E402
from moodlens.classify import EmotionModel  # noqa: E402
from moodlens.detect import create_detector  # noqa: E402
from moodlens.faces import Face  # noqa: E402
from moodlens.recognizer import Recognizer  # noqa: E402
from moodlens.simulate import face_seconds, lesson  # noqa: E402
from moodlens.training.data import load_fer2013  # noqa: E402


def face_pools(votes: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """PublicTest faces most annotators called neutral, and those they called negative."""
    faces = load_fer2013(SHARED / "fer2013.csv.gz", "PublicTest", ferplus=SHARED / "fer2013new.csv")
    calm, negative = agreed(faces, votes)
    return list(faces.images[calm]), list(faces.images[negative])


def read_faces(images: list[np.ndarray], recognizers: list[Recognizer], rng: np.random.Generator,
               desc: str, size: int = 150) -> list[list[list[dict]]]:
    """For each model, each face's stored seconds (:func:`face_seconds`) over its 4 webcam variants."""
    out: list[list[list[dict]]] = [[] for _ in recognizers]
    for face in tqdm(images, desc=desc, unit="face"):
        variants = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in webcam(face, rng, size=size)]
        detections = [recognizers[0].detect(v)[:1] for v in variants]  # largest first: the main face
        for k, r in enumerate(recognizers):
            read = []
            for image, found in zip(variants, detections):
                faces = r.classify(image, [Face(f.box, f.landmarks, f.detection_score) for f in found])
                read.append(np.array([faces[0].scores[c] for c in r.classes]) if faces and faces[0].scores else None)
            out[k].append(face_seconds(read, r.classes))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="MoodLens ONNX models (default: the shipped one)")
    ap.add_argument("--classes", type=int, default=500, help="lessons to simulate")
    ap.add_argument("--students", type=int, default=20)
    ap.add_argument("--changers", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--change-at", type=int, default=40)
    ap.add_argument("--within", type=int, default=20)
    ap.add_argument("--votes", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rise", type=float, default=Rules.rise, help="the flags' rise threshold (attention.Rules)")
    ap.add_argument("--face-px", type=int, default=150,
                    help="face height in the 320x240 frame (150: a webcam; about 60: a tile of a 5x5 meeting gallery)")
    args = ap.parse_args()
    if not 0 < args.changers <= args.students:
        ap.error("--changers must be between 1 and --students")

    detector = create_detector()  # one detector finds the faces every model then reads
    recognizers = [Recognizer(EmotionModel(m) if m else None, detector) for m in (args.models or [None])]
    rng = np.random.default_rng(args.seed)
    calm_pool, negative_pool = face_pools(args.votes)
    calm_read = read_faces(calm_pool, recognizers, rng, "calm faces", args.face_px)
    negative_read = read_faces(negative_pool, recognizers, rng, "negative faces", args.face_px)
    # only faces found in at least one frame, as class_sim keeps only faces the detector finds
    calm_ok = [i for i, v in enumerate(calm_read[0]) if any(v)]
    negative_ok = [i for i, v in enumerate(negative_read[0]) if any(v)]
    print(f"{len(calm_ok)} calm and {len(negative_ok)} negative PublicTest faces found in webcam frames")

    draws = []
    for _ in range(args.classes):
        calm = rng.choice(calm_ok, args.students, replace=False)
        negative = rng.choice(negative_ok, args.changers, replace=False)
        changers = rng.choice(args.students, args.changers, replace=False)
        draws.append((calm, dict(zip(changers.tolist(), negative.tolist()))))
    print(f"{args.classes} lessons of {args.students} students ({args.changers} change after {args.change_at} s), "
          f"{args.seconds} s each; bars: <= 1 calm flagged, >= 4 of {args.changers} caught within {args.within} s")
    for name, r, calm_r, neg_r in zip(args.models or ["shipped"], recognizers, calm_read, negative_read):
        results = [lesson([calm_r[i] for i in calm], {k: neg_r[j] for k, j in changed.items()}, r.classes,
                          args.seconds, args.change_at, args.within, Rules(rise=args.rise))
                   for calm, changed in tqdm(draws, desc=Path(name).name, unit="lesson", leave=False)]
        caught = sum(x["caught"] for x in results) / (args.changers * len(results))
        calm = sum(x["calm_flagged"] for x in results) / (args.students * len(results))
        passed = np.mean([x["calm_flagged"] <= 1 and x["caught"] >= min(4, args.changers) and not x["blinked"]
                          for x in results])
        delay = np.median([d for x in results for d in x["delays"]] or [np.nan])
        blinked = np.mean([x["blinked"] > 0 for x in results])
        print(f"{name}: changers caught {caught:.1%} (median delay {delay:.0f} s), students flagged while calm "
              f"{calm:.2%}, lessons with a blink {blinked:.1%}, lessons meeting the bars {passed:.1%}")


if __name__ == "__main__":
    main()
