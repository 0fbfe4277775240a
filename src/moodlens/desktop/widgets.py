"""The window's three views, each drawn with QPainter: the annotated video, a panel of each
face's scores, and a chart of the emotion mix per second."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from moodlens.annotate import color_of
from moodlens.faces import Face

BACKGROUND = QColor(24, 24, 28)
TEXT = QColor(225, 225, 225)
DIM = QColor(130, 130, 140)


def qcolor(emotion: str | None) -> QColor:
    """The annotation colour of an emotion (annotate's BGR palette) as a QColor."""
    b, g, r = color_of(emotion)
    return QColor(r, g, b)


def _panel_painter(widget: QWidget) -> QPainter:
    """A painter over the widget's dark background with the panels' small font."""
    p = QPainter(widget)
    p.fillRect(widget.rect(), BACKGROUND)
    font = QFont(p.font())
    font.setPointSizeF(8.5)
    p.setFont(font)
    return p


class VideoView(QWidget):
    """The newest annotated frame, scaled to fit with its aspect ratio kept. Setting a frame
    only schedules a repaint, so frames arriving faster than the screen refreshes are dropped."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.placeholder = "Open a camera or a video file"
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None) -> None:
        self.image = image
        self.update()

    def image_rect(self) -> QRectF:
        """Where the frame is painted, in widget coordinates."""
        if self.image is None or self.image.isNull():
            return QRectF()
        scale = min(self.width() / self.image.width(), self.height() / self.image.height())
        w, h = self.image.width() * scale, self.image.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.image is None or self.image.isNull():
            p.setPen(DIM)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(self.image_rect(), self.image)


class FacesPanel(QWidget):
    """One block per face, largest first: track id, emotion and confidence, and a bar per class
    (annotate draws bars only beside faces wide enough for them; this panel shows every face)."""

    ROW = 13

    def __init__(self, classes: Sequence[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.classes = tuple(classes)
        self.faces: list[Face] = []
        self.setMinimumWidth(190)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(210, 400)

    def set_faces(self, faces: Sequence[Face]) -> None:
        self.faces = list(faces)
        self.update()

    def paintEvent(self, event) -> None:
        p = _panel_painter(self)
        if not self.faces:
            p.setPen(DIM)
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                       "No faces yet")
            return
        block = self.ROW * (len(self.classes) + 1) + 10
        y, width = 6, self.width() - 12
        for shown, face in enumerate(self.faces):
            if y + block > self.height():
                p.setPen(DIM)
                p.drawText(6, y + self.ROW, f"+{len(self.faces) - shown} more")
                break
            head = f"#{face.track_id} " if face.track_id is not None else ""
            head += f"{face.emotion} {face.confidence:.0%}" if face.emotion else face.status.replace("_", " ")
            p.fillRect(QRectF(6, y + 2, 10, self.ROW - 4), qcolor(face.emotion))
            p.setPen(TEXT)
            p.drawText(QRectF(22, y, width - 16, self.ROW), Qt.AlignmentFlag.AlignVCenter, head)
            y += self.ROW
            for name in self.classes:
                value = face.scores.get(name, 0.0)
                p.setPen(DIM)
                p.drawText(QRectF(6, y, 54, self.ROW), Qt.AlignmentFlag.AlignVCenter, name)
                bar = QRectF(62, y + 2, width - 92, self.ROW - 4)
                p.fillRect(bar, QColor(45, 45, 52))
                p.fillRect(QRectF(bar.left(), bar.top(), bar.width() * value, bar.height()), qcolor(name))
                p.drawText(QRectF(bar.right() + 2, y, 30, self.ROW), Qt.AlignmentFlag.AlignVCenter,
                           f"{value:.0%}" if face.scores else "")
                y += self.ROW
            y += 10


class MoodChart(QWidget):
    """The emotion mix per second over the last ``window_s`` seconds, as stacked areas.

    Each second's mix is the mean of the judged faces' scores in it (so the stack is 100 % when
    anyone was judged); seconds with no judged face are left empty.
    """

    def __init__(self, classes: Sequence[str], window_s: int = 180, parent: QWidget | None = None):
        super().__init__(parent)
        self.classes = tuple(classes)
        self.window_s = window_s
        self.history: deque[tuple[int, np.ndarray | None]] = deque(maxlen=window_s)
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(800, 170)

    def add(self, second: int, mix: Sequence[float] | None) -> None:
        """Append one second: a share per class (summing to 1), or None when no face was judged."""
        self.history.append((second, None if mix is None else np.asarray(mix, float)))
        self.update()

    def clear(self) -> None:
        self.history.clear()
        self.update()

    def paintEvent(self, event) -> None:
        p = _panel_painter(self)
        plot = QRectF(38, 10, max(self.width() - 38 - 120, 40), max(self.height() - 30, 20))
        p.setPen(QPen(QColor(60, 60, 68), 1))
        for share in (0.0, 0.5, 1.0):
            y = plot.bottom() - share * plot.height()
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(DIM)
            p.drawText(QRectF(0, y - 7, 34, 14), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{share:.0%}")
            p.setPen(QPen(QColor(60, 60, 68), 1))
        if not self.history:
            p.setPen(DIM)
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The emotion mix appears here, one step per second")
            self._legend(p, plot, None)
            return
        # The axis starts at the first second and grows to the window, then scrolls with the newest second.
        end = self.history[-1][0] + 1
        start = max(self.history[0][0], end - self.window_s)
        span = max(30, end - start)

        def x(second: float) -> float:
            return plot.left() + (second - start) / span * plot.width()

        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setPen(Qt.PenStyle.NoPen)
        for run in self._runs(start):
            tops = np.cumsum(np.stack([mix for _, mix in run]), axis=1)  # (seconds, classes)
            for k in range(len(self.classes)):
                lower = tops[:, k - 1] if k else np.zeros(len(run))
                upper = tops[:, k]
                outline = []
                for (second, _), value in zip(run, upper, strict=True):
                    outline += [QPointF(x(second), plot.bottom() - value * plot.height()),
                                QPointF(x(second + 1), plot.bottom() - value * plot.height())]
                for (second, _), value in zip(reversed(run), lower[::-1], strict=True):
                    outline += [QPointF(x(second + 1), plot.bottom() - value * plot.height()),
                                QPointF(x(second), plot.bottom() - value * plot.height())]
                p.setBrush(qcolor(self.classes[k]))
                p.drawPolygon(QPolygonF(outline))
        p.setPen(DIM)
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 80, 16), Qt.AlignmentFlag.AlignLeft, _clock(start))
        p.drawText(QRectF(plot.right() - 80, plot.bottom() + 2, 80, 16), Qt.AlignmentFlag.AlignRight,
                   _clock(start + span))
        latest = next((mix for _, mix in reversed(self.history) if mix is not None), None)
        self._legend(p, plot, latest)

    def _runs(self, start: int) -> list[list[tuple[int, np.ndarray]]]:
        """Consecutive judged seconds inside the window."""
        runs: list[list[tuple[int, np.ndarray]]] = []
        previous = None
        for second, mix in self.history:
            if second < start or mix is None:
                previous = None
                continue
            if previous is None or second != previous + 1:
                runs.append([])
            runs[-1].append((second, mix))
            previous = second
        return runs

    def _legend(self, p: QPainter, plot: QRectF, latest: np.ndarray | None) -> None:
        row = min(16.0, plot.height() / max(len(self.classes), 1))
        for k, name in enumerate(self.classes):
            y = plot.top() + k * row
            p.fillRect(QRectF(plot.right() + 12, y + 3, 10, row - 6), qcolor(name))
            p.setPen(TEXT)
            text = name if latest is None else f"{name} {latest[k]:.0%}"
            p.drawText(QRectF(plot.right() + 26, y, 100, row), Qt.AlignmentFlag.AlignVCenter, text)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
