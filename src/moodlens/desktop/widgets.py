"""The window's three views, each drawn with QPainter: the annotated video, a panel of each
face's scores, and a chart of the emotion mix and the share of faces facing per second."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from moodlens.annotate import POSE_COLOR, color_of
from moodlens.faces import Face

BACKGROUND = QColor(24, 24, 28)
TEXT = QColor(225, 225, 225)
DIM = QColor(130, 130, 140)
# The attention line takes the head-direction arrows' colour, which no emotion has.
ATTENTION = QColor(*POSE_COLOR[::-1])


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
    """The emotion mix per second over the last ``window_s`` seconds, as stacked areas, and the
    share of faces facing the screen in the same seconds, as a line over them.

    Each second's mix is the mean of the judged faces' scores in it (so the stack is 100 % when
    anyone was judged); seconds with no judged face are left empty, and so are seconds with no
    known attention on the line.
    """

    def __init__(self, classes: Sequence[str], window_s: int = 180, parent: QWidget | None = None):
        super().__init__(parent)
        self.classes = tuple(classes)
        self.window_s = window_s
        # (second, share per class or None, share of faces facing or None)
        self.history: deque[tuple[int, np.ndarray | None, float | None]] = deque(maxlen=window_s)
        self.setToolTip("Areas: the emotion mix of the faces judged each second.\n"
                        "Cyan line: the share of faces facing the screen each second.")
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(800, 170)

    def add(self, second: int, mix: Sequence[float] | None, facing: float | None = None) -> None:
        """Append one second: a share per class (summing to 1), or None when no face was judged;
        and the share of faces facing (0-1), or None when no face's attention is known."""
        self.history.append((second, None if mix is None else np.asarray(mix, float), facing))
        self.update()

    def clear(self) -> None:
        self.history.clear()
        self.update()

    def plot_rect(self) -> QRectF:
        """Where the areas and the line are drawn, in widget coordinates."""
        return QRectF(38, 10, max(self.width() - 38 - 120, 40), max(self.height() - 30, 20))

    def axis(self) -> tuple[int, int]:
        """The first second on the time axis and how many seconds it spans."""
        if not self.history:
            return 0, 30
        # The axis starts at the first second and grows to the window, then scrolls with the newest second.
        end = self.history[-1][0] + 1
        start = max(self.history[0][0], end - self.window_s)
        return start, max(30, end - start)

    def point(self, second: float, share: float) -> QPointF:
        """Where the start of ``second`` at height ``share`` (0-1) lies on the plot."""
        plot = self.plot_rect()
        start, span = self.axis()
        return QPointF(plot.left() + (second - start) / span * plot.width(), plot.bottom() - share * plot.height())

    def paintEvent(self, event) -> None:
        p = _panel_painter(self)
        plot = self.plot_rect()
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
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter,
                       "The emotion mix and the share of faces facing appear here, one step per second")
            self._legend(p, plot, None, None)
            return
        start, span = self.axis()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setPen(Qt.PenStyle.NoPen)
        for run in self._runs(start):
            tops = np.cumsum(np.stack([mix for _, mix in run]), axis=1)  # (seconds, classes)
            for k in range(len(self.classes)):
                lower = tops[:, k - 1] if k else np.zeros(len(run))
                upper = tops[:, k]
                outline = []
                for (second, _), value in zip(run, upper, strict=True):
                    outline += [self.point(second, value), self.point(second + 1, value)]
                for (second, _), value in zip(reversed(run), lower[::-1], strict=True):
                    outline += [self.point(second + 1, value), self.point(second, value)]
                p.setBrush(qcolor(self.classes[k]))
                p.drawPolygon(QPolygonF(outline))
        # Steps like the areas', a dark edge keeping the line visible over every emotion's colour.
        for run in self._runs(start, facing=True):
            steps = QPolygonF([q for second, share in run
                               for q in (self.point(second, share), self.point(second + 1, share))])
            for pen in (QPen(BACKGROUND, 4), QPen(ATTENTION, 2)):
                p.setPen(pen)
                p.drawPolyline(steps)
        p.setPen(DIM)
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 80, 16), Qt.AlignmentFlag.AlignLeft, _clock(start))
        p.drawText(QRectF(plot.right() - 80, plot.bottom() + 2, 80, 16), Qt.AlignmentFlag.AlignRight,
                   _clock(start + span))
        latest = next((mix for _, mix, _ in reversed(self.history) if mix is not None), None)
        facing = next((share for _, _, share in reversed(self.history) if share is not None), None)
        self._legend(p, plot, latest, facing)

    def _runs(self, start: int, facing: bool = False) -> list[list[tuple[int, np.ndarray | float]]]:
        """Consecutive seconds inside the window with a mix (or, with ``facing``, a share facing)."""
        runs: list[list[tuple[int, np.ndarray | float]]] = []
        previous = None
        for second, mix, share in self.history:
            value = share if facing else mix
            if second < start or value is None:
                previous = None
                continue
            if previous is None or second != previous + 1:
                runs.append([])
            runs[-1].append((second, value))
            previous = second
        return runs

    def _legend(self, p: QPainter, plot: QRectF, latest: np.ndarray | None, facing: float | None) -> None:
        row = min(16.0, plot.height() / (len(self.classes) + 1))
        for k, name in enumerate(self.classes):
            y = plot.top() + k * row
            p.fillRect(QRectF(plot.right() + 12, y + 3, 10, row - 6), qcolor(name))
            p.setPen(TEXT)
            text = name if latest is None else f"{name} {latest[k]:.0%}"
            p.drawText(QRectF(plot.right() + 26, y, 100, row), Qt.AlignmentFlag.AlignVCenter, text)
        y = plot.top() + len(self.classes) * row
        p.fillRect(QRectF(plot.right() + 12, y + row / 2 - 1, 10, 2), ATTENTION)
        p.setPen(TEXT)
        p.drawText(QRectF(plot.right() + 26, y, 100, row), Qt.AlignmentFlag.AlignVCenter,
                   "facing" if facing is None else f"facing {facing:.0%}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
