"""The main window: choose a camera or a video file, watch it annotated (with where each head
points), follow the emotion mix and how many faces are facing, pause, take snapshots and record
the per-second timeline to CSV."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QSpinBox,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from moodlens.aggregate import SecondRecord, Timeline
from moodlens.desktop.widgets import FacesPanel, MoodChart, VideoView
from moodlens.desktop.worker import RecognitionWorker, Shot, Source, SourceInfo
from moodlens.focus import FACING
from moodlens.recognizer import Recognizer
from moodlens.sources import Camera, VideoFile

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"
STYLE_INFO = "background:#23303d;color:#e6e6e6;padding:4px 8px;"
STYLE_ERROR = "background:#5a1f1f;color:#ffffff;padding:4px 8px;"


def mix_of(records: list[SecondRecord], classes: tuple[str, ...]) -> np.ndarray | None:
    """Mean scores of the faces judged in one second (None when no face was judged)."""
    judged = [[r.scores[c] for c in classes] for r in records if r.scores]
    return np.mean(judged, axis=0) if judged else None


def facing_of(records: list[SecondRecord]) -> tuple[int, int]:
    """How many of one second's faces were facing, and of how many whose attention is known."""
    known = [r.attention for r in records if r.attention is not None]
    return sum(a == FACING for a in known), len(known)


