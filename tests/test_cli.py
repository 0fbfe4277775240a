"""The `moodlens` command: every verb's help, the verbs on the shared photos, and bad input."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FER_CSV, FERPLUS_CSV, MEDIA, write_csv
from moodlens.cli import main

VERBS = ["train", "evaluate", "export", "image", "video", "webcam", "serve", "token", "desktop", "benchmark", "batch"]


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


@pytest.mark.parametrize("verb, says", [
    ("train", ["schedule; --patience may stop earlier (default: 60)", "step (default: 128)", "(default: 0.002)",
               "weight decay (default: 0.05)", "without a better validation accuracy (default: 20)",
               "random seed (default: 0)", "optimizer (default: adamw)", "train on (default: Training)",
               "early stop (default: PublicTest)", "cuda:N (default: auto)", "default: all)"]),
    ("serve", ["TCP port (default: 8000; 0: any free port"]),
    ("export", ["with the suffix .json", "with the suffix .int8.onnx", "--ferplus FERPLUS FER+ vote file"]),
    ("benchmark", ["--json print the results as one JSON object"]),
    ("image", ["PATH image files"]),
    ("video", ["path video file to analyse"]),
])
def test_help_states_defaults_and_outputs(capsys, verb, says):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes
    for phrase in says:
        assert phrase in text, phrase


def test_image_json_and_annotated_copies(capsys, tmp_path):
    code, out, _ = run(capsys, "image", MEDIA / "group.jpg", MEDIA / "portrait.jpg", "--json", "--out", tmp_path)
    results = json.loads(out)
    assert code == 0 and [len(r["faces"]) for r in results] == [8, 1]
    assert all(set(f) >= {"box", "emotion", "scores"} for r in results for f in r["faces"])
    written = cv2.imread(str(tmp_path / "group_moodlens.png"))
    assert written is not None and written.shape == (400, 600, 3)


def test_image_tta_reads_the_same_faces_averaged_with_their_mirror_images(capsys):
    _, plain, _ = run(capsys, "image", MEDIA / "group.jpg", "--json")
    code, out, _ = run(capsys, "image", MEDIA / "group.jpg", "--json", "--tta")
    plain, tta = json.loads(plain)["faces"], json.loads(out)["faces"]  # one path: one object
    assert code == 0 and [f["box"] for f in tta] == [f["box"] for f in plain] and len(tta) == 8
    assert max(abs(a["scores"][c] - b["scores"][c]) for a, b in zip(plain, tta) for c in a["scores"]) > 1e-3


def test_image_with_a_bad_file_reports_it_and_fails(capsys, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code, out, err = run(capsys, "image", tmp_path / "bad.jpg", MEDIA / "portrait.jpg")
    assert code == 2 and "portrait.jpg: 1 face(s)" in out
    assert err.strip() == f"moodlens: error: {tmp_path / 'bad.jpg'}: not a readable image"


def test_image_json_prints_nothing_when_its_only_image_fails(capsys, tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    code, out, err = run(capsys, "image", tmp_path / "text.jpg", "--json")
    assert code == 2 and out == "" and "not a readable image" in err


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


def test_shipped_model_keeps_its_model_card_figures(capsys):
    """The model card's figures, as floors: 0.8088 on the FER+ majority vote and 0.8707 agreement
    with the crowd from the head MoodLens shows, 0.6559 on FER2013's labels from the FER2013 head,
    3.0 points lost under degradations (issue 20 asks 0.85, 0.70 and at most 4 points; the first two
    are not reached, see the model card)."""
    code, out, _ = run(capsys, "evaluate", FER_CSV, "--split", "PublicTest", "--ferplus", FERPLUS_CSV,
                       "--corruptions", "--json")
    report = json.loads(out)
    assert code == 0 and report["n"] == 3589 and report["crowd"]["n"] == 2854 and report["head"] == "fer2013"
    assert report["accuracy"] >= 0.655, report["accuracy"]
    assert report["crowd"]["accuracy"] >= 0.87, report["crowd"]
    assert report["ferplus_majority"]["n"] == 3416, report["ferplus_majority"]
    assert report["ferplus_majority"]["accuracy"] >= 0.808, report["ferplus_majority"]
    assert report["corruptions"]["drop"] <= 0.04, report["corruptions"]


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
    (["image", "{huge}"], "100000x100000 pixels is more than"),
    (["image", "{truncated}"], "not a readable image"),
    (["image", "{portrait}", "--out", "{junk}/sub"], "cannot make this folder"),
    (["video", "{video}", "--timeline", "{tmp}"], "is a folder"),
    (["video", "{video}", "--out", "{junk}/v.mp4"], "its folder does not exist"),
    (["serve", "--port", "99999"], "port 99999 is out of range"),
    (["serve", "--ssl-certfile", "/nonexistent/cert.pem"], "no such certificate file"),
    (["serve", "--max-participants", "0"], "must be at least 1"),
    (["train", "{csv}", "--epochs", "0"], "--epochs must be at least 1, not 0"),
    (["train", "{csv}", "--epochs", "-1"], "--epochs must be at least 1, not -1"),
    (["train", "{csv}", "--batch-size", "-5"], "--batch-size must be at least 1"),
    (["train", "{csv}", "--lr", "-1"], "--lr must be above 0"),
    (["train", "{csv}", "--lr", "nan"], "--lr must be above 0"),
    (["train", "{csv}", "--weight-decay", "-1"], "--weight-decay must be at least 0"),
    (["train", "{csv}", "--threads", "-2"], "--threads must be at least 1"),
    (["train", "{csv}", "--limit", "0"], "--limit must be at least 1"),
    (["train", "{csv}", "--limit", "-10"], "--limit must be at least 1"),
    (["train", "{csv}", "--seed", "-1"], "--seed must be at least 0"),
    (["train", "{csv}", "--ema", "1.5"], "--ema must be at least 0 and at most 1, not 1.5"),
    (["train", "{csv}", "--degrade", "2"], "--degrade must be at least 0 and at most 1"),
    (["train", "{csv}", "--patience", "-1"], "--patience must be at least 1"),
    (["train", "{csv}", "--freeze-epochs", "-3"], "--freeze-epochs must be at least 0"),
    (["train", "{csv}", "--teacher-weight", "2"], "--teacher-weight must be at least 0 and at most 1"),
    (["train", "{csv}", "--teacher-weight", "-1"], "--teacher-weight must be at least 0 and at most 1"),
    (["train", "{csv}", "--ferplus-weight", "1.5"], "--ferplus-weight must be at least 0 and at most 1"),
    (["train", "{csv}", "--arch", "foo"], "--arch foo: choose one of"),
    (["train", "{csv}", "--device", "tpu"], "--device tpu: choose auto, cpu, cuda or cuda:N"),
    (["train", "{csv}", "--device", "cuda:99"], "--device cuda:99: no such CUDA GPU here"),
    (["train", "{csv}", "--ferplus-8"], "needs the FER+ vote file (--ferplus)"),
    (["train", "{csv}", "--resume", "nope.pt"], "nope.pt: no such checkpoint"),
    (["train", "{csv}", "--resume", "{junk}"], "not a training checkpoint"),
    (["train", "{csv}", "--out", "{junk}"], "is a file; give a folder"),
    (["train", "{csv}", "--out", "{junk}/run"], "cannot make this folder"),
    (["batch", "{video}", "--out", "{junk}"], "is a file; give a folder"),
    (["batch", "{video}", "--out", "{junk}/out"], "cannot make this folder"),
    (["export", "{junk}", "--out", "{tmp}"], "is a folder; give a file name"),
    (["evaluate", "{csv}", "--plot", "conf.txt"], "conf.txt: --plot writes an image"),
    (["benchmark", "--data", "/nonexistent/fer.csv"], "/nonexistent/fer.csv: no such file"),
    (["benchmark", "--repeat", "0"], "--repeat must be at least 1"),
    (["benchmark", "--repeat", "-1"], "--repeat must be at least 1"),
    (["video", "{video}", "--detect-every", "0"], "--detect-every must be at least 1"),
    (["webcam", "--detect-every", "-3"], "--detect-every must be at least 1"),
    (["image", "{tmp}"], "is a folder, not a file"),
    (["video", "{tmp}"], "is a folder, not a file"),
    (["image", "{portrait}", "--model", "{tmp}"], "is a folder, not a model file"),
    (["export", "{tmp}"], "is a folder, not a checkpoint"),
    (["train", "{csv}", "--resume", "{tmp}"], "is a folder, not a checkpoint"),
    (["train", "{csv}", "--ferplus", "{tmp}", "--epochs", "1"], "is a folder, not a file"),
    (["train", "{csv}", "--out", "{done}"], "already holds a trained run (last.pt); continue it with --resume"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, fer_rows, args, message):
    monkeypatch.chdir(tmp_path)  # a verb that makes its default output folder makes it here
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    huge = tmp_path / "huge.png"  # a valid PNG header declaring 100000x100000 grey pixels
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                     + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + zlib.compress(b"\0" * 10**6))
    portrait = (MEDIA / "portrait.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(portrait[: len(portrait) // 2])
    csv_path = write_csv(tmp_path / "s.csv", fer_rows)
    done = tmp_path / "done"  # a run folder a new run must not overwrite
    done.mkdir()
    (done / "last.pt").write_bytes(b"trained")
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    code, _, err = run(capsys, *[a.format(junk=junk, csv=csv_path, video=video, huge=huge, truncated=truncated,
                                          portrait=MEDIA / "portrait.jpg", tmp=tmp_path, done=done) for a in args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_video_refuses_an_unusable_timeline_before_the_work(capsys, tmp_path, monkeypatch):
    import moodlens.recognizer

    monkeypatch.setattr(moodlens.recognizer.Recognizer, "stream", lambda *a, **k: pytest.fail("analysed first"))
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    monkeypatch.setattr("os.access", lambda path, mode: False)  # a read-only file system, even for root
    code, _, err = run(capsys, "video", video, "--timeline", tmp_path / "t.csv")
    assert code == 2 and "cannot write there" in err and len(err.strip().splitlines()) == 1


def test_image_exits_2_when_an_annotated_copy_cannot_be_written(capsys, tmp_path):
    (tmp_path / "portrait_moodlens.png").mkdir()  # where the copy would go: cv2.imwrite fails
    code, out, err = run(capsys, "image", MEDIA / "portrait.jpg", "--out", tmp_path)
    assert code == 2 and "portrait_moodlens.png: could not be written" in err


def test_evaluate_plot_without_matplotlib_says_so_first(capsys, tmp_path, fer_rows, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr("moodlens.training.evaluate.evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    code, _, err = run(capsys, "evaluate", write_csv(tmp_path / "s.csv", fer_rows), "--plot", tmp_path / "c.png")
    assert code == 2 and "--plot needs matplotlib" in err


def test_serve_on_a_port_in_use_is_one_line(capsys, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    monkeypatch.setattr("moodlens.web.server.default_recognizer", lambda: pytest.fail("loaded first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run(capsys, "serve", "--port", taken.getsockname()[1], "--db", tmp_path / "x.db")
    assert code == 2 and "is in use" in err and len(err.strip().splitlines()) == 1


def test_serve_with_a_short_token_is_one_line(capsys, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    monkeypatch.setenv("MOODLENS_TOKEN", "secret ")
    code, _, err = run(capsys, "serve", "--port", "0", "--db", tmp_path / "x.db")
    assert code == 2 and "at least 16" in err and len(err.strip().splitlines()) == 1


def test_token_reset_prints_a_new_token(capsys, tmp_path):
    pytest.importorskip("fastapi")
    db = tmp_path / "x.db"
    code, out, _ = run(capsys, "token", "--reset", "--db", db)
    first = out.split()[-1]
    code2, out2, _ = run(capsys, "token", "--reset", "--db", db)
    assert code == code2 == 0 and len(first) >= 16 and out2.split()[-1] != first


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


def test_benchmark_after_an_install_without_photos_times_what_needs_none(capsys, monkeypatch, tmp_path):
    import moodlens.benchmark

    monkeypatch.delenv("MOODLENS_MEDIA", raising=False)
    monkeypatch.setattr(moodlens.benchmark, "shared_media_dir", lambda: tmp_path / "no-photos")
    code, out, _ = run(capsys, "benchmark", "--repeat", "2")
    assert code == 0 and "classifier:" in out and "need the shared photos" in out
    code, out, _ = run(capsys, "benchmark", "--repeat", "2", "--json")
    result = json.loads(out)
    assert code == 0 and result["photos"] is None and result["found"] == {} and result["end_to_end"] == {}
    assert set(result["detector_ms"]) == {"640x480", "1280x720", "1920x1080"}
    assert all(ms > 0 for ms in result["detector_ms"].values())


def test_tests_without_the_shared_data_stop_with_one_line(tmp_path):
    env = {**os.environ, "MOODLENS_SHARED": str(tmp_path / "nowhere")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_web_live.py"],
                       cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=120)
    said = [line for line in (r.stdout + r.stderr).splitlines() if "shared data folder" in line]
    assert r.returncode == 4 and len(said) == 1 and "error" not in (r.stdout + r.stderr).lower()
