"""moodlens batch: chunking, the local and Ray engines on generated videos, a killed Ray worker,
resuming, track joining across chunk borders, bad videos, and the import into the web database.

The videos are a few seconds of a real photo sliding sideways, analysed at 5 frames/s in 1-second
chunks, so every engine run takes seconds and a single face crosses every chunk border.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MEDIA
from moodlens.aggregate import SecondRecord, mood_drops
from moodlens.batch import Settings, run_batch
from moodlens.batch.plan import first_frame_of_second, plan_chunks, probe
from moodlens.cli import main
from moodlens.sources import VideoFile

pytest.importorskip("pyarrow")

SETTINGS = Settings(fps=5, chunk_s=1)
LENGTHS_S = (5, 6, 7)


def write_video(path: Path, frames: int, fps: float = 10, fourcc: str = "MJPG") -> Path:
    portrait = cv2.resize(cv2.imread(str(MEDIA / "portrait.jpg")), (320, 240))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (320, 240))
    for i in range(frames):
        writer.write(np.roll(portrait, 2 * i - 40, axis=1))
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("lectures")
    return [write_video(folder / f"lecture{i}.avi", seconds * 10) for i, seconds in enumerate(LENGTHS_S)]


@pytest.fixture(scope="module")
def local_run(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, run_batch([str(v) for v in videos], out, engine="local", workers=2, settings=SETTINGS, progress=False)


def timelines(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "timelines").iterdir())}


@pytest.mark.parametrize("fps, frames", [(10, 70), (29.97, 1000), (25, 24), (7.5, 100)])
def test_chunks_cover_every_frame_once_and_keep_seconds_whole(tmp_path, fps, frames):
    video = probe(str(write_video(tmp_path / "v.avi", frames, fps)))
    chunks = plan_chunks(video, Settings(fps=5, chunk_s=2))
    assert chunks[0].start == 0 and chunks[-1].end is None
    for a, b in zip(chunks, chunks[1:]):
        assert a.end == b.start  # contiguous, nothing twice
        # the border is a second's first frame, with the frame times VideoFile gives
        assert int(b.start / video.fps) == 2 * b.index and int((b.start - 1) / video.fps) == 2 * b.index - 1
    assert first_frame_of_second(0, fps) == 0


def test_chunked_decoding_gives_the_frames_of_the_whole_video(tmp_path):
    # MPEG-4 with keyframes every few frames: a chunk starting mid-group must still be exact.
    path = write_video(tmp_path / "v.mp4", 47, fps=10, fourcc="mp4v")
    video = VideoFile(path, stride=2)
    whole = list(video)
    parts = [f for start, end in ((0, 13), (13, 30), (30, None)) for f in video.frames(start, end)]
    assert [(i, t) for i, t, _ in parts] == [(i, t) for i, t, _ in whole] and len(whole) == 24
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(parts, whole))


def test_local_engine_joins_tracks_and_loads_models_once_per_worker(local_run):
    out, report = local_run
    assert [r["status"] for r in report.rows] == ["ok"] * 3 and report.chunks == sum(LENGTHS_S)
    for row, seconds in zip(report.rows, LENGTHS_S):
        assert row["faces"] == 1  # one face crossing every chunk border: one track, not one per chunk
        assert row["seconds"] == row["face_seconds"] == seconds and row["mood"]
        lines = (out / "timelines" / f"{row['key']}.csv").read_text().splitlines()
        assert lines[0].startswith("second,track_id,emotion,frames,angry")
        assert [line.split(",")[:2] for line in lines[1:]] == [[str(s), "1"] for s in range(seconds)]
        assert all(line.split(",")[3] == "5" for line in lines[1:])  # 5 frames/s analysed
    loads = [r for r in report.results if r["load_s"] > 0]
    assert len(loads) == len({r["pid"] for r in report.results}) <= 2


def test_parquet_and_summary_match_the_csv(local_run):
    import pyarrow.parquet as pq

    out, report = local_run
    key = report.rows[0]["key"]
    table = pq.read_table(out / "timelines" / f"{key}.parquet").to_pylist()
    csv_rows = list(csv.DictReader(open(out / "timelines" / f"{key}.csv")))
    assert len(table) == len(csv_rows) and table[0]["track_id"] == 1
    assert abs(table[0]["neutral"] - float(csv_rows[0]["neutral"])) < 1e-4
    # the head pose and attention state travel with the seconds
    assert table[0]["attention"] == csv_rows[0]["attention"] in ("facing", "away")
    assert table[0]["yaw"] is not None and abs(table[0]["yaw"] - float(csv_rows[0]["yaw"])) < 0.05
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert [r["video"] for r in summary] == [r["video"] for r in report.rows]
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("video,key,status,error,duration_s")


def test_rerun_skips_done_chunks_and_redoes_only_missing_ones(videos, local_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run[0], out)
    again = run_batch([str(v) for v in videos], out, workers=2, settings=SETTINGS, progress=False)
    assert again.skipped == again.chunks and again.results == []
    assert timelines(out) == timelines(local_run[0])
    lost = sorted((out / "chunks").rglob("00003.json"))[0]  # as if its worker died before it was written
    lost.unlink()
    third = run_batch([str(v) for v in videos], out, workers=1, settings=SETTINGS, progress=False)
    assert [r["chunk"] for r in third.results] == [f"{lost.parent.name}/00003"]
    assert timelines(out) == timelines(local_run[0])


def test_bad_videos_are_reported_and_do_not_stop_the_others(videos, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 20)
    code = main(["batch", str(videos[0]), str(bad), str(tmp_path / "gone.mp4"), str(tmp_path / "none*.avi"),
                 "--out", str(tmp_path / "out"), "--workers", "1", "--fps", "2", "--chunk-seconds", "3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "moodlens: error: " + str(bad) + ": not a readable video" in err
    assert "gone.mp4: no such file" in err and "none*.avi: matches no file" in err
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(summary) == 5 and summary[1].split(",")[2] == "ok"
    assert [line.split(",")[2] for line in summary[2:]] == ["error"] * 3
    assert main(["batch", str(videos[0]), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers at least 1" in capsys.readouterr().err


def test_a_cut_short_video_is_reported_with_the_length_read(tmp_path, caplog):
    whole = write_video(tmp_path / "whole.avi", 60)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 3])
    read = sum(1 for _ in VideoFile(cut).frames())
    assert VideoFile(cut).frame_count == 60 and 10 <= read <= 30
    with caplog.at_level(logging.WARNING, logger="moodlens.batch"):  # 1 s chunks: some start past the cut
        report = run_batch([str(cut)], tmp_path / "out", workers=1, settings=SETTINGS, progress=False)
    assert report.rows[0]["status"] == "ok" and report.rows[0]["duration_s"] == read / 10
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut}: the file ends after {read} of 60 frames (cut short?); analysed what was there"]


def test_batch_verb_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["batch", "--help"])
    assert exit_.value.code == 0 and "usage: moodlens batch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "batch" in capsys.readouterr().out


def test_mood_drops():
    classes = ("happy", "sad", "neutral")
    happy = [SecondRecord(s, t, "happy", {}, 5) for s in range(60) for t in (1, 2)]
    sad = [SecondRecord(s, t, "sad", {}, 5) for s in range(60, 120) for t in (1, 2)]
    assert mood_drops(happy + sad, classes) == [60]
    assert mood_drops(sad + [SecondRecord(s + 60, 1, "happy", {}, 5) for s in range(60)], classes) == []  # a rise
    mixed = [SecondRecord(s, 1, ("happy", "neutral")[s % 2], {}, 5) for s in range(120)]
    assert mood_drops(mixed, classes) == []


def test_import_into_the_web_database_as_video_sessions(videos, local_run, tmp_path):
    pytest.importorskip("sqlalchemy")
    from moodlens.store import Store, database_url

    out, db = tmp_path / "out", tmp_path / "moodlens.db"
    shutil.copytree(local_run[0], out)
    report = run_batch([str(v) for v in videos], out, settings=SETTINGS, db=str(db), progress=False)
    assert len(report.sessions) == 3
    store = Store(database_url(str(db)))
    try:
        sessions = store.list_sessions()
        assert sorted(s["title"] for s in sessions) == [v.name for v in videos]
        assert all(s["kind"] == "video" and not s["open"] and s["participants"] == 1 for s in sessions)
        assert sorted(s["seconds"] for s in sessions) == list(LENGTHS_S)
        # imported again: nothing new; a session left half-imported is replaced, not doubled
        run_batch([str(v) for v in videos], out, settings=SETTINGS, db=str(db), progress=False)
        assert len(store.list_sessions()) == 3
        ledger = json.loads((out / "imported.json").read_text())
        entry = next(iter(next(iter(ledger.values())).values()))
        entry["complete"] = False
        (out / "imported.json").write_text(json.dumps(ledger))
        run_batch([str(v) for v in videos], out, settings=SETTINGS, db=str(db), progress=False)
        assert len(store.list_sessions()) == 3 and store.get_session(entry["session"]) is None
    finally:
        store.close()


# --- Ray ---------------------------------------------------------------------------------------

def test_an_unreachable_ray_address_fails_at_once_in_one_line(videos, tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens there
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "moodlens.cli", "batch", str(videos[0]), "--out", str(tmp_path),
                           "--engine", "ray", "--address", address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"moodlens: error: cannot reach the Ray cluster at {address}: ")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_cluster_gives_the_local_engines_timelines(ray_cluster, videos, local_run, tmp_path):
    report = run_batch([str(v) for v in videos], tmp_path, engine="ray", workers=2, settings=SETTINGS, progress=False)
    assert [r["status"] for r in report.rows] == ["ok"] * 3
    assert timelines(tmp_path) == timelines(local_run[0])
    assert len({r["pid"] for r in report.results}) == 2  # two worker processes shared the chunks


def _our_ray_workers_busy() -> list[int]:
    """Ray worker processes under this test process that are running a chunk now."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::analyse_chunk"):
                continue
            parent = pid
            for _ in range(6):  # worker -> raylet -> ... -> this process
                parent = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1]
                if int(parent) == os.getpid():
                    found.append(int(pid))
                    break
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_a_killed_ray_worker_loses_and_doubles_nothing(ray_cluster, videos, local_run, tmp_path):
    killed: list[int] = []
    done = threading.Event()

    def kill_one_busy_worker():
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            busy = _our_ray_workers_busy()
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    try:
        report = run_batch([str(v) for v in videos], tmp_path, engine="ray", workers=2, settings=SETTINGS,
                           progress=False)
    finally:
        done.set()
        killer.join()
    assert len(killed) == 1  # a worker was killed while it analysed a chunk
    assert [r["status"] for r in report.rows] == ["ok"] * 3 and len(report.results) == report.chunks
    for row, seconds in zip(report.rows, LENGTHS_S):
        lines = (tmp_path / "timelines" / f"{row['key']}.csv").read_text().splitlines()[1:]
        assert [int(line.split(",")[0]) for line in lines] == list(range(seconds))  # every second exactly once
    assert timelines(tmp_path) == timelines(local_run[0])


def test_a_killed_local_worker_loses_and_doubles_nothing(videos, local_run, tmp_path):
    killed: list[int] = []
    done = threading.Event()

    def kill_one_pool_worker():
        while not done.is_set() and not killed:
            if not any((tmp_path / "chunks").rglob("*.json")):  # once the workers are up and analysing
                time.sleep(0.01)
                continue
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[1]) == os.getpid() and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(int(pid))
                        break
                except (OSError, IndexError, ValueError):
                    continue
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_pool_worker)
    killer.start()
    try:
        report = run_batch([str(v) for v in videos], tmp_path, workers=2, settings=SETTINGS, progress=False)
    finally:
        done.set()
        killer.join()
    assert len(killed) == 1 and len(report.results) == report.chunks
    assert len({r["pid"] for r in report.results}) > 2  # a new pool took over from the broken one
    assert [r["status"] for r in report.rows] == ["ok"] * 3
    assert timelines(tmp_path) == timelines(local_run[0])
