"""MoodLens: real-time facial emotion recognition.

>>> from moodlens import EmotionModel, Recognizer
>>> faces = Recognizer().analyze("group.jpg")          # doctest: +SKIP
>>> [(f.box, f.emotion) for f in faces]                # doctest: +SKIP

Heavy or optional modules (torch for training, the web server, the desktop app) are imported
only by the code that needs them, so ``import moodlens`` stays fast.
"""

from moodlens.classes import FER2013_CLASSES, FERPLUS_CLASSES
from moodlens.classify import EmotionModel, ModelError
from moodlens.faces import Face, Frame

__all__ = ["FER2013_CLASSES", "FERPLUS_CLASSES", "EmotionModel", "ModelError", "Face", "Frame", "Recognizer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Recognizer":
        from moodlens.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'moodlens' has no attribute {name!r}")
