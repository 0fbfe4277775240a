"""Shared test fixtures: paths to the read-only shared data, and small real samples of it."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MEDIA = SHARED / "media"
FER_CSV = SHARED / "datasets" / "fer2013" / "fer2013.csv.gz"
FERPLUS_CSV = SHARED / "datasets" / "fer2013" / "fer2013new.csv"


@pytest.fixture(scope="session")
def fer_rows() -> list[dict]:
    """The first 300 Training rows and the first 300 PublicTest rows of the real FER2013 CSV."""
    rows, per_split = [], {"Training": 0, "PublicTest": 0}
    with gzip.open(FER_CSV, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if per_split.get(row["Usage"], 300) < 300:
                per_split[row["Usage"]] += 1
                rows.append(row)
            if all(v >= 300 for v in per_split.values()):
                break
    return rows


def write_csv(path: Path, rows: list[dict], fields=("emotion", "pixels", "Usage")) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def small_csv(tmp_path, fer_rows) -> Path:
    return write_csv(tmp_path / "fer_small.csv", fer_rows)
