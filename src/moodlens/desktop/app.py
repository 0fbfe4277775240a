"""Entry point of the desktop app (`moodlens desktop [SOURCE]`).

Problems that stop the app before a window exists (no display, a missing or unreadable video, a
bad model or detector) are printed as one line on stderr and return exit code 2; problems after
the window is open (a bad file chosen in it, no camera) are shown in the window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import PySide6
from PySide6.QtCore import QLibraryInfo, QObject, QTimer
from PySide6.QtWidgets import QApplication

from moodlens.desktop.worker import open_any
from moodlens.errors import MoodLensError
from moodlens.recognizer import Recognizer
from moodlens.sources import SourceError

# Qt platforms that need no display server.
HEADLESS_PLATFORMS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}
# What Qt's X11 (xcb) platform needs on Debian/Ubuntu beyond what the offscreen one needs.
XCB_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 "
                "libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1")
_PROBE = "import sys; from PySide6.QtGui import QGuiApplication; QGuiApplication(sys.argv[:1])"


def display_problem() -> str | None:
    """Why Qt could not open a window here, in one line, or None when it can.

    Qt aborts the whole process when no platform plugin starts, so on Linux the check starts a
    QGuiApplication in a child process first (about half a second).
    """
    if not sys.platform.startswith("linux"):
        return None  # Windows and macOS always have their platform
    requested = [p.split(":")[0].strip() for p in os.environ.get("QT_QPA_PLATFORM", "").split(";") if p.strip()]
    if requested and requested[0] in HEADLESS_PLATFORMS:
        return None
    if not requested and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are not set): run it in a desktop "
                "session, or on a machine without one use `moodlens serve` (the live page in a browser) or "
                "`moodlens video` for a file")
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "Qt did not manage to open the display within a minute"
    if probe.returncode == 0:
        return None
    return _explain(probe.stderr)


def _explain(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    where = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY") or "?"
    if any("could not connect to display" in line for line in lines):
        return f"Qt cannot connect to the display {where!r}: is the X server running, and may this user use it?"
    if any("xcb" in line and ("needed" in line or "Could not load" in line) for line in lines):
        missing = _missing_library("libqxcb.so")
        return (f"Qt's X11 platform plugin cannot load{f' ({missing})' if missing else ''}; on Debian/Ubuntu: "
                f"apt install {XCB_PACKAGES}")
    useful = [line for line in lines if not line.startswith(("Available platform plugins", "Reinstalling"))]
    return f"Qt cannot open a window: {(useful or lines or ['unknown error'])[-1]}"


def _missing_library(plugin: str) -> str | None:
    """The first shared library a Qt platform plugin fails to load with, e.g. 'libxcb-icccm.so.4'."""
    import ctypes

    path = os.path.join(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath), "platforms", plugin)
    try:
        ctypes.CDLL(path)
    except OSError as e:
        return str(e).split(":")[0].strip() or None
    return None


def binding_problem() -> str | None:
    """Why the installed PySide6 cannot run this app, or None.

    PySide6 6.12.0 on Python < 3.12 drops a reference to None on every call that returns nothing
    (Python 3.12 made None immortal, 3.11 did not), so an app dies with "Fatal Python error:
    none_dealloc" after a few thousand calls: about a minute of video. Checked by behaviour, not
    by version number, so a fixed or a broken later release is judged correctly.
    """
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(50):
        probe.setObjectName("probe")
    if sys.getrefcount(None) < before - 25:
        return (f"PySide6 {PySide6.__version__} loses references to None on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} and would crash within minutes; "
                "install another version: pip install 'PySide6-Essentials>=6.8,<6.12'")
    return None


def main(source: str | None = None, model: str | None = None, detector: str | None = None,
         detect_every: int = 3) -> int:
    """Open the MoodLens window; returns the exit code.

    Args:
        source: a camera index as digits, or a video file path. None: camera 0, and when there is
            no camera, a prompt for a video file.
        model: a MoodLens ONNX emotion model (None: the shipped one).
        detector: a face detector backend name (None: the default).
        detect_every: run the face detector every this many frames (optical flow in between).
    """
    problem = binding_problem() or display_problem()
    if problem:
        print(f"moodlens: error: {problem}", file=sys.stderr)
        return 2
    try:
        recognizer = Recognizer(model, detector)
        opened = open_any(source) if source is not None else None
    except MoodLensError as e:
        print(f"moodlens: error: {e}", file=sys.stderr)
        return 2
    no_camera = None
    if source is None:
        try:
            opened = open_any(0)
        except SourceError as e:
            no_camera = str(e)

    from moodlens.desktop.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MoodLens")
    window = MainWindow(recognizer, detect_every=detect_every)
    window.show()
    if opened is not None:
        window.open_source(opened)
    else:
        window.show_message(f"{no_camera}. Choose a video file, or another camera index.", error=True)
        window.prompt_video()

    interrupted = []
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(*_) -> None:
        interrupted.append(True)
        window.close()

    signal.signal(signal.SIGINT, on_interrupt)
    wake = QTimer(interval=200)  # lets Python see Ctrl+C while Qt's event loop runs
    wake.timeout.connect(lambda: None)
    wake.start()
    try:
        code = app.exec()
    finally:
        wake.stop()
        signal.signal(signal.SIGINT, previous)
        window.stop_source()
    return 130 if interrupted else code
