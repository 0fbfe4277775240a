"""The driver of a batch run: plan, skip what is done, run the rest on an engine, merge, write,
and optionally import the videos into the web app's database.

Output folder::

    chunks/<settings tag>/<video key>/<chunk>.json   one per finished chunk (the resume state)
    timelines/<video key>.csv, .parquet              per-second timeline of each video
    summary.csv, summary.parquet                     one row per video, failed ones included
    imported.json                                    which videos went into which database
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from moodlens.batch.engines import create_engine
from moodlens.batch.merge import merge_chunks, summary_row, write_summary, write_timeline
from moodlens.batch.plan import Chunk, Settings, Video, find_videos, plan_chunks
from moodlens.errors import MoodLensError
from moodlens.sources import cut_short

log = logging.getLogger("moodlens.batch")


@dataclass
class BatchReport:
    """What a run did. ``rows`` is the summary table; ``results`` the chunks analysed in this run
    (when each came back, its timings and worker's process id); ``sessions`` maps video keys to
    imported session ids."""

    rows: list[dict]
    chunks: int
    skipped: int
    wall_s: float
    run_s: float = 0.0
    engine_start_s: float = 0.0
    workers: int = 0
    results: list[dict] = field(default_factory=list)
    sessions: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]


def _write_atomic(path: Path, text: str) -> None:
    """Whole or not at all: a run killed while writing leaves no half file to be taken as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _classes(settings: Settings) -> tuple[str, ...]:
    """The model's classes; checks the model and detector before any worker starts."""
    from moodlens.classify import EmotionModel
    from moodlens.detect import DetectorError, list_detectors

    if settings.detector and settings.detector not in list_detectors():
        raise DetectorError(f"unknown detector {settings.detector!r}; choose one of: {', '.join(list_detectors())}")
    return EmotionModel(settings.model, threads=1).classes


def run_batch(patterns: list[str], out: str | Path, engine: str = "local", workers: int | None = None,
              address: str | None = None, settings: Settings | None = None, db: str | None = None,
              progress: bool = True) -> BatchReport:
    """Analyse videos in chunks on an engine and write timelines and the summary into ``out``.

    Chunks finished by an earlier run with the same settings are not analysed again; a video
    whose chunks cannot all be analysed gets an error row and no timeline.

    Args:
        patterns: video files, folders, or glob patterns (``lectures/**/*.mp4``).
        engine: ``"local"`` (a process pool) or ``"ray"``.
        workers: processes (local) or chunks in flight (ray); default: one per CPU.
        address: a Ray cluster's address (None: start a local one).
        db: also import the analysed videos into this database as video sessions.
        progress: show a progress bar on stderr.

    >>> report = run_batch(["lectures/*.mp4"], "results", settings=Settings(fps=2))   # doctest: +SKIP
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MoodLensError("moodlens batch writes Parquet and needs the `distributed` extra: "
                            "pip install 'moodlens[distributed]'") from None
    settings = settings or Settings()
    if settings.fps <= 0 or settings.chunk_s < 1 or settings.detect_every < 1 or (workers is not None and workers < 1):
        raise MoodLensError("--fps must be above 0; --chunk-seconds, --detect-every and --workers at least 1")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = _classes(settings)
    videos = find_videos(patterns)
    if not videos:
        raise MoodLensError("no videos given")
    chunk_dir = out / "chunks" / settings.tag()
    plans = {v.key: plan_chunks(v, settings) for v in videos if not v.error}

    def chunk_file(c: Chunk) -> Path:
        return chunk_dir / f"{c.name}.json"

    todo = [c for chunks in plans.values() for c in chunks if not chunk_file(c).is_file()]
    report = BatchReport([], sum(map(len, plans.values())), 0, 0.0)
    report.skipped = report.chunks - len(todo)
    errors: dict[str, str] = {}
    if todo:
        t0 = time.perf_counter()
        runner = create_engine(engine, workers, address)
        report.engine_start_s, report.workers = time.perf_counter() - t0, runner.workers
        t0 = time.perf_counter()
        try:
            for chunk, result in _progress(runner.run(todo, settings), todo, videos, progress):
                if "error" in result:
                    errors.setdefault(chunk.key, result["error"])
                else:
                    _write_atomic(chunk_file(chunk), json.dumps(result))
                report.results.append({"chunk": chunk.name, "done_s": time.perf_counter() - t0,
                                       **{k: v for k, v in result.items() if k not in ("records", "tracks")}})
        finally:
            runner.close()
        report.run_s = time.perf_counter() - t0

    merged = _merge(videos, plans, chunk_file, errors, classes, out, report.rows)
    write_summary(out, report.rows)
    if db:
        report.sessions = import_sessions([v for v in videos if v.key in merged], merged, classes, db, out)
    report.wall_s = time.perf_counter() - started
    return report


def _merge(videos: list[Video], plans: dict[str, list[Chunk]], chunk_file, errors: dict[str, str],
           classes: tuple[str, ...], out: Path, rows: list[dict]) -> dict[str, list]:
    """Write the timeline of each video whose chunks are all done and append its summary row (an
    error row for the others); returns the merged records by video key. A video whose file ran out
    of frames well before its header's count is warned about once and, in ``videos`` too, given
    the length that was read."""
    merged: dict[str, list] = {}
    for i, video in enumerate(videos):
        if video.error:
            rows.append(summary_row(video, classes, error=video.error))
            continue
        chunks = plans[video.key]
        missing = [c for c in chunks if not chunk_file(c).is_file()]
        if missing:
            why = errors.get(video.key, "not analysed")
            rows.append(summary_row(video, classes, error=f"{len(missing)} of {len(chunks)} chunks failed: {why}"))
            continue
        results = [json.loads(chunk_file(c).read_text()) for c in chunks]
        # Chunks past the end of a cut-short file each end at their start: the earliest end is the file's.
        ended_at = min((r["ended_at"] for r in results if r.get("ended_at") is not None), default=None)
        warning = cut_short(video.path, ended_at, video.frame_count)
        if warning:
            log.warning(warning)
            videos[i] = video = replace(video, frame_count=ended_at)
        records, faces = merge_chunks(chunks, results, video.fps)
        write_timeline(out / "timelines", video.key, records, classes)
        rows.append(summary_row(video, classes, records, faces))
        merged[video.key] = records
    return merged


def _progress(results, todo: list[Chunk], videos: list[Video], show: bool):
    """Pass results through, with a bar: chunks done, videos per hour and the time left."""
    from tqdm import tqdm

    by_key = {v.key: v for v in videos}
    total_s = sum(v.duration for v in videos if not v.error)
    mean_video_s = total_s / max(1, sum(1 for v in videos if not v.error))
    done_s, t0 = 0.0, time.perf_counter()
    with tqdm(total=len(todo), unit="chunk", disable=not show, desc="batch") as bar:
        for chunk, result in results:
            video = by_key[chunk.key]
            end = video.frame_count if chunk.end is None else chunk.end
            done_s += max(0, end - chunk.start) / video.fps
            hours = (time.perf_counter() - t0) / 3600
            if hours > 0 and mean_video_s > 0:
                bar.set_postfix_str(f"{done_s / mean_video_s / hours:.1f} videos/h, {done_s / 3600 / hours:.1f}x real time")
            bar.update()
            yield chunk, result


def import_sessions(videos: list[Video], records: dict[str, list], classes: tuple[str, ...], db: str,
                    out: Path) -> dict[str, int]:
    """Store each video as a session of kind ``"video"`` (a participant per face), as an uploaded
    video is stored, so the web app's review and report pages show it. A video already imported
    into this database is not imported again; a session left half-imported is replaced."""
    try:
        from moodlens.store import Store, database_url
        from moodlens.web.uploads import store_video_seconds
    except ImportError as e:
        raise MoodLensError(f"--db needs the `web` extra: pip install 'moodlens[web]' ({e.name} missing)") from None
    url = database_url(db)
    ledger_path = out / "imported.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    done = ledger.setdefault(hashlib.sha1(url.encode()).hexdigest()[:12], {})  # no password in the file
    store = Store(url)
    try:
        for video in videos:
            entry = done.get(video.key)
            if entry and store.get_session(entry["session"]) is not None:
                if entry["complete"]:
                    continue
                store.delete_session(entry["session"])
            started = Path(video.path).stat().st_mtime - video.duration  # the file was written when the lecture ended
            session = store.create_session(Path(video.path).name, classes, kind="video", started_at=started)
            done[video.key] = {"session": session.id, "complete": False}
            _write_atomic(ledger_path, json.dumps(ledger, indent=1))
            store_video_seconds(store, session.id, records[video.key], {})
            store.end_session(session.id, started + video.duration)
            done[video.key]["complete"] = True
            _write_atomic(ledger_path, json.dumps(ledger, indent=1))
    finally:
        store.close()
    return {key: entry["session"] for key, entry in done.items() if key in records}