class MainWindow(QMainWindow):
    """The MoodLens desktop window.

    Args:
        recognizer: the face pipeline, shared by the sources opened one after another.
        output_dir: where snapshots and timelines are saved (default: the working directory).
        realtime: play video files at their own speed (False: as fast as recognition goes).
        detect_every: run the face detector every this many frames.

    The methods the toolbar calls can be called from code (and tests): :meth:`open_source`,
    :meth:`set_paused`, :meth:`snapshot`, :meth:`start_recording`, :meth:`stop_recording`.
    """

    def __init__(self, recognizer: Recognizer, output_dir: str | Path | None = None, realtime: bool = True,
                 detect_every: int = 3):
        super().__init__()
        self.recognizer = recognizer
        self.classes = recognizer.classes
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
        self.realtime, self.detect_every = realtime, detect_every
        self.worker: RecognitionWorker | None = None
        self.info: SourceInfo | None = None
        self.last: Shot | None = None
        self.shots = 0
        self.timeline = Timeline(self.classes)  # this source's seconds, for the chart
        self.facing: tuple[int, int, int] | None = None  # (second, facing, faces) of the newest second with faces
        self.recording: Timeline | None = None
        self.saved: list[Path] = []
        self.setWindowTitle("MoodLens")
        self.resize(1100, 760)
        self._build()

    # Layout.
    def _build(self) -> None:
        bar = QToolBar("Controls", self)
        bar.setMovable(False)
        self.addToolBar(bar)
        self.camera_index = QSpinBox(self)
        self.camera_index.setRange(0, 9)
        self.camera_index.setPrefix("camera ")
        self.camera_index.setToolTip("Camera index (0 is the first camera)")
        bar.addWidget(self.camera_index)
        self.camera_action = bar.addAction("Open camera", self.open_camera)
        self.file_action = bar.addAction("Open video…", self.prompt_video)
        self.file_action.setShortcut(QKeySequence.StandardKey.Open)
        bar.addSeparator()
        self.pause_action = QAction("Pause", self, checkable=True, shortcut=QKeySequence(Qt.Key.Key_Space))
        self.pause_action.toggled.connect(self.set_paused)
        bar.addAction(self.pause_action)
        self.snapshot_action = bar.addAction("Snapshot", lambda: self.snapshot())
        self.snapshot_action.setShortcut(QKeySequence("Ctrl+S"))
        self.record_action = QAction("Record CSV", self, checkable=True, shortcut=QKeySequence("Ctrl+R"))
        self.record_action.setToolTip("Record the per-second timeline (one row per face per second) to CSV")
        self.record_action.toggled.connect(self._record_toggled)
        bar.addAction(self.record_action)
        bar.addSeparator()
        bar.addAction("Output folder…", self.prompt_output_dir)

        self.banner = QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.video = VideoView(self)
        self.faces_panel = FacesPanel(self.classes, self)
        self.chart = MoodChart(self.classes, parent=self)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.video)
        top.addWidget(self.faces_panel)
        top.setStretchFactor(0, 1)
        top.setSizes([880, 220])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.chart)
        split.setStretchFactor(0, 1)
        split.setSizes([560, 170])
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)
        self.setCentralWidget(central)
        self.status = QLabel("No source")
        self.statusBar().addWidget(self.status, 1)

    # Messages.
    def show_message(self, text: str, error: bool = False) -> None:
        """A line above the video (red for errors), also put in the status bar."""
        self.banner.setText(text)
        self.banner.setStyleSheet(STYLE_ERROR if error else STYLE_INFO)
        self.banner.setProperty("error", error)
        self.banner.show()

    def clear_message(self) -> None:
        self.banner.clear()
        self.banner.setProperty("error", False)
        self.banner.hide()

    @property
    def message(self) -> str:
        """The line shown above the video ("" when none)."""
        return self.banner.text()

    # Sources.
    def open_camera(self, index: int | None = None) -> None:
        self.open_source(self.camera_index.value() if index is None else index)

    def prompt_video(self) -> QFileDialog:
        """Ask for a video file without blocking (the dialog opens the file when accepted)."""
        dialog = QFileDialog(self, "Open a video", str(self.output_dir), VIDEO_FILTER)
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(self.open_source)
        dialog.open()
        return dialog

    def prompt_output_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save snapshots and timelines in", str(self.output_dir))
        if folder:
            self.output_dir = Path(folder)
            self.show_message(f"Snapshots and timelines go to {self.output_dir}")

    def open_source(self, source: Source) -> None:
        """Stop the current source (saving a recording in progress) and start recognising ``source``:
        a camera index, a video path, or an opened VideoFile/Camera."""
        self.stop_source()
        self.clear_message()
        self.timeline = Timeline(self.classes)
        self.chart.clear()
        self.faces_panel.set_faces([])
        self.video.set_image(None)
        self.last, self.shots, self.info, self.facing = None, 0, None, None
        name = source.path.name if isinstance(source, VideoFile) else "camera" if isinstance(source, Camera) else source
        self.video.placeholder = f"Opening {name}…"
        self.status.setText(f"Opening {name}…")
        worker = RecognitionWorker(self.recognizer, source, self.realtime, self.detect_every, self)
        worker.opened.connect(self._opened)
        worker.shot.connect(self._shot)
        worker.failed.connect(self._failed)
        worker.ended.connect(self._ended)
        self.worker = worker
        with QSignalBlocker(self.pause_action):
            self.pause_action.setChecked(False)
        worker.start()

    def stop_source(self) -> None:
        """Stop recognising (waits for the worker to finish its frame) and save any recording."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
            worker.wait(10_000)
            worker.deleteLater()
        self._close_seconds(self.timeline.flush())
        self.stop_recording()

    # Worker signals (queued to this thread); a stopped worker's late signals are ignored.
    def _current(self) -> bool:
        return self.worker is not None and self.sender() is self.worker

    @Slot(object)
    def _opened(self, info: SourceInfo) -> None:
        if self._current():
            self.info = info
            self.setWindowTitle(f"MoodLens: {info.name}")
            self.video.placeholder = f"{info.name}: waiting for the first frame…"

    @Slot(object)
    def _shot(self, shot: Shot) -> None:
        if not self._current():
            return
        self.last = shot
        self.shots += 1
        self.video.set_image(shot.image)
        self.faces_panel.set_faces(shot.frame.faces)
        if self.recording is not None:
            self.recording.add(shot.frame)
        self._close_seconds(self.timeline.add(shot.frame))
        self._update_status()

    @Slot(str)
    def _failed(self, message: str) -> None:
        if self._current():
            self.video.placeholder = "No source"
            self.show_message(message, error=True)
            self.status.setText("No source")
            self.stop_source()

    @Slot(str)
    def _ended(self, reason: str) -> None:
        if self._current():
            self._close_seconds(self.timeline.flush())
            saved = self.stop_recording()
            text = f"{self.info.name if self.info else 'Source'}: {reason}."
            self.show_message(text + (f" Timeline saved to {saved}" if saved else ""))
            self._update_status(reason)

    def _close_seconds(self, records: list[SecondRecord]) -> None:
        by_second: dict[int, list[SecondRecord]] = {}
        for r in records:
            by_second.setdefault(r.second, []).append(r)
        for second, rows in sorted(by_second.items()):
            facing, known = facing_of(rows)
            self.chart.add(second, mix_of(rows, self.classes), facing / known if known else None)
            if known:
                self.facing = second, facing, known

    def _update_status(self, note: str | None = None) -> None:
        if self.last is None:
            return
        frame = self.last.frame
        parts = [self.info.name if self.info else "", f"{int(frame.time) // 60}:{frame.time % 60:04.1f}",
                 f"{len(frame.faces)} face{'s' if len(frame.faces) != 1 else ''}"]
        # Attention is decided per whole second (a glance away is not "away"): the one just closed,
        # unless it had no faces (it left no records, so self.facing is older).
        if self.facing is not None and self.facing[0] >= int(frame.time) - 1:
            parts.append(f"{self.facing[1]} of {self.facing[2]} facing")
        parts.append(f"{self.last.fps:.1f} frames/s")
        if self.last.dropped:
            parts.append(f"{self.last.dropped} skipped")
        if self.recording is not None:
            parts.append("● recording")
        if self.worker is not None and self.worker.paused:
            parts.append("paused")
        if note:
            parts.append(note)
        self.status.setText("  ·  ".join(p for p in parts if p))

    # Pause, snapshot, recording.
    @property
    def paused(self) -> bool:
        return self.worker is not None and self.worker.paused

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        if self.worker is not None:
            self.worker.pause() if paused else self.worker.resume()
        with QSignalBlocker(self.pause_action):
            self.pause_action.setChecked(paused and self.worker is not None)
            self.pause_action.setText("Resume" if self.pause_action.isChecked() else "Pause")
        self._update_status()

    def snapshot(self, path: str | Path | None = None) -> Path | None:
        """Save the annotated frame on screen as PNG (default: a time-stamped file in the output folder)."""
        if self.last is None:
            self.show_message("Nothing to snapshot yet: open a camera or a video first.", error=True)
            return None
        path = Path(path) if path else self.output_dir / f"moodlens_{time.strftime('%Y%m%d_%H%M%S')}_{self.shots}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), self.last.annotated)
        except (OSError, cv2.error) as e:
            ok, why = False, str(e)
        else:
            why = "cannot write there"
        if not ok:
            self.show_message(f"Snapshot not saved: {path}: {why}", error=True)
            return None
        self.saved.append(path)
        self.show_message(f"Snapshot saved to {path}")
        return path

    @Slot(bool)
    def _record_toggled(self, on: bool) -> None:
        self.start_recording() if on else self.stop_recording()

    def start_recording(self) -> None:
        """Collect one row per face per second from now until :meth:`stop_recording`, the end of the
        source or closing the window (each of which saves the CSV)."""
        if self.recording is None:
            self.recording = Timeline(self.classes)
        with QSignalBlocker(self.record_action):
            self.record_action.setChecked(True)
        self.show_message("Recording the timeline: it is saved as CSV when you stop, at the end of the video, "
                          "or when the window closes.")
        self._update_status()

    def stop_recording(self, path: str | Path | None = None) -> Path | None:
        """Save the recorded timeline as CSV (default: a time-stamped file in the output folder)."""
        with QSignalBlocker(self.record_action):
            self.record_action.setChecked(False)
        timeline, self.recording = self.recording, None
        if timeline is None:
            return None
        timeline.flush()
        path = Path(path) if path else self.output_dir / f"moodlens_timeline_{time.strftime('%Y%m%d_%H%M%S')}.csv"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            timeline.write(path)
        except OSError as e:
            self.show_message(f"Timeline not saved: {e}", error=True)
            return None
        self.saved.append(path)
        self.show_message(f"Timeline saved to {path} ({len(timeline.records)} face-seconds)")
        self._update_status()
        return path

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop_source()
        super().closeEvent(event)
