"""Model files shipped inside the package: the emotion model and the face detector."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
