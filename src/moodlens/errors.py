"""The base of every error MoodLens reports to a user as one line (CLI exit code 2, HTTP 4xx)."""


class MoodLensError(ValueError):
    """Bad input from a user: a file, a dataset row, a model, a class name, a source."""
