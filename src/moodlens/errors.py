"""The base of every error MoodLens reports to a user as one line (CLI exit code 2, HTTP 4xx)."""

from __future__ import annotations

from pathlib import Path


class MoodLensError(ValueError):
    """Bad input from a user: a file, a dataset row, a model, a class name, a source."""


def existing_file(path: Path, error: type[MoodLensError] = MoodLensError, what: str = "file") -> None:
    """Refuse a path that is not a file, saying whether it is a folder or missing: "no such file"
    for a folder sends a user looking for a typo that is not there."""
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise error(f"{path}: no such {what}")
