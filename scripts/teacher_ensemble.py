"""PublicTest scores of several saved teachers averaged, the reading a student distilled from
all of them is trained toward::

    PYTHONPATH=src python scripts/teacher_ensemble.py teachers/r18_s0.npz teachers/r18_s1.npz teachers/m_s2.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from teacher_probs import SHARED, scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teachers", nargs="+", type=Path, help="files written by scripts/teacher_probs.py")
    ap.add_argument("--data", default=str(SHARED / "fer2013.csv.gz"), help="FER2013 CSV (default: %(default)s)")
    ap.add_argument("--ferplus", default=str(SHARED / "fer2013new.csv"), help="FER+ votes (default: %(default)s)")
    args = ap.parse_args()
    saved = [np.load(t) for t in args.teachers]
    rows = saved[0]["rows"]
    if not all(np.array_equal(s["rows"], rows) for s in saved):
        print("teacher_ensemble: error: the teachers were saved for different faces", file=sys.stderr)
        return 2
    probs = np.mean([s["probs"].astype(np.float32) for s in saved], axis=0)
    print(json.dumps({"teachers": [str(t) for t in args.teachers],
                      "publictest": scores(probs, rows, Path(args.data), Path(args.ferplus))}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
