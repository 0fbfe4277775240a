"""What a batch run does: the videos a user named, and each video cut into time chunks.

A chunk covers whole seconds of its video, so every per-second record comes from exactly one
chunk and merged timelines never hold a second twice.
"""

from __future__ import annotations

import glob
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from moodlens.sources import SourceError, VideoFile

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class Settings:
    """How every chunk is analysed. Changing any of these starts the analysis afresh (the chunk
    folder is named by :meth:`tag`).

    Attributes:
        fps: frames analysed per second of video (the others are skipped, not decoded to colour).
        chunk_s: seconds of video per chunk.
        detect_every: run the detector on every n-th analysed frame, optical flow between.
        model, detector: the emotion model file (None: the shipped one) and detector backend.
    """

    fps: float = 5.0
    chunk_s: int = 60
    detect_every: int = 2
    model: str | None = None
    detector: str | None = None

    def tag(self) -> str:
        model = Path(self.model) if self.model else None
        # A retrained model file at the same path must not reuse the old model's chunks.
        stamp = f"{model.resolve()}:{model.stat().st_mtime_ns}" if model and model.is_file() else str(self.model)
        text = f"{self.fps}|{self.chunk_s}|{self.detect_every}|{stamp}|{self.detector}"
        return f"fps{self.fps:g}-c{self.chunk_s}-" + hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Video:
    """A video to analyse; ``error`` is set (and the rest is empty) when it cannot be read."""

    path: str
    key: str = ""
    fps: float = 0.0
    frame_count: int = 0
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Chunk:
    """Frames ``start``..``end`` (exclusive; None: to the end of the file) of a video, of which
    every ``stride``-th frame of the whole video is analysed."""

    path: str
    key: str
    index: int
    start: int
    end: int | None
    stride: int

    @property
    def name(self) -> str:
        return f"{self.key}/{self.index:05d}"


def find_videos(patterns: list[str]) -> list[Video]:
    """The videos named by paths, folders (their video files) and glob patterns, each once, in
    the order given. A name that matches nothing is returned as a :class:`Video` with an error."""
    paths: list[str] = []
    missing: list[Video] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                missing.append(Video(pattern, error=f"{pattern}: matches no file"))
            paths += found
        elif Path(pattern).is_dir():
            found = sorted(str(p) for p in Path(pattern).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                missing.append(Video(pattern, error=f"{pattern}: no video files in this folder"))
            paths += found
        else:
            paths.append(pattern)
    seen: set[Path] = set()
    videos = []
    for p in paths:
        resolved = Path(p).resolve()
        if resolved not in seen:
            seen.add(resolved)
            videos.append(probe(p))
    return videos + missing


def probe(path: str) -> Video:
    """Frame rate and length of a video, and its key: the file's name with a hash of its full
    path, size and modification time, so a replaced file is analysed again."""
    try:
        video = VideoFile(path)
    except SourceError as exc:
        return Video(path, error=str(exc))
    st = Path(path).stat()
    digest = hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return Video(path, f"{Path(path).stem}-{digest}", video.fps, video.frame_count)


def first_frame_of_second(second: int, fps: float) -> int:
    """The first frame whose time (``frame / fps``, as in :class:`~moodlens.sources.VideoFile`)
    falls in ``second``; computed in the same floating point as those times."""
    frame = max(0, math.ceil(second * fps))
    while frame > 0 and int((frame - 1) / fps) >= second:
        frame -= 1
    while int(frame / fps) < second:
        frame += 1
    return frame


def plan_chunks(video: Video, settings: Settings) -> list[Chunk]:
    """The chunks of a video; the last one reads to the end of the file, however many frames
    the container claims to hold (an unknown count gives a single chunk)."""
    stride = max(1, round(video.fps / settings.fps))
    seconds = math.ceil(video.duration)
    count = max(1, math.ceil(seconds / settings.chunk_s))
    chunks = []
    for i in range(count):
        start = first_frame_of_second(i * settings.chunk_s, video.fps)
        end = None if i == count - 1 else first_frame_of_second((i + 1) * settings.chunk_s, video.fps)
        chunks.append(Chunk(video.path, video.key, i, start, end, stride))
    return chunks
