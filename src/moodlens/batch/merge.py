"""Chunk results into one per-second timeline per video, with tracks joined across chunk
borders, and one summary row per video; written as CSV and Parquet."""

from __future__ import annotations

import csv
from pathlib import Path

from moodlens.aggregate import SecondRecord, mood, mood_drops, write_records
from moodlens.batch.plan import Chunk, Video
from moodlens.track import match_iou

# As the tracker's defaults: a face unseen for longer than this, or moved so far that its boxes
# overlap less than this, is another face.
JOIN_GAP_S = 1.0
JOIN_IOU = 0.3


def merge_chunks(chunks: list[Chunk], results: list[dict], fps: float) -> tuple[list[SecondRecord], int]:
    """The records of a video's chunks (in order) with video-wide track ids, and how many tracks.

    A track that ends at most ``JOIN_GAP_S`` before a chunk border is joined to the track of the
    next chunk that starts at most ``JOIN_GAP_S`` after it and overlaps it best (IoU of its last
    and the other's first box, at least ``JOIN_IOU``). Ids are numbered by first appearance.
    """
    records: list[SecondRecord] = []
    count = 0
    previous: list[list] = []  # the previous chunk's tracks: [local id, first t, first box, last t, last box]
    previous_ids: dict[int, int] = {}
    for chunk, result in zip(chunks, results):
        border = chunk.start / fps
        ids: dict[int, int] = {}
        ending = [t for t in previous if border - t[3] <= JOIN_GAP_S]
        starting = [t for t in result["tracks"] if t[1] - border <= JOIN_GAP_S]
        for i, j in match_iou([t[4] for t in ending], [t[2] for t in starting], JOIN_IOU).items():
            ids[starting[j][0]] = previous_ids[ending[i][0]]
        for track in sorted(result["tracks"]):  # local ids count up in order of appearance
            if track[0] not in ids:
                count += 1
                ids[track[0]] = count
        records += [SecondRecord(**{**r, "track_id": ids[r["track_id"]]}) for r in result["records"]]
        previous, previous_ids = result["tracks"], ids
    records.sort(key=lambda r: (r.second, r.track_id))
    return records, count


def clock(second: int) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    h, rest = divmod(int(second), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def summary_row(video: Video, classes: tuple[str, ...], records: list[SecondRecord] | None = None, faces: int = 0,
                error: str | None = None) -> dict:
    """One video's line of the summary: length, faces, the class's mood (share of each emotion
    among judged face-seconds, and the most frequent), and the moments the mood dropped."""
    records = records or []
    shares = mood(records, classes)
    return {"video": video.path, "key": video.key, "status": "error" if error else "ok", "error": error or "",
            "duration_s": round(video.duration, 2), "seconds": len({r.second for r in records}), "faces": faces,
            "face_seconds": len(records), "mood": max(shares, key=shares.get) if any(shares.values()) else "",
            **{c: round(shares[c], 4) for c in classes},
            "mood_drops": " ".join(clock(s) for s in mood_drops(records, classes))}


def write_timeline(folder: Path, key: str, records: list[SecondRecord], classes: tuple[str, ...]) -> None:
    """``KEY.csv`` (as ``moodlens video --timeline`` writes) and ``KEY.parquet`` (emotion null
    when no face could be judged, pose null when there was none, scores unrounded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    write_records(folder / f"{key}.csv", records, classes)
    schema = pa.schema([("second", pa.int32()), ("track_id", pa.int32()), ("emotion", pa.string()),
                        ("frames", pa.int32()), *((c, pa.float64()) for c in classes), ("attention", pa.string()),
                        *((k, pa.float64()) for k in ("yaw", "pitch", "roll"))])
    rows = [{"second": r.second, "track_id": r.track_id, "emotion": r.emotion, "frames": r.frames,
             **{c: r.scores.get(c) for c in classes}, "attention": r.attention, **r.pose()} for r in records]
    pq.write_table(pa.Table.from_pylist(rows, schema), folder / f"{key}.parquet")


def write_summary(out: Path, rows: list[dict]) -> None:
    """``summary.csv`` and ``summary.parquet`` in ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), out / "summary.parquet")
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
