"""Where MoodLens keeps its files by default: one per-user data folder.

``MOODLENS_DATA`` overrides it; otherwise the platform's user data folder (``~/.local/share/moodlens``
on Linux, ``~/Library/Application Support/moodlens`` on macOS, ``%LOCALAPPDATA%\\moodlens`` on
Windows). It holds the default SQLite database, the journal of seconds waiting for a database,
videos being analysed, and a self-signed certificate made by ``moodlens serve --self-signed``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data folder, created on first use."""
    path = os.environ.get("MOODLENS_DATA")
    if not path:
        from platformdirs import user_data_dir

        path = user_data_dir("moodlens", appauthor=False)
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
