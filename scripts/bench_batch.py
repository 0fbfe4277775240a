"""Throughput of `moodlens batch`: video-hours analysed per wall-clock hour, per engine and worker
count, and the overhead each chunk adds beyond its analysis.

Generates lecture-like recordings (a 3x3 meeting gallery of the shared photos, 1280x720, 25 frames/s,
swaying slowly so tracking has work), then runs each engine at each worker count on a fresh output
folder. Figures:

- ``video_h_per_h``: video seconds analysed / wall seconds of the run (engine start excluded; it is
  given apart as ``start_s``: Ray's start, or nothing for the pool, whose workers start with the run).
- ``per_worker``: the same divided by the workers.
- ``video_h_per_cpu_h``: video seconds / CPU seconds the workers spent on their chunks: what one
  dedicated core would do, much less sensitive to other jobs on the machine than wall time.
- ``chunk_overhead_ms``: (workers x run wall time - time the workers spent analysing or loading
  models) / chunks: scheduling, moving chunks and results, the driver writing them, worker start,
  and workers idle at the end while the last chunks finish (few chunks per worker make this large;
  ``--fps 1 --chunk-seconds 1 --workers 1`` isolates the per-chunk cost).
- ``steady_overhead_ms``: with one worker, the same from the first result on (worker start and
  model load excluded).

    python scripts/bench_batch.py                     # 4 videos x 60 s, fps 5, 15 s chunks, 1 and 2 workers
    python scripts/bench_batch.py --json bench.json --videos 8 --seconds 120
    python scripts/bench_batch.py --videos 2 --seconds 20 --fps 1 --chunk-seconds 1 --workers 1   # overhead
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from moodlens.batch import Settings, run_batch
from moodlens.gallery import make_gallery, shared_participants
from moodlens.sources import VideoFile


def make_videos(folder: Path, count: int, seconds: int, fps: int = 25) -> list[Path]:
    gallery, _ = make_gallery(shared_participants(), 3, 3, size=(1280, 720))
    first = folder / "lecture0.mp4"
    writer = cv2.VideoWriter(str(first), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    for i in range(seconds * fps):
        writer.write(np.roll(gallery, round(12 * math.sin(i / 20)), axis=1))
    writer.release()
    paths = [first]
    for k in range(1, count):  # copies: separate files, so separate videos to the batch
        paths.append(folder / f"lecture{k}.mp4")
        shutil.copyfile(first, paths[-1])
    return paths


def measure(videos: list[Path], engine: str, workers: int, settings: Settings) -> dict:
    with tempfile.TemporaryDirectory() as out:
        report = run_batch([str(v) for v in videos], out, engine=engine, workers=workers, settings=settings,
                           progress=False)
    assert not report.failed, report.failed
    video_s = sum(r["duration_s"] for r in report.rows)
    busy = sum(r["analysis_s"] for r in report.results)
    loads = sum(r["load_s"] for r in report.results)
    first = min(report.results, key=lambda r: r["done_s"])
    return {"engine": engine, "workers": workers, "chunks": report.chunks, "video_s": video_s,
            "start_s": round(report.engine_start_s, 2), "run_s": round(report.run_s, 2),
            "video_h_per_h": round(video_s / report.run_s, 1),
            "per_worker": round(video_s / report.run_s / workers, 1),
            "video_h_per_cpu_h": round(video_s / sum(r["cpu_s"] for r in report.results), 2),
            "analysis_ms_per_chunk": round(1e3 * busy / report.chunks, 1),
            "chunk_overhead_ms": round(1e3 * (workers * report.run_s - busy - loads) / report.chunks, 1),
            "steady_overhead_ms": round(1e3 * (workers * (report.run_s - first["done_s"]) - busy + first["analysis_s"])
                                        / (report.chunks - 1), 1) if report.chunks > 1 and workers == 1 else None,
            "model_loads": sum(r["load_s"] > 0 for r in report.results), "load_s": round(loads, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=60, help="length of each video")
    ap.add_argument("--fps", type=float, default=5.0, help="analysis rate")
    ap.add_argument("--chunk-seconds", type=int, default=15)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    settings = Settings(fps=args.fps, chunk_s=args.chunk_seconds)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        videos = make_videos(Path(folder), args.videos, args.seconds)
        source = VideoFile(videos[0], stride=max(1, round(25 / args.fps)))
        cpu0 = time.process_time()
        sum(1 for _ in source)  # what decoding alone costs, to compare with the analysis
        decode_cpu_per_video_s = (time.process_time() - cpu0) / args.seconds
        for engine in args.engines.split(","):
            for workers in map(int, args.workers.split(",")):
                rows.append(measure(videos, engine, workers, settings))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| engine | workers | video-h per wall-h | per worker | video-h per CPU-h | analysis ms/chunk "
          "| overhead ms/chunk | steady overhead ms/chunk | start s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['engine']} | {r['workers']} | {r['video_h_per_h']} | {r['per_worker']} | {r['video_h_per_cpu_h']} | "
              f"{r['analysis_ms_per_chunk']} | {r['chunk_overhead_ms']} | {r['steady_overhead_ms']} | {r['start_s']} |")
    analysis_cpu_per_video_s = 1 / rows[0]["video_h_per_cpu_h"]
    print(f"\ndecoding alone: {decode_cpu_per_video_s * 1e3:.0f} CPU-ms per video second, "
          f"{100 * decode_cpu_per_video_s / analysis_cpu_per_video_s:.0f} % of the analysis ({rows[0]['engine']}, "
          f"{rows[0]['workers']} worker)")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": rows,
                                               "decode_cpu_per_video_s": decode_cpu_per_video_s}, indent=1))


if __name__ == "__main__":
    main()
