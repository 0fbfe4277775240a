"""Keep a trained teacher's reading of every FER2013 face, so the teacher outlives its checkpoint.

A ResNet-18 teacher takes a whole session of this 2-core CPU to train and its checkpoint is too
big to commit; its probabilities for the 32,298 Training + PublicTest faces (each face averaged
with its mirror image, float16, keyed by CSV row) are a few hundred kB. ``moodlens train
--teacher teachers/NAME.npz`` distils from them in any later session. ::

    python scripts/teacher_probs.py runs/teacher_r18_s0/best.pt --out teachers/r18_s0.npz

Beside the ``.npz`` it writes ``NAME.json``: the command, and the teacher's PublicTest scores
computed from the saved probabilities themselves (FER2013 labels, the FER+ paper's majority vote,
the crowd-agreement subset), so what a student learns from is what was measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from moodlens.errors import MoodLensError
from moodlens.training.data import load_fer2013
from moodlens.training.train import load_teacher, save_teacher_file

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"


def label_sets(data: Path, ferplus: Path) -> dict:
    """PublicTest on each kind of label: FER2013's own, the FER+ paper's majority vote and the
    crowd-agreement subset."""
    return {"fer2013": load_fer2013(data, "PublicTest"),
            "ferplus_majority": load_fer2013(data, "PublicTest", ferplus=ferplus, crowd="majority"),
            "ferplus_agreement": load_fer2013(data, "PublicTest", ferplus=ferplus, crowd="agreement")}


def scores(probs: np.ndarray, rows: np.ndarray, sets: dict) -> dict:
    """Accuracy of probabilities kept by FER2013 row on each of :func:`label_sets`."""
    by_row = dict(zip(rows.tolist(), probs))
    out = {}
    for name, faces in sets.items():
        # a 7-class teacher never says contempt, so those majority faces count as misses
        predicted = np.array([by_row[r][:7].argmax() for r in faces.rows.tolist()])
        out[name] = {"accuracy": round(float((predicted == faces.labels).mean()), 4), "n": len(faces)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="the teacher: a training checkpoint (.pt) or an exported model (.onnx)")
    ap.add_argument("--out", required=True, help="file to write (.npz); its scores go beside it as .json")
    ap.add_argument("--data", default=str(SHARED / "fer2013.csv.gz"), help="FER2013 CSV (default: %(default)s)")
    ap.add_argument("--ferplus", default=str(SHARED / "fer2013new.csv"), help="FER+ votes, for the scores "
                    "(default: %(default)s)")
    ap.add_argument("--splits", default="Training,PublicTest", help="Usage values to keep (default: %(default)s)")
    args = ap.parse_args()
    try:
        faces = load_fer2013(args.data, args.splits)
        known, predict = load_teacher(args.checkpoint, torch.device("cpu"), bf16=False)
        if known != faces.classes:
            raise MoodLensError(f"{args.checkpoint}: a teacher of {','.join(known)}; expected the 7 FER2013 classes")
        probs = (predict(faces.images) + predict(faces.images[:, :, ::-1])) / 2
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_teacher_file(out, probs, faces)
    except MoodLensError as e:
        print(f"teacher_probs: error: {e}", file=sys.stderr)
        return 2
    report = {"command": shlex.join(["python", "scripts/teacher_probs.py", *sys.argv[1:]]),
              "faces": len(faces), "publictest": scores(probs.astype(np.float16).astype(np.float32), faces.rows,
                                                        label_sets(Path(args.data), Path(args.ferplus)))}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
