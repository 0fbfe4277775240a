"""Dataset loaders on the real FER2013/FER+ files and on bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import FER_CSV, FERPLUS_CSV, write_csv
from moodlens.classes import FER2013_CLASSES, ClassNameError, resolve_classes
from moodlens.training.data import DataError, load_faces, load_fer2013, load_image_folder


def test_full_fer2013_splits_have_published_counts():
    train = load_fer2013(FER_CSV, "Training")
    test = load_fer2013(FER_CSV, "PublicTest")
    assert (len(train), len(test)) == (28709, 3589)
    assert train.images.shape == (28709, 48, 48) and train.images.dtype == np.uint8
    assert train.counts()["disgust"] == 436 and train.counts()["happy"] == 7215
    assert train.classes == FER2013_CLASSES


def test_small_csv_plain_and_gzipped_agree(tmp_path, fer_rows):
    plain = load_fer2013(write_csv(tmp_path / "a.csv", fer_rows))
    zipped = load_fer2013(write_csv(tmp_path / "a.csv.gz", fer_rows))
    assert len(plain) == 600
    np.testing.assert_array_equal(plain.images, zipped.images)
    np.testing.assert_array_equal(plain.labels, [int(r["emotion"]) for r in fer_rows])
    assert len(load_fer2013(tmp_path / "a.csv", "PublicTest")) == 300


def test_class_subset_renumbers_labels(small_csv):
    faces = load_fer2013(small_csv, classes="sad,happy,angry,neutral")
    assert faces.classes == ("angry", "happy", "sad", "neutral")
    assert set(np.unique(faces.labels)) <= {0, 1, 2, 3}
    full = load_fer2013(small_csv)
    assert len(faces) == sum(full.counts()[c] for c in faces.classes)


def test_ferplus_majority_soft_targets_and_non_faces():
    plain = load_fer2013(FER_CSV, "PublicTest")
    plus = load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV)
    assert 3000 < len(plus) < len(plain)  # non-faces and unreadable faces dropped
    np.testing.assert_allclose(plus.soft.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(plus.labels, plus.soft.argmax(1))
    eight = load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV, ferplus_classes=True)
    assert eight.classes[-1] == "contempt" and eight.soft.shape[1] == 8


def test_image_folder_any_size_colour_or_grey(tmp_path):
    for name, image in [("happy", np.full((120, 90, 3), 200, np.uint8)), ("sad", np.full((30, 30), 50, np.uint8))]:
        (tmp_path / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), image)
    faces = load_faces(tmp_path)
    assert faces.classes == ("happy", "sad") and faces.images.shape == (6, 48, 48)
    assert faces.counts() == {"happy": 3, "sad": 3}


@pytest.mark.parametrize("content, message", [
    ("emotion,pixels,Usage\n3,1 2 3,Training\n", "line 2: 3 pixel values, expected 2304"),
    ("emotion,pixels,Usage\n9," + " ".join(["1"] * 2304) + ",Training\n", "line 2: unknown emotion label '9'"),
    ("emotion,pixels,Usage\nx," + " ".join(["1"] * 2304) + ",Training\n", "unknown emotion label 'x'"),
    ("emotion,pixels,Usage\n1," + " ".join(["300"] * 2304) + ",Training\n", "line 2: pixel values must be"),
    ("emotion,pixels,Usage\n1," + " ".join(["a"] * 2304) + ",Training\n", "line 2: pixel values must be"),
    ("label,image\n1,2\n", "missing column(s) emotion, pixels, Usage"),
    ("emotion,pixels,Usage\n", "no rows for split(s)"),
    ("emotion,pixels,Usage\n3,PublicTest\n", "line 2: 2 field(s), expected 3 (emotion,pixels,Usage)"),
    ("emotion,pixels,Usage\n3," + " ".join(["1"] * 2304) + ",Training\n3,PublicTest\n", "line 3: 2 field(s)"),
    ("emotion,pixels,Usage\n3," + " ".join(["1"] * 2304) + ",Training,x,y\n", "line 2: 5 field(s), expected 3"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="bad.csv") as err:
        load_fer2013(path)
    assert message in str(err.value)


def test_bad_files_and_folders(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_fer2013(tmp_path / "missing.csv")
    (tmp_path / "junk.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read CSV"):
        load_fer2013(tmp_path / "junk.csv.gz")
    root = tmp_path / "faces"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    cv2.imwrite(str(root / "happy" / "a.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="empty folder"):
        load_image_folder(root)
    cv2.imwrite(str(root / "sad" / "b.png"), np.zeros((10, 10), np.uint8))
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: unreadable image"):
        load_image_folder(root)
    (root / "smiling").mkdir()
    with pytest.raises(DataError, match="'smiling' is not a class name"):
        load_image_folder(root)
    with pytest.raises(DataError, match="expected a FER2013"):
        (tmp_path / "x.txt").write_text("hi")
        load_faces(tmp_path / "x.txt")


def test_ferplus_file_must_line_up(tmp_path, small_csv):
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    (tmp_path / "plus.csv").write_text(header + "PublicTest,a.png,10,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match="does not line up"):
        load_fer2013(small_csv, ferplus=tmp_path / "plus.csv")
    (tmp_path / "plus.csv").write_text(header + "Training,a.png,10,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"plus.csv, line 2: 10 field\(s\), expected 12"):
        load_fer2013(small_csv, ferplus=tmp_path / "plus.csv")


def test_ferplus_options_are_checked_before_the_file_is_read(tmp_path):
    # A path that does not exist: the option mistake must be said before the file is opened.
    with pytest.raises(DataError, match=r"--ferplus-8\) needs the FER\+ vote file \(--ferplus\)"):
        load_fer2013(tmp_path / "missing.csv", ferplus_classes=True)


def test_class_names():
    assert resolve_classes(None) == FER2013_CLASSES
    with pytest.raises(ClassNameError, match="unknown class name 'happiness'"):
        resolve_classes("happiness,sad")
    with pytest.raises(ClassNameError, match="at least two"):
        resolve_classes("sad")
