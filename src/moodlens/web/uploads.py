"""What the web app accepts from outside: size and type limits, image checks before decoding,
and uploaded videos analysed in the background with progress.

A file's type is read from its first bytes, never from its name or the browser's content type,
and an image's pixel count from its header, before anything is decoded (a small PNG can
otherwise unpack to gigabytes).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from moodlens.aggregate import Timeline
from moodlens.recognizer import Recognizer
from moodlens.sources import IMAGE_TYPES, SourceError, VideoFile, decode_image, image_header
from moodlens.store import Store

log = logging.getLogger("moodlens.web")


@dataclass(frozen=True)
class Limits:
    """Upload limits of one app.

    Attributes:
        image_bytes, video_bytes: largest accepted upload.
        image_pixels: largest uploaded image (width x height) decoded.
        frame_bytes, frame_pixels: largest live frame (one WebSocket message), in bytes and in
            pixels (a shared 1920x1080 gallery fits; a small JPEG declaring 6000x6000 does not).
        video_fps: frames analysed per second of an uploaded video (the rest are skipped).
        video_seconds: longest video accepted.
        video_jobs: videos waiting or running at once.
        participants: most participants in one class session (students and gallery tiles).
        join_failures: wrong join codes an address may send in a minute.
    """

    image_bytes: int = 10 * 2**20
    image_pixels: int = 40_000_000
    frame_bytes: int = 2 * 2**20
    frame_pixels: int = 1920 * 1088
    video_bytes: int = 300 * 2**20
    video_fps: float = 5.0
    video_seconds: float = 3 * 3600
    video_jobs: int = 4
    participants: int = 200
    join_failures: int = 20


class UploadError(Exception):
    """Input the app refuses; ``status`` is the HTTP status to answer with (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(type, width, height)`` of a JPEG, PNG, WebP or BMP from its header.

    Raises:
        UploadError: 415 for another type, 400 for a header that cannot be read.
    """
    try:
        header = image_header(data)
    except ValueError:
        raise UploadError(400, "not a readable image: its header is damaged") from None
    if header is None:
        raise UploadError(415, f"unsupported file type; send an image ({', '.join(IMAGE_TYPES)})")
    return header


def read_upload_image(data: bytes, limits: Limits, max_bytes: int | None = None,
                      max_pixels: int | None = None) -> np.ndarray:
    """A BGR image from uploaded bytes, after checking size, type and pixel count (default:
    the limits of an uploaded image).

    Raises:
        UploadError: 413 too large, 415 not an image type we read, 400 damaged or empty.
    """
    max_bytes = limits.image_bytes if max_bytes is None else max_bytes
    max_pixels = limits.image_pixels if max_pixels is None else max_pixels
    if not data:
        raise UploadError(400, "empty upload")
    if len(data) > max_bytes:
        raise UploadError(413, f"image larger than {max_bytes // 2**20} MB")
    _, width, height = image_size(data)
    if width * height > max_pixels:
        raise UploadError(413, f"image of {width}x{height} pixels is larger than {max_pixels:,} pixels")
    if width == 0 or height == 0:
        raise UploadError(400, "image has no pixels")
    try:
        return decode_image(data)
    except SourceError:
        raise UploadError(400, "not a readable image") from None


def video_type(head: bytes) -> str:
    """The container of a video from its first bytes: mp4 (also mov), webm/mkv or avi.

    Raises:
        UploadError: 415 for anything else.
    """
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "avi"
    raise UploadError(415, "unsupported file type; send a video (mp4, mov, webm, mkv or avi)")


@dataclass
class VideoJob:
    """One uploaded video being analysed: progress 0-1, then per-frame faces and a stored session."""

    id: str
    name: str
    status: str = "queued"  # queued, running, done, error
    progress: float = 0.0
    error: str | None = None
    session_id: int | None = None
    fps: float = 0.0
    duration: float = 0.0
    frames: list[dict] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    path: Path | None = field(default=None, repr=False)  # the uploaded file, deleted once the job ends
    future: Future | None = field(default=None, repr=False)

    def to_dict(self, frames: bool = False) -> dict:
        out = {"id": self.id, "name": self.name, "status": self.status, "progress": round(self.progress, 3),
               "error": self.error, "session_id": self.session_id, "fps": self.fps,
               "duration": round(self.duration, 3)}
        if frames:
            out["frames"] = self.frames
        return out


class VideoJobs:
    """Uploaded videos, analysed one at a time on ``executor``.

    Each video becomes a stored session of kind ``"video"`` with a participant per tracked face
    and its per-second records; the per-frame faces are kept in memory for an hour so the page
    can draw them over the video it plays locally. The video file is deleted when done.
    """

    KEEP_S = 3600

    def __init__(self, recognizer: Recognizer, store: Store, executor: Executor, limits: Limits):
        self.recognizer, self.store, self.executor, self.limits = recognizer, store, executor, limits
        self.jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def check_capacity(self) -> None:
        with self._lock:
            now = time.time()
            for key in [k for k, j in self.jobs.items() if now - j.created > self.KEEP_S]:
                del self.jobs[key]
            busy = sum(j.status in ("queued", "running") for j in self.jobs.values())
        if busy >= self.limits.video_jobs:
            raise UploadError(429, f"{busy} videos are already waiting; try again when one is done")

    def submit(self, path: Path, name: str) -> VideoJob:
        """Analyse the video at ``path`` (which the job deletes when done)."""
        try:
            video = VideoFile(path, stride=1)
        except SourceError:
            path.unlink(missing_ok=True)
            raise UploadError(400, "not a readable video") from None
        duration = video.frame_count / video.fps if video.frame_count else 0.0
        if duration > self.limits.video_seconds:
            path.unlink(missing_ok=True)
            raise UploadError(413, f"video longer than {self.limits.video_seconds / 60:.0f} minutes")
        video.stride = max(1, round(video.fps / self.limits.video_fps))
        job = VideoJob(uuid.uuid4().hex[:12], name, fps=video.fps / video.stride, duration=duration, path=path)
        with self._lock:
            self.jobs[job.id] = job
            job.future = self.executor.submit(self._run, job, video, path)
        return job

    def get(self, job_id: str) -> VideoJob | None:
        return self.jobs.get(job_id)

    def close(self) -> None:
        """Stop: the running job ends at its next frame; queued jobs never start, and their
        uploads are deleted here (their ``_run``, which would delete them, never runs)."""
        self._stop.set()
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            if job.future is not None and job.future.cancel():
                job.status, job.error = "error", "the server stopped before the video was analysed"
                if job.path is not None:
                    job.path.unlink(missing_ok=True)

    def _run(self, job: VideoJob, video: VideoFile, path: Path) -> None:
        job.status = "running"
        r = self.recognizer
        try:
            if self._stop.is_set():
                raise RuntimeError("the server stopped before the video was analysed")
            session = self.store.create_session(job.name, r.classes, kind="video")
            job.session_id = session.id
            timeline = Timeline(r.classes)
            people: dict[int, int] = {}  # tracker id -> participant id
            total = max(video.frame_count, 1)
            for frame in r.stream(video, detect_every=2):
                if self._stop.is_set():
                    raise RuntimeError("the server stopped before the video was done")
                job.frames.append({"t": round(frame.time, 3), "faces": [_small(f) for f in frame.faces]})
                self._store(session.id, timeline.add(frame), people)
                job.progress = min(frame.index / total, 0.999)
            self._store(session.id, timeline.flush(), people)
            job.duration = max(job.duration, job.frames[-1]["t"] if job.frames else 0.0)
            self.store.end_session(session.id, session.started_at + job.duration)
            job.progress, job.status = 1.0, "done"
        except Exception as exc:  # a broken file must end the job, never the server
            log.warning("video %s failed: %s", job.name, exc)
            job.status, job.error = "error", str(exc) or type(exc).__name__
            if job.session_id is not None:  # keep what was analysed, as an ended session
                try:
                    self.store.end_session(job.session_id)
                except Exception:  # the session was deleted meanwhile
                    pass
        finally:
            path.unlink(missing_ok=True)

    def _store(self, session_id: int, records: list, people: dict[int, int]) -> None:
        store_video_seconds(self.store, session_id, records, people)


def store_video_seconds(store: Store, session_id: int, records: list, people: dict[int, int]) -> None:
    """Store a video's per-second records: each new track id becomes a participant "Face #N"
    (``people`` maps track ids to participant ids across calls). Also used by ``moodlens batch``."""
    if not records:
        return
    for r in records:
        if r.track_id not in people:
            people[r.track_id] = store.add_participant(session_id, f"Face #{r.track_id}", "video").id
        r.track_id = people[r.track_id]
    store.add_seconds(session_id, records)


def _small(face) -> dict:
    """What the upload page draws for a face: no landmarks, scores rounded."""
    return {"box": [int(v) for v in face.box], "emotion": face.emotion, "status": face.status,
            "track_id": face.track_id, "scores": {k: round(float(v), 3) for k, v in face.scores.items()}}


def analyze_image(recognizer: Recognizer, data: bytes, limits: Limits) -> dict:
    """``/api/analyze``'s answer for an uploaded image: its faces, its shape and the stages'
    milliseconds. Decoding up to 40 MP is slow too, so this runs on a worker thread. A photo is
    read once, so each face is averaged with its mirror image: about a millisecond more a face
    for half a point of accuracy (the live paths stay single pass)."""
    frame = recognizer.analyze_frame(read_upload_image(data, limits), tta=True)
    return {"faces": [f.to_dict() for f in frame.faces], "shape": list(frame.shape),
            "timings": {k: round(v, 1) for k, v in frame.timings.items()}}


async def upload_error(_request: Request, exc: UploadError) -> JSONResponse:
    """The app's handler for :class:`UploadError`: ``{"error": ...}`` with its status."""
    return JSONResponse({"error": exc.message}, exc.status)
