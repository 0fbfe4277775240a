"""The `moodlens` command: every verb's help, the verbs on the shared photos, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import FER_CSV, MEDIA, write_csv
from moodlens.cli import main

VERBS = ["train", "evaluate", "export", "image", "video", "webcam", "serve", "desktop", "benchmark"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "moodlens.cli", "--help"], capture_output=True, text=True, check=True)
    for verb in VERBS:
        assert verb in out.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(capsys, verb):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0 and "usage: moodlens " + verb in capsys.readouterr().out


def test_image_json_and_annotated_copies(capsys, tmp_path):
    code, out, _ = run(capsys, "image", MEDIA / "group.jpg", MEDIA / "portrait.jpg", "--json", "--out", tmp_path)
    results = json.loads(out)
    assert code == 0 and [len(r["faces"]) for r in results] == [8, 1]
    assert all(set(f) >= {"box", "emotion", "scores"} for r in results for f in r["faces"])
    written = cv2.imread(str(tmp_path / "group_moodlens.png"))
    assert written is not None and written.shape == (400, 600, 3)


def test_image_with_a_bad_file_reports_it_and_fails(capsys, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code, out, err = run(capsys, "image", tmp_path / "bad.jpg", MEDIA / "portrait.jpg")
    assert code == 2 and "portrait.jpg: 1 face(s)" in out
    assert err.strip() == f"moodlens: error: {tmp_path / 'bad.jpg'}: not a readable image"


def test_video_writes_annotated_video_and_timeline(capsys, tmp_path):
    portrait = cv2.resize(cv2.imread(str(MEDIA / "portrait.jpg")), (320, 240))
    writer = cv2.VideoWriter(str(tmp_path / "in.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(30):
        writer.write(np.roll(portrait, 2 * i, axis=1))
    writer.release()
    code, out, _ = run(capsys, "video", tmp_path / "in.avi", "--out", tmp_path / "out.webm",
                       "--timeline", tmp_path / "t.csv")
    assert code == 0 and "1 face track(s), 3 face-seconds" in out
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("0,1,")
    written = cv2.VideoCapture(str(tmp_path / "out.webm"))
    assert int(written.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP80"  # WebM/VP8: browsers play it
    assert sum(1 for _ in iter(lambda: written.read()[0], False)) == 30
    code, _, _ = run(capsys, "video", tmp_path / "in.avi", "--timeline", tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["seconds"][0]["track_id"] == 1


def test_evaluate_json_on_a_csv(capsys, tmp_path, fer_rows):
    csv_path = write_csv(tmp_path / "sample.csv", fer_rows)
    code, out, _ = run(capsys, "evaluate", csv_path, "--json", "--plot", tmp_path / "cm.png")
    report = json.loads(out)
    assert code == 0 and report["n"] == 300 and report["split"] == "PublicTest"
    assert set(report) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    assert np.array(report["confusion"]).sum() == 300 and (tmp_path / "cm.png").stat().st_size > 0


def test_evaluate_an_image_folder_split(capsys, tmp_path, fer_rows):
    # The Kaggle folder layout: <root>/test/<class>/*.png, here from real PublicTest faces.
    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    for i, row in enumerate(r for r in fer_rows if r["Usage"] == "PublicTest"):
        folder = tmp_path / "test" / names[int(row["emotion"])]
        folder.mkdir(parents=True, exist_ok=True)
        face = np.array(row["pixels"].split(), np.uint8).reshape(48, 48)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(face, (96, 96)))
    code, out, _ = run(capsys, "evaluate", tmp_path, "--split", "test", "--json")
    report = json.loads(out)
    assert code == 0 and report["n"] == 300 and report["classes"] == list(names)
    assert report["accuracy"] > 0.5  # the shipped model on real faces, upscaled and read back


def test_shipped_model_meets_the_publictest_bar(capsys):
    code, out, _ = run(capsys, "evaluate", FER_CSV, "--split", "PublicTest", "--json")
    report = json.loads(out)
    assert code == 0 and report["n"] == 3589
    assert report["accuracy"] >= 0.68, report["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["evaluate", "missing.csv"], "missing.csv: no such file"),
    (["evaluate", "{csv}", "--model", "{junk}"], "not a readable ONNX model"),
    (["video", "{junk}"], "not a readable video"),
    (["image", "x.jpg", "--detector", "yolo"], "unknown detector 'yolo'"),
    (["export", "{junk}"], "not a training checkpoint"),
    (["train", "{csv}", "--classes", "happy,joy"], "unknown class name 'joy'"),
    (["video", "{video}", "--timeline", "/nonexistent/dir/t.csv"], "its folder does not exist"),
    (["video", "{video}", "--out", "/nonexistent/dir/out.webm"], "its folder does not exist"),
    (["video", "{video}", "--out", "out.avi"], "write a .webm (VP8) or .mp4 (H.264) video"),
    (["benchmark", "--media", "/nonexistent"], "pass --media with the shared photos"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, fer_rows, args, message):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    csv_path = write_csv(tmp_path / "s.csv", fer_rows)
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    code, _, err = run(capsys, *[a.format(junk=junk, csv=csv_path, video=video) for a in args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_webcam_without_display_says_so(capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run(capsys, "webcam")
    assert code == 2 and "no display" in err


def test_benchmark_json(capsys):
    code, out, _ = run(capsys, "benchmark", "--json", "--repeat", "2")
    result = json.loads(out)
    assert code == 0 and result["classifier"]["crops_per_s_batch64"] > 0
    assert set(result["detector_ms"]) == {"640x480", "1280x720", "1920x1080"}
    assert result["found"]["5x5 1280x720 (20 faces)"]["found"] == 20 and result["found"]["group.jpg"]["found"] == 8
    assert result["detector"] == "yunet" and set(result["centerface_ms"]) == set(result["detector_ms"])  # baseline
