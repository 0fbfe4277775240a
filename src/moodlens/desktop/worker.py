"""Recognition off the GUI thread.

A :class:`RecognitionWorker` opens a camera or video file, pushes frames through one
:class:`~moodlens.recognizer.FaceStream` (tracking and smoothing for this source only), draws them
with :func:`~moodlens.annotate.annotate` and emits a :class:`Shot` per processed frame. It keeps to
the present: a camera (:class:`~moodlens.sources.Camera`) yields only its newest frame, and a video
file plays at its own speed, skipping frames that recognition had no time for.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from moodlens.annotate import annotate
from moodlens.errors import MoodLensError
from moodlens.faces import Frame
from moodlens.recognizer import Recognizer
from moodlens.sources import Camera, VideoFile, open_source

Source = str | int | Path | VideoFile | Camera


@dataclass
class SourceInfo:
    """What was opened: a name for the title bar, whether it is live, its frame rate and size."""

    name: str
    live: bool
    fps: float
    size: tuple[int, int]  # (width, height)


@dataclass
class Shot:
    """One processed frame, as the window receives it.

    Attributes:
        frame: the faces (tracked, smoothed, labelled), frame index and source time.
        annotated: the BGR frame with boxes, labels, score bars and head-direction arrows drawn.
        image: the same as a QImage, ready to paint.
        fps: frames processed per second over the last second or so.
        dropped: frames skipped so far to keep up with the source.
    """

    frame: Frame
    annotated: np.ndarray
    image: QImage
    fps: float
    dropped: int


def to_qimage(bgr: np.ndarray) -> QImage:
    """A QImage that owns a copy of a BGR uint8 frame's pixels."""
    bgr = np.ascontiguousarray(bgr)
    height, width = bgr.shape[:2]
    return QImage(bgr.data, width, height, bgr.strides[0], QImage.Format.Format_BGR888).copy()


def open_any(source: Source) -> VideoFile | Camera:
    """``source`` opened (a VideoFile or Camera is returned as it is). OpenCV's own complaints
    (e.g. "can't open camera by index") are silenced in moodlens.sources: the failure is reported
    once, as a SourceError."""
    if isinstance(source, (VideoFile, Camera)):
        return source
    return open_source(source)


def describe(source: VideoFile | Camera, spec: Source) -> SourceInfo:
    if isinstance(source, Camera):
        width, height = int(source.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(source.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        name = f"camera {spec}" if isinstance(spec, (int, str)) and str(spec).isdigit() else "camera"
        return SourceInfo(name, True, float(source.fps), (width, height))
    return SourceInfo(source.path.name, False, float(source.fps), (source.width, source.height))


class _PlayClock:
    """Seconds of playback, standing still while paused."""

    def __init__(self) -> None:
        self.played, self.since = 0.0, time.monotonic()

    def now(self) -> float:
        return self.played + (time.monotonic() - self.since if self.since is not None else 0.0)

    def hold(self) -> None:
        if self.since is not None:
            self.played, self.since = self.now(), None

    def go(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


class RecognitionWorker(QThread):
    """Reads ``source`` and emits a :class:`Shot` per processed frame until the source ends or
    :meth:`stop` is called.

    Signals:
        opened(SourceInfo): the source is open.
        shot(Shot): a processed frame.
        failed(str): the source could not be opened, or recognition stopped on an error.
        ended(str): the video ended or the camera stopped sending frames.

    Args:
        recognizer: shared by the window's workers, one at a time (one worker runs at once).
        source: a camera index, a video path, or an already opened VideoFile/Camera.
        realtime: play video files at their own speed (True) or as fast as recognition goes.
        detect_every: run the face detector every this many frames (optical flow in between).
    """

    opened = Signal(object)
    shot = Signal(object)
    failed = Signal(str)
    ended = Signal(str)

    def __init__(self, recognizer: Recognizer, source: Source, realtime: bool = True, detect_every: int = 3,
                 parent=None):
        super().__init__(parent)
        self.recognizer, self.source, self.realtime, self.detect_every = recognizer, source, realtime, detect_every
        self._cond = threading.Condition()
        self._paused = False
        self._stopping = False
        self.dropped = 0

    # Called from the GUI thread.
    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # The worker thread.
    def run(self) -> None:
        try:
            source = open_any(self.source)
        except MoodLensError as e:
            self.failed.emit(str(e))
            return
        except Exception as e:  # an OpenCV backend failing in its own way
            self.failed.emit(f"{self.source}: cannot open ({type(e).__name__}: {e})")
            return
        try:
            self.opened.emit(describe(source, self.source))
            reason = self._play(source)
        except Exception as e:
            traceback.print_exc()
            self.failed.emit(f"recognition stopped: {type(e).__name__}: {e}")
            return
        finally:
            if isinstance(source, Camera):
                source.close()
        if reason:
            self.ended.emit(reason)

    def _wait_while_paused(self, clock: _PlayClock) -> bool | None:
        """Block while paused. None when stopping, else whether it had to wait."""
        with self._cond:
            waited = self._paused
            if waited:
                clock.hold()
                self._cond.wait_for(lambda: self._stopping or not self._paused)
                clock.go()
            return None if self._stopping else waited

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early on pause or stop."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._paused, timeout=seconds)

    def _play(self, source: VideoFile | Camera) -> str | None:
        live = isinstance(source, Camera)
        stream = self.recognizer.open_stream(self.detect_every)
        clock = _PlayClock()
        late = 1.5 / source.fps if source.fps else 0.1
        recent: deque[float] = deque(maxlen=30)
        for index, t, image in source:
            stale = False
            while True:
                waited = self._wait_while_paused(clock)
                if waited is None:
                    return None
                stale = stale or waited
                due = t - clock.now() if self.realtime and not live else 0.0
                if due <= 0:
                    break
                self._sleep(due)
            if live and stale:
                continue  # read before the pause: take the camera's newest frame instead
            if not live and self.realtime and clock.now() - t > late:
                self.dropped += 1
                continue
            frame = stream.push(image, t, index)
            annotated = annotate(image, frame.faces)
            now = time.monotonic()
            recent.append(now)
            while recent and now - recent[0] > 1.0 and len(recent) > 2:
                recent.popleft()
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            dropped = self.dropped + (source.dropped if live else 0)
            self.shot.emit(Shot(frame, annotated, to_qimage(annotated), fps, dropped))
        return "the camera stopped sending frames" if live else "end of video"
