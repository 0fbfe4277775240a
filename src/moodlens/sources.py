"""Where frames come from (image files, video files, cameras) and where annotated video goes.

A live camera is read by a background thread that keeps only the newest frame, so a slow
consumer processes the present instead of falling further and further behind.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from moodlens.errors import MoodLensError, existing_file

log = logging.getLogger("moodlens.sources")

# MoodLens says in one line when it cannot read or write a file; OpenCV's and FFmpeg's own log lines
# about the same failure (FFmpeg's also about each damaged frame it skips) would come first and read
# like a crash. A level set in the environment is kept, for debugging a codec.
if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when OpenCV first opens a video


class SourceError(MoodLensError):
    """A missing, unreadable or unsupported image, video or camera."""


IMAGE_TYPES = ("jpeg", "png", "webp", "bmp")
# Some containers' frame counts are estimates (from the bit rate, or a variable frame rate): only
# a video that runs out before this share of its announced frames is taken as cut short.
CUT_SHORT = 0.9
# The most pixels an image file may declare (a 16k x 16k photo). Read from the header before
# decoding: a small PNG can declare 100000x100000 pixels and unpack to gigabytes.
MAX_PIXELS = 2**28


def image_header(data: bytes) -> tuple[str, int, int] | None:
    """``(type, width, height)`` of a JPEG, PNG, WebP or BMP from its first bytes; None for
    another type.

    Raises:
        ValueError: a header that cannot be read.
    """
    head = data[:32]
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            width, height = struct.unpack(">II", data[16:24])
            return "png", width, height
        if head.startswith(b"\xff\xd8"):
            return ("jpeg", *_jpeg_size(data))
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return ("webp", *_webp_size(data))
        if head.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return "bmp", abs(width), abs(height)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"damaged image header ({exc})") from None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ValueError("bad JPEG marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise ValueError("no JPEG frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError("unknown WebP chunk")


def read_image(image: str | Path | np.ndarray) -> np.ndarray:
    """A BGR uint8 image from a path or an array (grey and BGRA arrays are converted)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
            raise SourceError(f"expected a uint8 image array, got {image.dtype} with shape {image.shape}")
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image
    path = Path(image)
    existing_file(path, SourceError)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        header = image_header(data)
    except ValueError:
        raise SourceError(f"{path}: not a readable image (its header is damaged)") from None
    if header is not None and header[1] * header[2] > MAX_PIXELS:
        raise SourceError(f"{path}: {header[1]}x{header[2]} pixels is more than this reads "
                          f"({MAX_PIXELS:,} pixels at most)")
    return decode_image(data, str(path))  # decoded like an upload: a cut-short file is refused, not half-read


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """A BGR image from encoded bytes (an upload)."""
    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:  # OpenCV's own size limit, for types whose header is not read above
        frame = None
    if frame is None:
        raise SourceError(f"{name}: not a readable image")
    return frame


def cut_short(path: str | Path, ended_at: int | None, frame_count: int) -> str | None:
    """A one-line warning when a video ran out of frames at ``ended_at``, well before the
    ``frame_count`` its header announces; None when it did not (or announces no count)."""
    if ended_at is None or frame_count <= 0 or ended_at >= CUT_SHORT * frame_count:
        return None
    return f"{path}: the file ends after {ended_at} of {frame_count} frames (cut short?); analysed what was there"


