"""Scale-out analysis of recorded videos: ``moodlens batch``.

Every video is cut into time chunks (:mod:`~moodlens.batch.plan`); chunks run in parallel on a
local process pool or a Ray cluster (:mod:`~moodlens.batch.engines`), each through the usual
pipeline (:mod:`~moodlens.batch.analyse`); their results are merged into one per-second
timeline per video and a summary table (:mod:`~moodlens.batch.merge`) by the driver
(:mod:`~moodlens.batch.run`), which also resumes interrupted runs. See docs/batch.md.

>>> from moodlens.batch import Settings, run_batch
>>> report = run_batch(["lectures/*.mp4"], "results", engine="ray", settings=Settings(fps=2))  # doctest: +SKIP
>>> [(row["video"], row["mood"]) for row in report.rows]                                      # doctest: +SKIP
"""

from moodlens.batch.plan import Settings
from moodlens.batch.run import BatchReport, run_batch

__all__ = ["BatchReport", "Settings", "run_batch"]
