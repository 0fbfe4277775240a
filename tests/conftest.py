"""Shared test fixtures: paths to the read-only shared data, and small real samples of it.

The tests read the public FER2013 files and photos from ``../shared`` beside the checkout
(``MOODLENS_SHARED`` moves it); without it the run stops at once with one line saying so.
Files the app keeps in its per-user data folder go to a temporary folder (``MOODLENS_DATA``).
"""

from __future__ import annotations

import csv
import gzip
import os
import tempfile
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("MOODLENS_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
MEDIA = SHARED / "media"
FER_CSV = SHARED / "datasets" / "fer2013" / "fer2013.csv.gz"
FERPLUS_CSV = SHARED / "datasets" / "fer2013" / "fer2013new.csv"


def pytest_configure(config) -> None:
    if not (MEDIA.is_dir() and FER_CSV.is_file()):
        pytest.exit(f"the tests need the shared data folder {SHARED} (datasets/fer2013/fer2013.csv.gz and media/*.jpg) "
                    "beside the checkout; it is missing", returncode=4)
    os.environ.setdefault("MOODLENS_DATA", tempfile.mkdtemp(prefix="moodlens-test-data-"))


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