class VideoFile:
    """Frames of a video file as (index, seconds, BGR frame), every ``stride``-th frame.

    ``ended_at`` is the frame number at which the last read ran out of frames before the end of
    its range (None when it did not); iterating the whole file warns when that is well before the
    announced ``frame_count`` (:func:`cut_short`): a partial recording is still worth analysing.
    """

    # FFmpeg only: frames() relies on its seeking, and where it fails to open a file OpenCV would fall
    # back to its own AVI reader, which prints its complaints with a plain fprintf whatever the log level.
    BACKEND = cv2.CAP_FFMPEG

    def __init__(self, path: str | Path, stride: int = 1):
        self.path = Path(path)
        existing_file(self.path, SourceError)
        probe = cv2.VideoCapture(str(self.path), self.BACKEND)
        try:
            if not (probe.isOpened() and probe.grab()):
                raise SourceError(f"{self.path}: not a readable video")
            fps = probe.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and 0 < fps < 1000 else 25.0
            self.frame_count = max(int(probe.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            self.width = int(probe.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(probe.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            probe.release()
        self.stride = max(1, stride)
        self.ended_at: int | None = None

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        yield from self.frames()
        warning = cut_short(self.path, self.ended_at, self.frame_count)
        if warning:
            log.warning(warning)

    def frames(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """Like iterating, from frame ``start`` up to (not including) ``end``; frame numbers and
        times stay those of the whole video, and the stride counts from frame 0, so the frames of
        consecutive ranges are exactly the frames of the whole video."""
        cap = cv2.VideoCapture(str(self.path), self.BACKEND)
        index = 0
        self.ended_at = None
        if start > 0:
            # FFmpeg seeks to the keyframe before and decodes up to the frame asked for.
            if not cap.set(cv2.CAP_PROP_POS_FRAMES, start):
                cap.release()
                raise SourceError(f"{self.path}: cannot seek to frame {start}")
            index = start
        try:
            while end is None or index < end:
                ok = cap.grab()
                if not ok:
                    break
                if index % self.stride == 0:
                    ok, frame = cap.retrieve()
                    if not ok:
                        break
                    yield index, index / self.fps, frame
                index += 1
            if end is None or index < end:
                self.ended_at = index
        finally:
            cap.release()


class Camera:
    """A live camera. Iterating yields only the newest frame; frames that arrived while the
    consumer was busy are dropped (``dropped`` counts them)."""

    def __init__(self, device: int = 0, width: int | None = None, height: int | None = None):
        self.cap = cv2.VideoCapture(device)
        if not self.cap.isOpened():
            raise SourceError(f"no camera at index {device} (is one connected, and free?)")
        if width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        ok, frame = self.cap.read()
        if not ok:
            self.cap.release()
            raise SourceError(f"camera {device} opened but gave no frame")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.dropped = 0
        self._frame: np.ndarray | None = frame
        self._seq = 0
        self._cond = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._grab, daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        while self._running:
            ok, frame = self.cap.read()
            with self._cond:
                if not ok:
                    self._running = False
                else:
                    self._frame = frame
                    self._seq += 1
                self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        start, seen = time.monotonic(), 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda s=seen: self._seq > s or not self._running, timeout=2.0)
                if self._seq == seen:
                    return
                self.dropped += self._seq - seen - 1
                seen, frame = self._seq, self._frame
            yield seen, time.monotonic() - start, frame

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self.cap.release()


class VideoSink:
    """A video file that browsers play: ``.webm`` (VP8, in every OpenCV wheel) or ``.mp4`` (H.264,
    only where OpenCV's FFmpeg has an H.264 encoder; the MPEG-4 Part 2 ``mp4v`` that OpenCV writes
    by default is refused by Chromium). A context manager::

        with VideoSink("out.webm", fps=25, size=(640, 480)) as sink:
            sink.write(frame)
    """

    CODECS = {".webm": "VP80", ".mp4": "avc1"}

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        codec = self.CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise SourceError(f"{self.path}: write a .webm (VP8) or .mp4 (H.264) video")
        if not self.path.resolve().parent.is_dir():
            raise SourceError(f"{self.path}: its folder does not exist")
        self.size = (int(size[0]), int(size[1]))
        with _no_stderr():
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), float(fps), self.size)
        if not self.writer.isOpened():
            self.writer.release()
            self.path.unlink(missing_ok=True)
            hint = "; this OpenCV has no H.264 encoder, write .webm instead" if codec == "avc1" else ""
            raise SourceError(f"{self.path}: cannot write a video there{hint}")

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[1::-1] != self.size:
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))

    def close(self) -> None:
        self.writer.release()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _no_stderr() -> Iterator[None]:
    """Send the process's stderr to /dev/null for a moment: OpenCV writes "tag 'VP80' is not supported
    with codec id 139" there with a plain fprintf, whatever the log level, on every WebM it opens
    (no tag is: WebM has none). The whole process's stderr, so only around a call that takes
    milliseconds."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_source(source: str | int | Path, stride: int = 1) -> VideoFile | Camera:
    """A camera for an integer (or a string of digits), otherwise a video file."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return Camera(int(source))
    return VideoFile(source, stride)
