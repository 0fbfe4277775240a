"""How long the attention rules take to step through a stored lesson (what a review or a lesson
report costs the first time it is opened), on synthetic per-second records.

    python scripts/bench_attention.py                    # 50 participants, 1 hour
    python scripts/bench_attention.py --participants 30 --seconds 2700
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moodlens.aggregate import SecondRecord
from moodlens.attention import ClassWatch
from moodlens.classes import FER2013_CLASSES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=3600)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    usual = np.array([0.03, 0.02, 0.05, 0.1, 0.1, 0.05, 0.65])
    records = []
    for second in range(args.seconds):
        for pid in range(args.participants):
            p = np.clip(usual + rng.normal(0, 0.03, len(usual)), 0.001, None)
            scores = dict(zip(FER2013_CLASSES, (p / p.sum()).tolist()))
            records.append(SecondRecord(second, pid, max(scores, key=scores.get), scores, 2))
    start = time.perf_counter()
    ClassWatch(FER2013_CLASSES).run(records).finish()
    took = time.perf_counter() - start
    steps = args.participants * args.seconds
    print(f"{args.participants} participants x {args.seconds} s: {took:.2f} s ({1e6 * took / steps:.0f} us a step)")


if __name__ == "__main__":
    main()
