"""PublicTest scores of every combination of the given readings, each combination averaged.

A reading is a saved teacher (``.npz`` from scripts/teacher_probs.py), a training checkpoint
(``.pt``) or an exported model (``.onnx``); models are read on each face and its mirror image,
as the saved teachers were. A student distilled from an average rarely beats it, so the best
combination is the ceiling for a student distilled from them::

    PYTHONPATH=src python scripts/ensemble.py teachers/r18_s0.npz teachers/r18_s1.npz teachers/m_s2.npz

The first row is the people themselves: how often the crowd's most-voted class is FER2013's
label, on the faces FER+ keeps as faces. A model that agreed with people on every face would
score about that on FER2013's labels, which is why the two kinds of label pull against each other.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from teacher_probs import SHARED, label_sets, scores

from moodlens.errors import MoodLensError
from moodlens.training.data import load_fer2013
from moodlens.training.train import teacher_probs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("readings", nargs="+", help="teacher files (.npz), checkpoints (.pt) or models (.onnx)")
    ap.add_argument("--data", default=str(SHARED / "fer2013.csv.gz"), help="FER2013 CSV (default: %(default)s)")
    ap.add_argument("--ferplus", default=str(SHARED / "fer2013new.csv"), help="FER+ votes (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    args = ap.parse_args()
    try:
        sets = label_sets(Path(args.data), Path(args.ferplus))
        faces = sets["fer2013"]  # every PublicTest face, the other sets' rows among them
        probs = {Path(p).stem: teacher_probs([p], faces, torch.device("cpu"), bf16=False) for p in args.readings}
        voted = load_fer2013(args.data, "PublicTest", ferplus=args.ferplus)  # the crowd's most-voted class
        own = load_fer2013(args.data, "PublicTest", ferplus=args.ferplus, ferplus_weight=0.0)  # FER2013's, same faces
    except MoodLensError as e:
        print(f"ensemble: error: {e}", file=sys.stderr)
        return 2
    results = [{"readings": names, "publictest": scores(np.mean([probs[n] for n in names], 0), faces.rows, sets)}
               for size in range(1, len(probs) + 1) for names in itertools.combinations(probs, size)]
    crowd = round(float((voted.labels == own.labels).mean()), 4)
    if args.json:
        print(json.dumps({"crowd_on_fer2013": crowd, "combinations": results}, indent=1))
        return 0
    width = max(len("the crowd itself"), *(len(" + ".join(r["readings"])) for r in results))
    print(f"{'average of':<{width}} {'majority':>8} {'agreement':>9} {'FER2013':>8}")
    print(f"{'the crowd itself':<{width}} {1:8.4f} {1:9.4f} {crowd:8.4f}")
    for r in results:
        s = r["publictest"]
        print(f"{' + '.join(r['readings']):<{width}} {s['ferplus_majority']['accuracy']:8.4f} "
              f"{s['ferplus_agreement']['accuracy']:9.4f} {s['fer2013']['accuracy']:8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
